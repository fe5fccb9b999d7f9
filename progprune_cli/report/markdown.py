"""Render a run's results.md: what was run, the three answers, every table as GitHub markdown, the plots."""

from __future__ import annotations

from pathlib import PurePosixPath

from progprune_cli.report.published import published_table
from progprune_cli.report.tables import (Table, accuracy_table, answers, dig, layers_table, num, params_table, pct,
                                         speed_table, steps_table)
from progprune_cli.results.schema import Results


def run_lines(results: Results) -> list[str]:
    """Plain-text lines saying what was run; the rich console prints the same lines."""
    pruning, run, cfg = results.pruning, results.run, results.config
    if pruning is not None:
        target = (pct(pruning.target) + " sparsity" if (pruning.mode or "sparsity") == "sparsity"
                  else f"|w| < {num(pruning.target)}")
        what = (f"strategy {pruning.strategy} ({pruning.granularity} granularity, {pruning.scope} scope) · "
                f"schedule {pruning.schedule} · target {target}, achieved {pct(pruning.achieved_sparsity)}")
    else:
        what = "strategy: none (dense baseline)"
    where = (f"dataset {dig(cfg, 'dataset', 'name')} · model {dig(cfg, 'model', 'name')} · seed {run.seed} · "
             f"device {run.device} · torch {run.torch} · {num(run.duration_s)} s")
    lines = [what, where]
    if run.overrides:
        lines.append("overrides: " + " ".join(run.overrides))
    if run.dense_reused_from:
        lines.append(f"dense model reused from {run.dense_reused_from}")
    return lines


def cell(text: str) -> str:
    # A bare `|` would end the cell early; newlines would end the row.
    return text.replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table) -> list[str]:
    lines = [f"## {table.title}", "", "| " + " | ".join(cell(h) for h in table.headers) + " |",
             "|" + "|".join("---" for _ in table.headers) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in table.rows]
    if table.footnotes:
        lines += [""] + [f"- {cell(note)}" for note in table.footnotes]
    return lines + [""]


def all_tables(results: Results) -> list[Table]:
    """The seed's three tables, then per-layer, pruning steps and "vs published" where the run has them."""
    extra = [t for t in (layers_table(results), steps_table(results), published_table(results)) if t is not None]
    return [accuracy_table(results), speed_table(results), params_table(results), *extra]


def render_markdown(results: Results, plots: list[str]) -> str:
    """The whole results.md; `plots` are paths relative to the run folder, where results.md lives."""
    run_id = results.run.id or "?"
    lines = [f"# progprune run {run_id}", ""] + [f"{line}  " for line in run_lines(results)] + [""]
    lines += ["## Answers", ""] + [f"- {cell(a)}" for a in answers(results)] + [""]
    for table in all_tables(results):
        lines += table_markdown(table)
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{PurePosixPath(p).stem}]({PurePosixPath(p).as_posix()})" for p in plots] + [""]
    return "\n".join(lines)
