"""`random`: the honest baseline: weights or channels chosen uniformly at random, seeded by run seed and step."""

from __future__ import annotations

from dataclasses import dataclass
import torch
from torch import nn

from progprune_cli.pruning.strategies import channel_graph as cg
from progprune_cli.pruning.strategies.base import STRATEGIES, PruneContext, Strategy
from progprune_cli.config.schema import choice
from progprune_cli.pruning.strategies.channels import ChannelConfig, ChannelStrategy
from progprune_cli.pruning.strategies.granularity import by_granularity
from progprune_cli.pruning.masks import Masks


@dataclass
class RandomConfig(ChannelConfig):
    granularity: str = choice("weight", "channel")


def random_scores(shapes: dict[str, torch.Size], ctx: PruneContext) -> dict[str, torch.Tensor]:
    """Uniform scores, the same for the same seed and step (so a rerun prunes the same entries)."""
    # Not seed + step: run seed 1 at step 0 would then draw what seed 0 draws at step 1.
    generator = torch.Generator().manual_seed(ctx.seed * 1_000_003 + ctx.step)
    return {name: torch.rand(shape, generator=generator) for name, shape in shapes.items()}


class RandomWeights(Strategy):

    def scores(self, model: nn.Module, masks: Masks, ctx: PruneContext) -> dict[str, torch.Tensor]:
        return random_scores({name: mask.shape for name, mask in masks.items()}, ctx)


class RandomChannels(ChannelStrategy):

    def layer_scores(self, model: nn.Module, layers: list[str], ctx: PruneContext) -> dict[str, torch.Tensor]:
        modules = dict(model.named_modules())
        return random_scores({name: cg.out_major(modules[name], modules[name].weight).shape[:1] for name in layers},
                             ctx)


STRATEGIES.register("random", RandomConfig)(by_granularity(RandomWeights, RandomChannels))
