"""`sparsegpt` (Frantar & Alistarh 2023): each layer pruned and its kept weights updated to reconstruct its outputs.

Per unit, in model order: H = 2·XᵀX/n over the layer's calibration inputs (pruning/strategies/layer_inputs.py), read
with every earlier unit already pruned and updated, so each layer is calibrated on what the pruned layers before it
output; `percdamp` × mean(diag H) added to the diagonal; U the upper Cholesky factor of H⁻¹. Then the reference
implementation's `fasterprune`: columns in blocks of `blocksize`; each block's mask is its round(sparsity × size)
lowest w²/U_jj² (over the whole block, as the reference does; entries pruned by earlier steps are in it first and stay
pruned), or with strategy.pattern=N:M the M−N lowest of each group of M inputs of a row, chosen on the weights as
updated so far; the block's columns are pruned one by one with the OBS update of the columns after them, and the
block's error then updates every later column. The kept weights CHANGE: they are written into the model in place
(`Strategy.updates_weights`), and the training loop goes on from them. A weight is pruned as its `(out, K)` rows
(pruning/layout.py), so transformers' Conv1D, stored `(in, out)`, has its blocks over its inputs too and its update
written back transposed.

Each schedule step runs it again on the current weights, the masks so far kept pruned: progressive SparseGPT.
`scores` (what `progprune sensitivity` ranks) is w²/U_jj² on the model as it stands, without updates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from omegaconf import MISSING
from torch import nn

from progprune_cli.errors import UserError
from progprune_cli.pruning.layout import layouts
from progprune_cli.pruning.masks import Masks
from progprune_cli.pruning.pattern import _is_nm, converted, dense_note, group_size
from progprune_cli.pruning.strategies.base import STRATEGIES, PruneContext, StepReport
from progprune_cli.pruning.strategies.layer_inputs import CalibratedConfig, Calibrated, observe, step_report
from progprune_cli.config import StrategyConfig


@dataclass
class SparseGPTConfig(CalibratedConfig):
    percdamp: float = MISSING
    blocksize: int = MISSING


def hessians(model: nn.Module, units: list[str], ctx: PruneContext, count: int, *,
             one: bool = False) -> dict[str, torch.Tensor]:
    """2·XᵀX/n of each unit's layer inputs (float64 for a float64 layer, else float32), on `ctx.device`; `one`: a
    single unit, its forward stopped at its layer."""
    sums: dict[str, torch.Tensor] = {}
    rows: dict[str, int] = {}

    def record(unit: str, cols: torch.Tensor) -> None:
        cols = cols.to(torch.promote_types(cols.dtype, torch.float32))
        sums[unit] = sums.get(unit, 0) + cols.T @ cols
        rows[unit] = rows.get(unit, 0) + cols.shape[0]

    observe(model, units, ctx, count, record, stop_after=one)
    return {unit: 2 * s / rows[unit] for unit, s in sums.items()}


def inverse_factor(h: torch.Tensor, percdamp: float, unit: str) -> tuple[torch.Tensor, torch.Tensor]:
    """U, the upper Cholesky factor of (H + damping)⁻¹, and the dead columns (inputs always zero, diag H = 0)."""
    h = h.clone()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1  # an input that is always zero: no cross terms, so pruning its weight moves nothing else
    h.diagonal().add_(percdamp * torch.diagonal(h).mean())
    try:
        return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True), dead
    except torch.linalg.LinAlgError:
        raise UserError(f"strategy.percdamp: the calibration Hessian of {unit} is singular at percdamp {percdamp:g}; "
                        "raise strategy.percdamp or strategy.batches") from None


def fasterprune(w: torch.Tensor, h: torch.Tensor, keep: torch.Tensor, sparsity: float, blocksize: int,
                percdamp: float, pattern: tuple[int, int] | None = None,
                unit: str = "layer") -> tuple[torch.Tensor, torch.Tensor, bool]:
    """The updated `(out, K)` weights, their keep-mask (within `keep`) and whether a block had to keep one entry it
    would have lost. The arithmetic of the reference implementation (IST-DASLab/sparsegpt, `SparseGPT.fasterprune`)."""
    u, dead = inverse_factor(h, percdamp, unit)
    w = w.to(u.dtype).clone()
    out = torch.zeros_like(keep)
    capped = False
    for i1 in range(0, w.shape[1], blocksize):
        i2 = min(i1 + blocksize, w.shape[1])
        w1, u1, kept = w[:, i1:i2].clone(), u[i1:i2, i1:i2], keep[:, i1:i2]
        d = torch.diagonal(u1)
        q1, err1 = torch.zeros_like(w1), torch.zeros_like(w1)
        if pattern is None:
            pruned, cap = _block_mask(_saliency(w1, d, dead[i1:i2], kept), kept, sparsity)
            capped |= cap
        else:
            pruned = ~kept
        for i in range(i2 - i1):
            if pattern is not None and i % pattern[1] == 0:
                n, m = pattern
                group = _saliency(w1[:, i:i + m], d[i:i + m], dead[i1 + i:i1 + i + m], kept[:, i:i + m])
                lowest = torch.sort(group, dim=1, stable=True).indices[:, :m - n]
                pruned[:, i:i + m] |= torch.zeros_like(kept[:, i:i + m]).scatter_(1, lowest, True)
            q = torch.where(pruned[:, i], 0.0, w1[:, i])
            err = (w1[:, i] - q) / d[i]
            w1[:, i:] -= err.unsqueeze(1) @ u1[i, i:].unsqueeze(0)
            q1[:, i], err1[:, i] = q, err
        w[:, i1:i2] = q1
        w[:, i2:] -= err1 @ u[i1:i2, i2:]
        out[:, i1:i2] = ~pruned
    return w, out & keep, capped


def _saliency(w: torch.Tensor, d: torch.Tensor, dead: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """w²/U_jj²: the error of pruning each weight alone; 0 for a dead input, -inf for an entry already pruned."""
    score = torch.where(dead, 0.0, w.square() / d.square())
    return torch.where(kept, score, float("-inf"))


def _block_mask(score: torch.Tensor, kept: torch.Tensor, sparsity: float) -> tuple[torch.Tensor, bool]:
    """Pruned entries of a block: its round(sparsity × size) lowest scores (ties by position), never all of a block
    that still keeps some."""
    count = math.floor(sparsity * score.numel() + 0.5)
    capped = count >= score.numel() and bool(kept.any())
    lowest = torch.sort(score.flatten(), stable=True).indices[:score.numel() - 1 if capped else count]
    pruned = torch.zeros(score.numel(), dtype=torch.bool, device=score.device)
    pruned[lowest] = True
    return pruned.view_as(score) | ~kept, capped


@STRATEGIES.register("sparsegpt", SparseGPTConfig)
class SparseGPT(Calibrated):

    updates_weights: ClassVar[bool] = True

    def __init__(self, cfg: StrategyConfig) -> None:
        super().__init__(cfg)
        percdamp, blocksize = self.cfg.percdamp, self.cfg.blocksize
        if not (math.isfinite(percdamp) and percdamp >= 0):
            raise UserError(f"strategy.percdamp: got {percdamp}; must be a finite number >= 0 (a fraction of the mean "
                            "Hessian diagonal added to it, e.g. 0.01)")
        if blocksize < 1:
            raise UserError(f"strategy.blocksize: got {blocksize}; must be >= 1 (columns pruned together, e.g. 128)")
        if self.pattern is not None and blocksize % self.pattern[1]:
            raise UserError(f"strategy.blocksize: got {blocksize}; with strategy.pattern {self.cfg.pattern} it must "
                            f"be a multiple of {self.pattern[1]}")

    def scores(self, model: nn.Module, masks: Masks, ctx: PruneContext) -> dict[str, torch.Tensor]:
        params = dict(model.named_parameters())
        lay = layouts(model, list(masks))
        scores = {}
        for unit, h in hessians(model, list(masks), ctx, self.cfg.batches).items():
            u, dead = inverse_factor(h, self.cfg.percdamp, unit)
            w = lay[unit].rows(params[unit].detach()).to(u.dtype)
            kept = lay[unit].rows(masks[unit]).to(u.device)
            scores[unit] = lay[unit].back(_saliency(w, torch.diagonal(u), dead, kept).cpu(), masks[unit].shape)
        return scores

    def step(self, model: nn.Module, masks: Masks, target: float, progress: float,
             ctx: PruneContext) -> tuple[Masks, StepReport]:
        targets = self.unit_targets(masks, target, progress)
        lay = layouts(model, list(masks))
        rows = {u: lay[u].rows(m) for u, m in masks.items()}  # each output's inputs along dim 1, as fasterprune takes
        chosen = None if self.pattern is None else set(converted({u: r.shape for u, r in rows.items()}, progress,
                                                                 self.pattern[1]))
        params = dict(model.named_parameters())
        new: Masks = dict(masks)
        notes: list[str] = self.dense_notes(model)
        for unit, mask in rows.items():
            if self.pattern is not None:
                n, m = self.pattern
                if group_size(mask.shape) % m:
                    notes.append(dense_note(unit, mask.shape, n, m))
                if group_size(mask.shape) % m or not (unit in chosen or _is_nm(mask, n, m)):  # type: ignore[operator]
                    targets[unit] = 0.0
                    continue
                targets[unit] = (m - n) / m
            h = hessians(model, [unit], ctx, self.cfg.batches, one=True)[unit]
            weight = params[unit]
            updated, keep, capped = fasterprune(lay[unit].rows(weight.detach()), h, mask.to(h.device),
                                                targets[unit], self.cfg.blocksize, self.cfg.percdamp, self.pattern,
                                                unit)
            with torch.no_grad():
                weight.copy_(lay[unit].back(updated, weight.shape))
            new[unit] = lay[unit].back(keep.cpu(), masks[unit].shape)
            if capped:
                notes.append(f"{unit}: sparsity {targets[unit]:g} would empty a block of columns; it kept its "
                             "highest-scoring entry")
        return new, step_report(masks, new, targets, target, notes)
