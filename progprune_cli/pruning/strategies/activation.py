"""`activation`: channels ranked by their outputs on calibration batches: mean |activation|, or 1 − APoZ."""

from __future__ import annotations

from dataclasses import dataclass
import torch
from omegaconf import MISSING
from torch import nn

from progprune_cli.pruning.layout import is_transposed
from progprune_cli.pruning.strategies.base import STRATEGIES, PruneContext
from progprune_cli.pruning.strategies.calibration import batches, check_batches
from progprune_cli.config.schema import choice
from progprune_cli.pruning.strategies.channels import ChannelConfig, ChannelStrategy
from progprune_cli.config import StrategyConfig


@dataclass
class ActivationConfig(ChannelConfig):
    criterion: str = choice("mean_abs", "apoz")
    batches: int = MISSING


@STRATEGIES.register("activation", ActivationConfig)
class Activation(ChannelStrategy):
    """mean_abs: mean |output| per channel over batch and positions. apoz (Hu et al. 2016): 1 − the fraction of
    zeros after a ReLU on the layer's output, so channels that are almost always off score lowest."""

    def __init__(self, cfg: StrategyConfig) -> None:
        super().__init__(cfg)
        check_batches(self.cfg.batches, "activation")

    def layer_scores(self, model: nn.Module, layers: list[str], ctx: PruneContext) -> dict[str, torch.Tensor]:
        totals: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        apoz = self.cfg.criterion == "apoz"

        def record(name: str, module: nn.Module, output: torch.Tensor) -> None:
            # A linear layer's features are its output's last dim (a transformer's tokens come before them); a
            # convolution's or batch-norm's channels are dim 1. transformers' Conv1D is a linear layer.
            channel = output.dim() - 1 if isinstance(module, nn.Linear) or is_transposed(module) else 1
            dims = [d for d in range(output.dim()) if d != channel]  # every dim but the channel one
            value = (torch.relu(output) > 0).float() if apoz else output.abs()
            totals[name] = totals.get(name, 0) + value.sum(dims).double().cpu()
            counts[name] = counts.get(name, 0) + output.numel() // output.shape[channel]

        hooks = [_observed(model, n).register_forward_hook(lambda m, i, o, n=n: record(n, m, o))
                 for n in dict.fromkeys(layers)]
        training = model.training
        model.eval()  # calibration must not move batch-norm statistics
        try:
            with torch.no_grad():
                for x, _ in batches(ctx, self.cfg.batches):
                    model(x)
        finally:
            model.train(training)
            for hook in hooks:
                hook.remove()
        # apoz: the mean of "non-zero" indicators is 1 − APoZ, already higher = keep.
        return {name: (totals[name] / counts[name]).float() for name in layers}


def _observed(model: nn.Module, name: str) -> nn.Module:
    """Where a layer's activation is read: its batch-norm when one directly follows it (conv → BN → ReLU), so
    APoZ counts zeros after the normalisation the ReLU really sees; otherwise the layer itself."""
    named = list(model.named_modules())
    index = next(i for i, (n, _) in enumerate(named) if n == name)
    layer = named[index][1]
    following = named[index + 1][1] if index + 1 < len(named) else None
    width = getattr(layer, "out_channels", getattr(layer, "out_features", None))
    if isinstance(following, nn.modules.batchnorm._BatchNorm) and following.num_features == width:
        return following
    return layer
