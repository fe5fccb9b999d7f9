"""N:M semi-structured masks (strategy.pattern, e.g. 2:4): N of every M consecutive input weights kept.

A weight `(out, *inputs)` is viewed as `(out, K)` with K the product of the rest (in_features for a Linear;
in_channels/groups × kh × kw for a conv, in PyTorch's memory order; transformers' Conv1D, stored `(in, out)`, is
transposed first: pruning/layout.py), and every run of M consecutive entries of a row is one group: the N
highest-scoring entries of each group are kept. That is the layout NVIDIA's sparse tensor cores (and
`torch.sparse.to_sparse_semi_structured`) take for 2:4. A unit whose K is not a multiple of M has no such grouping:
it stays dense and the pruning notes say so.

How a schedule ramps it: by layers. A group is either N:M or untouched; an in-between mask (3:4 on the way to 2:4)
is a pattern no kernel runs and gives only M - N levels. So at each step the fraction of eligible units converted
is the step's progress (its target / the final target, as strategy.layers overrides ramp), rounded to the nearest
unit, and units convert largest first (most weights; ties in model order). Largest first because then the
converted share of the eligible weights is never below the converted share of the units, so the achieved sparsity
keeps up with the schedule's target rather than lagging it; and the big layers are the ones whose matmuls a 2:4
kernel speeds up, and the most redundant, while the small first and last layers (the usual sensitive ones) change
last. A converted unit never changes again: already-pruned entries score -inf, so re-selecting keeps its mask.
"""

from __future__ import annotations

import math

import torch

# The pattern the semi-structured kernels of torch.sparse run (evaluate.sparse_kernels).
SEMI_STRUCTURED = (2, 4)


def group_size(shape: torch.Size | tuple[int, ...]) -> int:
    """K: the inputs of one output (a Linear's in_features; a conv's in_channels/groups × kh × kw)."""
    return math.prod(shape[1:])


def nm_mask(scores: torch.Tensor, current: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the `n` highest scores of every `m` consecutive entries along the flattened input dimension (ties: the
    earlier entry), within what `current` keeps. The unit's K must be a multiple of `m`."""
    rows = scores.shape[0]
    ranked = torch.where(current, scores.float(), float("-inf")).reshape(rows, -1, m)
    # A stable descending sort keeps tied entries in position order, so the result is deterministic.
    top = torch.sort(ranked, dim=-1, descending=True, stable=True).indices[..., :n]
    keep = torch.zeros_like(ranked, dtype=torch.bool).scatter_(-1, top, True)
    return keep.reshape(scores.shape) & current


def converted(shapes: dict[str, torch.Size], progress: float, m: int) -> list[str]:
    """The units a step at `progress` (0..1) converts: the nearest whole share of the eligible ones (K a multiple
    of `m`), largest first, ties in the given (model) order."""
    eligible = [unit for unit, shape in shapes.items() if group_size(shape) % m == 0]
    by_size = sorted(eligible, key=lambda unit: -math.prod(shapes[unit]))  # sorted() is stable: model order in ties
    return by_size[:math.floor(min(max(progress, 0.0), 1.0) * len(eligible) + 0.5)]


def dense_note(unit: str, shape: torch.Size | tuple[int, ...], n: int, m: int) -> str:
    """The pruning note of a unit the pattern cannot group."""
    return (f"{unit}: {group_size(shape)} inputs per output is not a multiple of {m}; left dense "
            f"(strategy.pattern {n}:{m})")


def select_pattern(scores: dict[str, torch.Tensor], current: dict[str, torch.Tensor], n: int, m: int,
                   progress: float) -> tuple[dict[str, torch.Tensor], dict[str, float], list[str]]:
    """New keep-masks, each unit's target sparsity ((m-n)/m converted, 0 otherwise) and the notes of the units left
    dense because they cannot be grouped."""
    shapes = {unit: s.shape for unit, s in scores.items()}
    chosen = set(converted(shapes, progress, m))
    keep, targets = {}, {}
    for unit, s in scores.items():
        # A unit converted at an earlier step stays converted (its pruned entries are never revived).
        done = unit in chosen or _is_nm(current[unit], n, m)
        keep[unit] = nm_mask(s, current[unit], n, m) if done else current[unit].clone()
        targets[unit] = (m - n) / m if done else 0.0
    notes = [dense_note(unit, shape, n, m) for unit, shape in shapes.items() if group_size(shape) % m]
    return keep, targets, notes


def _is_nm(mask: torch.Tensor, n: int, m: int) -> bool:
    """Whether a unit's mask already keeps at most `n` of every `m` (it was converted at an earlier step)."""
    if group_size(mask.shape) % m:
        return False
    kept = mask.reshape(mask.shape[0], -1, m).sum(-1)
    return bool((kept <= n).all())
