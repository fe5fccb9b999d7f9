"""Render a run's results.md: what was run, the three answers, every table as GitHub markdown, the plots."""

from __future__ import annotations

from pathlib import PurePosixPath

from progprune_cli.report.published import published_table
from progprune_cli.report.render import Table, markdown_text, to_markdown
from progprune_cli.report.tables import accuracy_table, answers, dig, layers_table, num, params_table, pct
from progprune_cli.report.tables import speed_table, steps_table
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
    model = (run.model_source or "").removeprefix("progprune:") or dig(cfg, 'model', 'name')
    where = (f"dataset {dig(cfg, 'dataset', 'name')} · model {model} · seed {run.seed} · "
             f"device {run.device} · torch {run.torch} · {num(run.duration_s)} s")
    lines = [what, where, *_origin_lines(results)]
    if run.overrides:
        lines.append("overrides: " + " ".join(run.overrides))
    if run.dense_reused_from:
        lines.append(f"dense model reused from {run.dense_reused_from}")
    return lines


# What RunInfo.original says the original model is, when it is not a model trained here.
ORIGINAL = {"loaded": "original: the model as loaded from model.weights (train.epochs=0), not trained here",
            "untrained": "original: UNTRAINED (train.epochs=0 and no model.weights): initialised at random, so its "
                         "figures are not those of a trained model"}


def _origin_lines(results: Results) -> list[str]:
    """The weights the model started from, what fitting them to the data changed, and what the original is."""
    run = results.run
    lines = []
    if run.weights is not None:
        weights = run.weights
        lines.append(f"weights {weights.file} (sha256 {(weights.sha256 or '?')[:12]})"
                     + "".join(f"; {note}" for note in weights.adapted))
    if run.original in ORIGINAL:
        lines.append(ORIGINAL[run.original])
    return lines


def all_tables(results: Results) -> list[Table]:
    """The seed's three tables, then per-layer, pruning steps and "vs published" where the run has them."""
    extra = [t for t in (layers_table(results), steps_table(results), published_table(results)) if t is not None]
    return [accuracy_table(results), speed_table(results), params_table(results), *extra]


def render_markdown(results: Results, plots: list[str]) -> str:
    """The whole results.md; `plots` are paths relative to the run folder, where results.md lives."""
    run_id = results.run.id or "?"
    lines = [f"# progprune run {run_id}", ""] + [f"{line}  " for line in run_lines(results)] + [""]
    lines += ["## Answers", ""] + [f"- {markdown_text(a)}" for a in answers(results)] + [""]
    for table in all_tables(results):
        lines += [to_markdown(table)]  # it ends in a newline: a blank line follows each table
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{PurePosixPath(p).stem}]({PurePosixPath(p).as_posix()})" for p in plots] + [""]
    return "\n".join(lines)
