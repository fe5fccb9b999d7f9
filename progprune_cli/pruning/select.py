"""Turn importance scores into keep-masks: by threshold or target sparsity, per layer, global or LAMP, never to zero."""

from __future__ import annotations

from dataclasses import dataclass, field

import math

import torch


@dataclass(frozen=True)
class Selection:
    """What to prune: `threshold` (score < threshold goes) or `sparsity` (that fraction of the lowest goes)."""

    sparsity: float | None = None
    threshold: float | None = None
    scope: str = "layer"  # layer | global | lamp (global ranking of LAMP-normalized scores)
    layers: dict[str, float] = field(default_factory=dict)  # per-unit sparsity overrides (layer scope)
    min_keep: int = 1


def select(scores: dict[str, torch.Tensor], current: dict[str, torch.Tensor],
           how: Selection) -> tuple[dict[str, torch.Tensor], list[str]]:
    """New keep-masks (a subset of `current`) and notes on every unit the zero-width guard capped.

    Already-pruned entries score -inf so they count towards a sparsity target and are never revived.
    """
    ranked = {k: torch.where(current[k], s.float(), torch.tensor(float("-inf"))) for k, s in scores.items()}
    overridden = {k for k in ranked if _override(k, how.layers) is not None}
    keep: dict[str, torch.Tensor] = {}
    if how.threshold is not None:
        for k, s in ranked.items():
            keep[k] = s >= how.threshold
    if how.threshold is None and how.scope in ("global", "lamp"):
        pool = [k for k in ranked if k not in overridden]
        if pool:
            pooled = {k: lamp(scores[k], current[k]) for k in pool} if how.scope == "lamp" else ranked
            flat = torch.cat([pooled[k].flatten() for k in pool])
            mask = _keep_top(flat, _count(how.sparsity or 0.0, flat.numel()))
            for k, part in zip(pool, torch.split(mask, [ranked[k].numel() for k in pool])):
                keep[k] = part.view_as(ranked[k])
    for k, s in ranked.items():
        override = _override(k, how.layers)
        if override is not None:
            keep[k] = _keep_top(s.flatten(), _count(override, s.numel())).view_as(s)
        elif k not in keep:
            keep[k] = _keep_top(s.flatten(), _count(how.sparsity or 0.0, s.numel())).view_as(s)
    notes = []
    for k in keep:
        keep[k] &= current[k]
        if not keep[k].any() and current[k].numel() >= how.min_keep:
            # Zero-width guard: a layer with nothing left cuts the network; keep its best entries.
            keep[k] = _keep_top(ranked[k].flatten(), ranked[k].numel() - how.min_keep).view_as(ranked[k])
            keep[k] &= current[k]  # a unit that arrived fully pruned stays so: the guard never revives
            notes.append(f"{k}: would be pruned to zero; kept its {how.min_keep} highest-scoring entries")
    return keep, notes


def lamp(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """LAMP scores of one unit (Lee et al. 2021): s² / Σ v² over the unit's kept entries v with |v| >= |s|.

    In float64. Ties share one denominator (every entry at least as large counts, the tied ones too), so equal
    scores stay equal. Pruned entries are left out of every sum and score -inf, as in `select`. A unit's largest
    entry scores 1 (1/k where k tie for largest), which is what keeps a global LAMP ranking from emptying layers.
    """
    squared = torch.where(keep, scores.detach().double().square(), 0.0).flatten()
    ordered = torch.sort(squared).values
    at_least = ordered.flip(0).cumsum(0).flip(0)  # at_least[i] = sum of ordered[i:]
    denominator = at_least[torch.searchsorted(ordered, squared, side="left")]
    normalized = torch.where(denominator > 0, squared / denominator, 0.0)  # an all-zero unit scores 0, not NaN
    return torch.where(keep, normalized.view_as(scores), float("-inf"))


def _override(unit: str, layers: dict[str, float]) -> float | None:
    """The per-layer target for a unit named like `conv1.weight` or `conv1`, if the user gave one."""
    for name, value in layers.items():
        if unit == name or unit.rsplit(".", 1)[0] == name:
            return value
    return None


def _count(sparsity: float, n: int) -> int:
    """How many entries a sparsity target removes (nearest whole entry, halves rounded up)."""
    return math.floor(sparsity * n + 0.5)


def _keep_top(scores: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Keep all but the `n_prune` lowest scores; ties broken by position so the result is deterministic."""
    keep = torch.ones_like(scores, dtype=torch.bool)
    if n_prune <= 0:
        return keep
    order = torch.sort(scores, stable=True).indices
    keep[order[:n_prune]] = False
    return keep
