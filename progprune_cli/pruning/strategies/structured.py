"""`structured`: filter pruning (Li et al. 2017): output channels with the smallest Lp-norm filters go first."""

from __future__ import annotations

from dataclasses import dataclass
import torch
from torch import nn

from progprune_cli.pruning.strategies import channel_graph as cg
from progprune_cli.pruning.strategies.base import STRATEGIES, PruneContext
from progprune_cli.config.schema import choice
from progprune_cli.pruning.strategies.channels import ChannelConfig, ChannelStrategy


@dataclass
class StructuredConfig(ChannelConfig):
    norm: int = choice(1, 2)


@STRATEGIES.register("structured", StructuredConfig)
class Structured(ChannelStrategy):

    def layer_scores(self, model: nn.Module, layers: list[str], ctx: PruneContext) -> dict[str, torch.Tensor]:
        modules = dict(model.named_modules())
        return {name: cg.out_major(modules[name], modules[name].weight.detach()).flatten(1).norm(p=self.cfg.norm, dim=1)
                for name in layers}
