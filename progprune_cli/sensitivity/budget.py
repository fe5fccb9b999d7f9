"""The per-unit budget: raise the unit whose next measured level costs the least accuracy per parameter removed."""

from __future__ import annotations

import math
from dataclasses import dataclass

import yaml


@dataclass(frozen=True)
class Curve:
    """One unit's measurements, levels increasing; the dense model (level 0, nothing removed) is implied."""

    unit: str
    size: int  # entries of the unit (weights, or channels): what a unit's sparsity is a fraction of
    levels: tuple[float, ...]
    accuracy: tuple[float, ...]
    params_removed: tuple[int, ...]

    def at(self, step: int, dense_accuracy: float) -> tuple[float, float, int]:
        """(level, accuracy, params removed) at `step` (0 = dense, i = the i-th level)."""
        if step == 0:
            return 0.0, dense_accuracy, 0
        return self.levels[step - 1], self.accuracy[step - 1], self.params_removed[step - 1]


@dataclass(frozen=True)
class Budget:
    """Per-unit sparsities (the model's unit order), their size-weighted overall sparsity and predicted drop."""

    sparsities: dict[str, float]
    sparsity: float
    predicted_drop: float  # sum of the units' own measured drops: each unit was measured alone


def derive(curves: list[Curve], dense_accuracy: float, target: float) -> Budget:
    """Greedy from all-dense: repeatedly raise the unit whose next level loses the least predicted val accuracy
    per parameter removed (ties: the earlier unit), until the size-weighted sparsity reaches `target`; the last
    raise is interpolated linearly between its two levels so the budget lands on the target, not past it."""
    total = sum(c.size for c in curves)
    need = target * total  # entries to remove, counted as Σ size × sparsity
    slack = 1e-9 * max(total, 1)
    step = {c.unit: 0 for c in curves}
    sparsity = {c.unit: 0.0 for c in curves}
    accuracy = {c.unit: dense_accuracy for c in curves}
    removed = 0.0
    while removed < need - slack:
        options = [c for c in curves if step[c.unit] < len(c.levels)]
        if not options:
            break  # every unit at its largest level: the loader keeps targets within reach, so only rounding
        best = min(options, key=lambda c: (_cost(c, step[c.unit], dense_accuracy), curves.index(c)))
        low, high = best.at(step[best.unit], dense_accuracy), best.at(step[best.unit] + 1, dense_accuracy)
        gain = (high[0] - low[0]) * best.size
        if removed + gain > need + slack:
            part = (need - removed) / gain
            sparsity[best.unit] = min(_round_up(low[0] + part * (high[0] - low[0])), high[0])
            accuracy[best.unit] = low[1] + part * (high[1] - low[1])
            removed = need
            break
        step[best.unit] += 1
        sparsity[best.unit], accuracy[best.unit] = high[0], high[1]
        removed += gain
    overall = sum(sparsity[c.unit] * c.size for c in curves) / total if total else 0.0
    return Budget(sparsity, overall, sum(dense_accuracy - a for a in accuracy.values()))


def _cost(curve: Curve, step: int, dense_accuracy: float) -> float:
    """Predicted accuracy lost per parameter removed by the unit's next level (a level that removes nothing
    counts as removing one, so it is free only when it costs no accuracy either)."""
    _, accuracy, params = curve.at(step, dense_accuracy)
    _, next_accuracy, next_params = curve.at(step + 1, dense_accuracy)
    return (accuracy - next_accuracy) / max(next_params - params, 1)


def _round_up(value: float, digits: int = 6) -> float:
    """Readable in layers.yaml, and never below the value (so the budget still reaches its target)."""
    rounded = round(value, digits)
    return rounded if rounded >= value - 1e-12 else math.ceil(value * 10**digits) / 10**digits


def layers_yaml(budget: Budget, header: list[str]) -> str:
    """layers.yaml: `header` as comment lines, then unit: sparsity in the model's order."""
    comment = "".join(f"# {line}\n" for line in header)
    return comment + yaml.safe_dump(budget.sparsities, sort_keys=False, default_flow_style=False)
