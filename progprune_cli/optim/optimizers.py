"""Optimizer registry (§4.1): `conf/optimizer/<name>.yaml` ↔ an entry here naming the torch class and its keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from progprune_cli.config import OptimizerConfig
from progprune_cli.errors import UserError
from progprune_cli.registry import Registry


@dataclass(frozen=True)
class OptimizerSpec:
    """A torch optimizer class and the hyperparameter keys (besides lr) a YAML may set for it."""

    cls: type[torch.optim.Optimizer]
    keys: tuple[str, ...]


OPTIMIZERS: Registry[OptimizerSpec] = Registry("optimizer")
OPTIMIZERS.register("sgd")(OptimizerSpec(torch.optim.SGD, ("momentum", "nesterov", "weight_decay", "dampening")))
# The same torch class with the CIFAR recipe's settings in its YAML, so `optimizer=sgd_nesterov` is one word.
OPTIMIZERS.register("sgd_nesterov")(OPTIMIZERS.get("sgd"))
OPTIMIZERS.register("adam")(OptimizerSpec(torch.optim.Adam, ("betas", "eps", "weight_decay", "amsgrad")))
OPTIMIZERS.register("rmsprop")(OptimizerSpec(torch.optim.RMSprop, ("alpha", "eps", "momentum", "weight_decay",
                                                                   "centered")))
OPTIMIZERS.register("adagrad")(OptimizerSpec(torch.optim.Adagrad, ("lr_decay", "eps", "weight_decay")))


def check_optimizer(cfg: OptimizerConfig) -> OptimizerSpec:
    """Fail before training on a key the chosen optimizer does not take."""
    spec = OPTIMIZERS.get(cfg.name)
    for key in cfg.options:
        if key not in spec.keys:
            raise UserError(f"optimizer.{key}: not a setting of optimizer={cfg.name}; allowed keys are "
                            f"clip_grad_norm, l1, l2, lr, {', '.join(spec.keys)}")
    return spec


def build_optimizer(cfg: OptimizerConfig, model: nn.Module) -> torch.optim.Optimizer:
    """A fresh optimizer over all the model's parameters."""
    spec = check_optimizer(cfg)
    options: dict[str, Any] = dict(cfg.options)
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    try:
        return spec.cls(model.parameters(), lr=cfg.lr, **options)
    except (TypeError, ValueError) as error:
        raise UserError(f"optimizer={cfg.name}: {error}") from None


def regularization(model: nn.Module, cfg: OptimizerConfig) -> torch.Tensor | None:
    """The L1/L2 weight penalty of §4.2 over weight tensors (dim > 1), or None when both are zero."""
    if cfg.l1 == 0.0 and cfg.l2 == 0.0:
        return None
    weights = [p for name, p in model.named_parameters() if p.dim() > 1]
    penalty = torch.zeros((), device=weights[0].device)
    if cfg.l1:
        penalty = penalty + cfg.l1 * sum(w.abs().sum() for w in weights)
    if cfg.l2:
        penalty = penalty + cfg.l2 * sum(w.pow(2).sum() for w in weights)
    return penalty
