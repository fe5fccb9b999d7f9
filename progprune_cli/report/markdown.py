"""Render a run's results.md: what was run, the three answers, every table as GitHub markdown, the plots."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from progprune_cli.report.tables import Table, all_tables, answers, dig, num, pct


def run_lines(results: dict[str, Any]) -> list[str]:
    """Plain-text lines saying what was run; the rich console prints the same lines."""
    pruning, run, cfg = results.get("pruning"), results.get("run") or {}, results.get("config") or {}
    if pruning:
        target = (pct(pruning.get("target")) + " sparsity" if pruning.get("mode", "sparsity") == "sparsity"
                  else f"|w| < {num(pruning.get('target'))}")
        what = (f"strategy {pruning.get('strategy')} ({pruning.get('granularity')} granularity, "
                f"{pruning.get('scope')} scope) · schedule {pruning.get('schedule')} · target {target}, "
                f"achieved {pct(pruning.get('achieved_sparsity'))}")
    else:
        what = "strategy: none (dense baseline)"
    where = (f"dataset {dig(cfg, 'dataset', 'name')} · model {dig(cfg, 'model', 'name')} · seed {run.get('seed')} · "
             f"device {run.get('device')} · torch {run.get('torch')} · {num(run.get('duration_s'))} s")
    lines = [what, where]
    if run.get("overrides"):
        lines.append("overrides: " + " ".join(str(o) for o in run["overrides"]))
    if run.get("dense_reused_from"):
        lines.append(f"dense model reused from {run['dense_reused_from']}")
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


def render_markdown(results: dict[str, Any], plots: list[str]) -> str:
    """The whole results.md; `plots` are paths relative to the run folder, where results.md lives."""
    run_id = dig(results, "run", "id") or "?"
    lines = [f"# progprune run {run_id}", ""] + [f"{line}  " for line in run_lines(results)] + [""]
    lines += ["## Answers", ""] + [f"- {cell(a)}" for a in answers(results)] + [""]
    for table in all_tables(results):
        lines += table_markdown(table)
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{PurePosixPath(p).stem}]({PurePosixPath(p).as_posix()})" for p in plots] + [""]
    return "\n".join(lines)
