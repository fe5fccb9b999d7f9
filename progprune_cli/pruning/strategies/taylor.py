"""`taylor`: first-order Taylor importance |w · ∂L/∂w| on calibration batches, per weight or per output channel."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from omegaconf import MISSING
from torch import nn

from progprune_cli.pruning.strategies import channel_graph as cg
from progprune_cli.pruning.strategies.base import STRATEGIES, PruneContext, Strategy
from progprune_cli.pruning.strategies.calibration import batches, check_batches
from progprune_cli.config.schema import choice
from progprune_cli.pruning.strategies.channels import ChannelConfig, ChannelStrategy
from progprune_cli.pruning.strategies.granularity import by_granularity
from progprune_cli.config import StrategyConfig
from progprune_cli.pruning.masks import Masks


@dataclass
class TaylorConfig(ChannelConfig):
    granularity: str = choice("weight", "channel")
    batches: int = MISSING


def first_order_terms(model: nn.Module, params: list[str], ctx: PruneContext,
                      count: int) -> Iterator[dict[str, torch.Tensor]]:
    """Per calibration batch, w ⊙ ∂L/∂w of each named parameter: the loss change to first order if w were zeroed.

    Eval mode so scoring does not move batch-norm statistics; autograd.grad so no `.grad` an optimizer reads changes.
    """
    named = dict(model.named_parameters())
    tensors = [named[p] for p in params]
    training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            for x, y in batches(ctx, count):
                grads = torch.autograd.grad(ctx.loss_fn(model(x), y), tensors, allow_unused=True)
                yield {p: t.detach() * (0 if g is None else g) for p, t, g in zip(params, tensors, grads)}
    finally:
        model.train(training)


class TaylorWeights(Strategy):
    """Each weight scores Σ_batches |w · ∂L/∂w|."""


    def __init__(self, cfg: StrategyConfig) -> None:
        super().__init__(cfg)
        check_batches(self.cfg.batches, "taylor")

    def scores(self, model: nn.Module, masks: Masks, ctx: PruneContext) -> dict[str, torch.Tensor]:
        totals = {name: torch.zeros(mask.shape) for name, mask in masks.items()}
        for terms in first_order_terms(model, list(masks), ctx, self.cfg.batches):
            for name in masks:
                totals[name] += terms[name].abs().cpu()
        return totals


class TaylorChannels(ChannelStrategy):
    """Each output channel scores Σ_batches |Σ_{its filter and bias} w · ∂L/∂w| (Molchanov et al. 2019): the
    first-order loss change of removing the whole channel, not a sum of per-weight magnitudes."""


    def __init__(self, cfg: StrategyConfig) -> None:
        super().__init__(cfg)
        check_batches(self.cfg.batches, "taylor")

    def layer_scores(self, model: nn.Module, layers: list[str], ctx: PruneContext) -> dict[str, torch.Tensor]:
        modules = dict(model.named_modules())
        params = [f"{layer}.{kind}" for layer in layers for kind in ("weight", "bias")
                  if getattr(modules[layer], kind, None) is not None]
        totals = {layer: torch.zeros(cg.out_major(modules[layer], modules[layer].weight).shape[0], dtype=torch.float64)
                  for layer in layers}
        for terms in first_order_terms(model, params, ctx, self.cfg.batches):
            for layer in layers:
                change = (cg.out_major(modules[layer], terms[f"{layer}.weight"]).flatten(1).sum(1)
                          + terms.get(f"{layer}.bias", 0))
                totals[layer] += change.abs().double().cpu()
        return totals


STRATEGIES.register("taylor", TaylorConfig)(by_granularity(TaylorWeights, TaylorChannels))
