"""Draw a run's plots (progress over iterations, per-layer sparsity) from metrics.csv and results.json."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: runs draw plots on servers and in CI, where no display exists

import matplotlib.pyplot as plt  # noqa: E402  (must follow the backend choice)
from matplotlib.figure import Figure  # noqa: E402

from progprune_cli import reading  # noqa: E402
from progprune_cli.atomic import replace_atomically  # noqa: E402
from progprune_cli.results.schema import ROWS, Results  # noqa: E402

# The stages of the pruned model's story, shaded in turn; a baseline stage (dense_long) is a line of its own.
SHADES = {row.stage: row.shade for row in ROWS if row.stage is not None and row.shade is not None}
STAGES = tuple(SHADES)
BASELINES = [row for row in ROWS if row.stage is not None and row.line is not None]


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.csv rows with numbers parsed; an empty cell (a value that does not apply) becomes None. Read through
    progprune_cli.reading (capped size, no symlink or FIFO); a missing or corrupt file gives no rows (no plot)."""
    numeric = ("epoch", "iteration", "val_acc", "target_sparsity", "achieved_sparsity")
    try:
        rows = list(csv.DictReader(io.StringIO(reading.read_text(path, reading.CSV_LIMIT), newline="")))
        for row in rows:
            if not isinstance(row.get("stage"), str) or not isinstance(row.get("event"), str):
                return []  # another header, or a short row: not this file's columns
            for key in numeric:
                row[key] = float(row[key]) if row.get(key) not in (None, "") else None
    except (FileNotFoundError, reading.Unreadable, csv.Error, TypeError, ValueError):
        return []  # a corrupt file: skip the plot rather than draw a wrong one
    return [r for r in rows if r["iteration"] is not None]


def save(fig: Figure, path: Path) -> None:
    """Written atomically, so a reader never sees half a PNG."""
    path.parent.mkdir(exist_ok=True)
    try:
        replace_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    finally:
        plt.close(fig)  # pyplot keeps every open figure alive; a sweep draws hundreds


def shade_stages(ax: Any, rows: list[dict[str, Any]]) -> None:
    """One band per stage, from the previous stage's last iteration to this stage's last one."""
    start = 0.0
    for stage in STAGES:
        its = [r["iteration"] for r in rows if r["stage"] == stage]
        if not its:
            continue
        end = max(its)
        ax.axvspan(start, end, color=SHADES[stage], alpha=0.6, lw=0)
        ax.text((start + end) / 2, 1.01, stage, transform=ax.get_xaxis_transform(), ha="center", va="bottom")
        start = end


def series(rows: list[dict[str, Any]], key: str, stages: tuple[str, ...]) -> tuple[list[float], list[float]]:
    picked = [r for r in rows if r["stage"] in stages and r[key] is not None]
    return [r["iteration"] for r in picked], [100 * r[key] for r in picked]


def draw_progress(rows: list[dict[str, Any]], path: Path) -> bool:
    epochs = [r for r in rows if r["event"] == "epoch"]
    x_acc, acc = series(epochs, "val_acc", STAGES)
    if not acc:
        return False
    fig, ax = plt.subplots(figsize=(8, 4.5))
    shade_stages(ax, rows)
    ax.plot(x_acc, acc, "o-", color="tab:blue", zorder=5, label="val accuracy")
    for row in BASELINES:
        x_base, base = series(epochs, "val_acc", (row.stage,))
        if base:
            ax.plot(x_base, base, "o--", color=row.line, label=f"val accuracy, {row.label}")
    x_t, target = series(rows, "target_sparsity", STAGES)
    if target:
        # Drawn over the achieved line: when a schedule hits its targets exactly the two coincide.
        ax.step(x_t, target, where="post", ls="--", lw=2, color="tab:red", zorder=4, label="target sparsity")
    x_s, achieved = series(rows, "achieved_sparsity", STAGES)
    if achieved:
        ax.step(x_s, achieved, "s-", where="post", ms=4, lw=3, alpha=0.7, color="tab:orange",
                label="achieved sparsity")
    ax.set(xlabel="iteration (optimizer steps)", ylabel="%", ylim=(0, 102), xlim=(0, None))
    ax.legend(loc="lower right", fontsize="small")
    save(fig, path)
    return True


def draw_layer_sparsity(results: Results, path: Path) -> bool:
    layers = results.layers
    if not layers:
        return False
    names = [str(layer.name) for layer in layers]
    values = [100 * float(layer.sparsity or 0.0) for layer in layers]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(layers) + 2), 4))
    bars = ax.bar(range(len(names)), values, color="tab:orange")
    ax.bar_label(bars, fmt="%.1f", fontsize="small")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    pruning = results.pruning
    if pruning is not None and pruning.mode == "sparsity" and pruning.target is not None:
        ax.axhline(100 * pruning.target, ls="--", color="tab:red", label="target sparsity")
        ax.legend(loc="upper right", fontsize="small")
    ax.set(ylabel="sparsity (%)", ylim=(0, 105), title="per-layer sparsity")
    save(fig, path)
    return True


def read_results(path: Path) -> Results:
    """results.json as a record; an empty one when it is missing, unreadable or of another schema (no plot)."""
    try:
        return Results.from_json(reading.read_json(path))
    except (OSError, ValueError):  # SchemaError and reading.Unreadable are ValueErrors
        return Results()


def draw_plots(run_dir: Path, results: Results | None = None) -> list[str]:
    """Write plots/progress.png and plots/layer_sparsity.png where their data exists; return their relative paths.
    `results`: the record when the caller has it (the runner draws before it writes results.json)."""
    out = Path(run_dir) / "plots"
    results = read_results(Path(run_dir) / "results.json") if results is None else results
    drawn = []
    if draw_progress(read_metrics(Path(run_dir) / "metrics.csv"), out / "progress.png"):
        drawn.append("plots/progress.png")
    if draw_layer_sparsity(results, out / "layer_sparsity.png"):
        drawn.append("plots/layer_sparsity.png")
    return drawn
