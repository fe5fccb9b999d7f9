"""`weight`: magnitude pruning (§2.1, §5.3): smallest |w| first, all |w| < threshold, or N:M (pruning/pattern.py)."""

from __future__ import annotations

import torch
from torch import nn

from progprune_cli.pruning.strategies.base import STRATEGIES, PruneContext, Strategy
from progprune_cli.pruning.masks import Masks


@STRATEGIES.register("weight")
class WeightMagnitude(Strategy):
    def scores(self, model: nn.Module, masks: Masks, ctx: PruneContext) -> dict[str, torch.Tensor]:
        params = dict(model.named_parameters())
        return {name: params[name].detach().abs().cpu() for name in masks}
