"""Optimizer registry (§4.1): `conf/optimizer/<name>.yaml` ↔ the torch class and the schema of its own keys."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import MISSING
from torch import nn

from progprune_cli.config import OptimizerConfig
from progprune_cli.errors import UserError
from progprune_cli.registry import Registry

OPTIMIZERS: Registry[type[torch.optim.Optimizer]] = Registry("optimizer", OptimizerConfig)
_COMMON = {f.name for f in dataclasses.fields(OptimizerConfig)}  # progprune's keys; the rest are the torch class's


@dataclass
class SGDConfig(OptimizerConfig):
    momentum: float = MISSING
    dampening: float = MISSING
    nesterov: bool = MISSING
    weight_decay: float = MISSING


@dataclass
class AdamConfig(OptimizerConfig):
    betas: list[float] = MISSING
    eps: float = MISSING
    weight_decay: float = MISSING
    amsgrad: bool = MISSING


@dataclass
class RMSpropConfig(OptimizerConfig):
    alpha: float = MISSING
    eps: float = MISSING
    momentum: float = MISSING
    weight_decay: float = MISSING
    centered: bool = MISSING


@dataclass
class AdagradConfig(OptimizerConfig):
    lr_decay: float = MISSING
    eps: float = MISSING
    weight_decay: float = MISSING


OPTIMIZERS.register("sgd", SGDConfig)(torch.optim.SGD)
# The same torch class with the CIFAR recipe's settings in its YAML, so `optimizer=sgd_nesterov` is one word.
OPTIMIZERS.register("sgd_nesterov", SGDConfig)(torch.optim.SGD)
OPTIMIZERS.register("adam", AdamConfig)(torch.optim.Adam)
OPTIMIZERS.register("rmsprop", RMSpropConfig)(torch.optim.RMSprop)
OPTIMIZERS.register("adagrad", AdagradConfig)(torch.optim.Adagrad)


def hyperparameters(cfg: OptimizerConfig) -> dict[str, Any]:
    """The torch optimizer's own keyword arguments: every key of the optimizer's schema but progprune's own."""
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in _COMMON}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}  # betas: torch wants a tuple


def build_optimizer(cfg: OptimizerConfig, model: nn.Module, lr: float | None = None) -> torch.optim.Optimizer:
    """A fresh optimizer over all the model's parameters, at `lr` (a stage's own) or optimizer.lr."""
    try:
        return OPTIMIZERS.get(cfg.name)(model.parameters(), lr=cfg.lr if lr is None else lr, **hyperparameters(cfg))
    except (TypeError, ValueError) as error:  # e.g. torch's own range checks (a negative momentum)
        raise UserError(f"optimizer={cfg.name}: {error}") from None


def check_optimizer(cfg: OptimizerConfig) -> None:
    """Fail before training on a value torch refuses, by building the optimizer over one parameter."""
    if isinstance(cfg, AdamConfig) and len(cfg.betas) != 2:
        raise UserError(f"optimizer.betas: got {cfg.betas}; needs 2 values, e.g. [0.9, 0.999]")
    build_optimizer(cfg, nn.Linear(1, 1))


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
