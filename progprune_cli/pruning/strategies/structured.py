"""`structured`: filter pruning (Li et al. 2017): output channels with the smallest Lp-norm filters go first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from progprune_cli.pruning.strategies.base import STRATEGIES, PruneContext
from progprune_cli.pruning.strategies.channels import ChannelOptions, ChannelStrategy


@dataclass(frozen=True)
class StructuredOptions(ChannelOptions):
    norm: Literal[1, 2] = 1


@STRATEGIES.register("structured")
class Structured(ChannelStrategy):
    Options = StructuredOptions

    def layer_scores(self, model: nn.Module, layers: list[str], ctx: PruneContext) -> dict[str, torch.Tensor]:
        modules = dict(model.named_modules())
        return {name: modules[name].weight.detach().flatten(1).norm(p=self.opts.norm, dim=1) for name in layers}
