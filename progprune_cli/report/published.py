"""The "vs published" table: each figure an experiment preset aims at, and whether this run reached it."""

from __future__ import annotations

from typing import Any, Callable

from progprune_cli.report.render import Table
from progprune_cli.report.tables import dig, num
from progprune_cli.results.schema import ModelRecord, Results, model_label

# metric → (how to read it from a model record, whether higher is better, shown as a percentage)
_METRICS: dict[str, tuple[Callable[[ModelRecord], float | None], bool, bool]] = {
    "test_accuracy": (lambda m: m.accuracy.test, True, True),
    "val_accuracy": (lambda m: m.accuracy.val, True, True),
    "test_error": (lambda m: None if m.accuracy.test is None else 1.0 - m.accuracy.test, False, True),
    "weights_kept": (lambda m: None if not m.params.total or m.params.nonzero is None
                     else m.params.nonzero / m.params.total, False, True),
    "macs_reduction": (lambda m: m.macs.theoretical_speedup, True, False),
}


def _show(value: float | None, percent: bool) -> str:
    if value is None:
        return "—"
    return f"{100 * value:.2f}%" if percent else f"{num(value)}×"


def _not_comparable(figure: dict[str, Any], results: Results) -> str | None:
    """Why this run cannot be held to the figure (other data, fewer training images, a shorter recipe), or None."""
    cfg = results.config
    dataset = dig(cfg, "dataset", "name")
    if figure.get("dataset") and dataset != figure["dataset"]:
        return f"other data ({dataset}, the figure is on {figure['dataset']})"
    if figure.get("dataset") and dig(cfg, "dataset", "limit") is not None:
        return f"other data (dataset.limit={dig(cfg, 'dataset', 'limit')} of the training set)"
    # A results.json from before train_samples was recorded cannot tell, and is compared as before.
    size, samples = figure.get("train_size"), results.run.train_samples
    if size and isinstance(samples, int) and samples < size:
        return f"trained on {samples:,} images; the figure assumes {size:,}"
    wanted, trained = figure.get("train_epochs"), dig(cfg, "train", "epochs")
    if wanted and isinstance(trained, int) and trained < wanted:
        return f"fewer epochs ({trained} of the recipe's {wanted} dense epochs)"
    return None


def verdict(figure: dict[str, Any], results: Results) -> tuple[str, str]:
    """(this run's value, reached / missed by … / not comparable (why))."""
    read, higher, percent = _METRICS[figure["metric"]]
    record = results.models.get(figure.get("model", "finetuned"))
    value = None if record is None else read(record)
    if value is None:
        return "—", f"not comparable (no {figure.get('model', 'finetuned')} model in this run)"
    why = _not_comparable(figure, results)
    if why is not None:
        return _show(value, percent), f"not comparable: {why}"
    target, tolerance = figure["value"], figure.get("tolerance", 0.0)
    short = (target - tolerance) - value if higher else value - (target + tolerance)
    if short <= 1e-12:
        return _show(value, percent), "reached"
    gap = f"{100 * short:.2f} points" if percent else f"{num(short)}×"
    return _show(value, percent), f"missed by {gap}"


def published_table(results: Results) -> Table | None:
    """None when the run's config names no published figure (`expected:` is empty)."""
    figures = [f for f in (results.config.get("expected") or []) if isinstance(f, dict) and f.get("metric") in
               _METRICS and isinstance(f.get("value"), (int, float))]
    if not figures:
        return None
    rows = []
    for figure in figures:
        _, _, percent = _METRICS[figure["metric"]]
        tolerance = figure.get("tolerance", 0.0)
        aim = _show(figure["value"], percent) + (f" ± {_show(tolerance, percent)}" if tolerance else "")
        ours, outcome = verdict(figure, results)
        rows.append([figure.get("source", "?"), figure["metric"], model_label(figure.get("model", "finetuned")),
                     aim, ours, outcome])
    notes = [f"{f['source']}: {f['note']}" for f in figures if f.get("note")]
    return Table(["source", "metric", "model", "published", "this run", "verdict"], rows, title="vs published",
                 footnotes=notes)
