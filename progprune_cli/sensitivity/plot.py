"""sensitivity.png: val accuracy against each unit's own sparsity, one curve per unit, the dense model dashed."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: analyses run on servers and in CI, where no display exists

import matplotlib.pyplot as plt  # noqa: E402  (must follow the backend choice)

from progprune_cli.atomic import replace_atomically  # noqa: E402
from progprune_cli.sensitivity.analysis import Analysis  # noqa: E402


def draw(analysis: Analysis, path: Path, title: str) -> None:
    units = list(analysis.sizes)
    fig, ax = plt.subplots(figsize=(7 + (2 if len(units) > 12 else 0), 4.5))
    try:
        for unit in units:
            curve = analysis.curve(unit)
            # From level 0 (the dense model), so every curve starts at the same point.
            ax.plot([0.0] + [p.level for p in curve], [analysis.dense_accuracy] + [p.val_accuracy for p in curve],
                    marker="o", markersize=3, label=unit)
        ax.axhline(analysis.dense_accuracy, color="gray", linestyle="--", linewidth=1, label="dense")
        ax.set_xlabel("sparsity of that unit alone (no retraining)")
        ax.set_ylabel("val accuracy")
        ax.set_xlim(0.0, 1.0)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        # Outside the axes: with many units the legend would hide the curves.
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7 if len(units) > 12 else 9,
                  ncol=1 + len(units) // 30, frameon=False)
        replace_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    finally:
        plt.close(fig)  # pyplot keeps every figure alive; a sweep draws many
