"""`wanda` (Sun et al. 2023): |W_ij| · ‖X_j‖₂ over calibration inputs, each output row losing the same fraction.

‖X_j‖₂ is the L2 norm of input column j over every calibration row (pruning/strategies/layer_inputs.py: a Linear's
every position, a Conv2d's every unfolded patch), read in one pass of `strategy.batches` batches through the model
as it stands (pruned entries already zero). The paper's comparison group is the output row (pruning/layout.py: a
Conv1D's stored column): each row of a unit
loses round(sparsity × K) of its K weights (already-pruned ones count and are never revived; a row of one input
keeps it, with a note). With strategy.pattern=N:M the groups are M consecutive inputs of a row (pruning/pattern.py).
Weights are never changed, only masked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from progprune_cli.pruning.layout import layouts
from progprune_cli.pruning.masks import Masks
from progprune_cli.pruning.strategies.base import STRATEGIES, PruneContext, StepReport
from progprune_cli.pruning.strategies.layer_inputs import CalibratedConfig, Calibrated, observe, step_report


@dataclass
class WandaConfig(CalibratedConfig):
    pass


def input_norms(model: nn.Module, units: list[str], ctx: PruneContext, count: int) -> dict[str, torch.Tensor]:
    """‖X_j‖₂ of every input column of every unit's layer (float64), over `count` calibration batches."""
    sums: dict[str, torch.Tensor] = {}

    def record(unit: str, cols: torch.Tensor) -> None:
        sums[unit] = sums.get(unit, 0) + cols.double().square().sum(0).cpu()

    observe(model, units, ctx, count, record)
    return {unit: s.sqrt() for unit, s in sums.items()}


def row_keep(scores: torch.Tensor, current: torch.Tensor, sparsity: float) -> tuple[torch.Tensor, bool]:
    """Keep-mask pruning the round(sparsity × K) lowest of each row's K scores (pruned entries first, ties by
    position), within `current`; and whether a row had to keep one entry it would have lost."""
    rows = scores.reshape(scores.shape[0], -1)
    kept = current.reshape(rows.shape)
    width = rows.shape[1]
    count = math.floor(sparsity * width + 0.5)
    capped = count >= width
    ranked = torch.where(kept, rows.double(), float("-inf"))
    lowest = torch.sort(ranked, dim=1, stable=True).indices[:, :min(count, width - 1)]
    keep = torch.ones_like(kept).scatter_(1, lowest, False) & kept
    return keep.view_as(current), capped


@STRATEGIES.register("wanda", WandaConfig)
class Wanda(Calibrated):

    def scores(self, model: nn.Module, masks: Masks, ctx: PruneContext) -> dict[str, torch.Tensor]:
        params = dict(model.named_parameters())
        norms = input_norms(model, list(masks), ctx, self.cfg.batches)
        lay = layouts(model, list(masks))
        return {unit: lay[unit].back(lay[unit].rows(params[unit].detach().double().cpu()).abs() * norms[unit],
                                     masks[unit].shape) for unit in masks}

    def step(self, model: nn.Module, masks: Masks, target: float, progress: float,
             ctx: PruneContext) -> tuple[Masks, StepReport]:
        if self.pattern is not None:
            return super().step(model, masks, target, progress, ctx)
        scores = self.scores(model, masks, ctx)
        targets = self.unit_targets(masks, target, progress)
        new: Masks = {}
        notes = self.dense_notes(model)
        lay = layouts(model, list(masks))
        for unit, s in scores.items():
            rows = lay[unit].rows(s)
            keep, capped = row_keep(rows, lay[unit].rows(masks[unit]), targets[unit])
            new[unit] = lay[unit].back(keep, masks[unit].shape)
            if capped:
                notes.append(f"{unit}: sparsity {targets[unit]:g} would empty rows of {rows.shape[1]} inputs; each "
                             "row kept its highest-scoring entry")
        return new, step_report(masks, new, targets, target, notes)
