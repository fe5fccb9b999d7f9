"""Everything built from the config before any training: data, model factory, strategy, events, device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from progprune_cli.build.data import DataSplits, build_data
from progprune_cli.build.losses import LOSSES, LossFn
from progprune_cli.build.models import build_model
from progprune_cli.build.optimizers import check_optimizer
from progprune_cli.build.schedules import Event, build_events
from progprune_cli.build.strategies import Strategy, build_strategy
from progprune_cli.config import RunConfig
from progprune_cli.errors import UserError


@dataclass
class Built:
    """The run's parts; `events` are in optimizer steps of the prune stage."""

    cfg: RunConfig
    data: DataSplits
    device: torch.device
    loss_fn: LossFn
    make_model: Callable[[], nn.Module]
    strategy: Strategy | None
    events: list[Event]

    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-len(self.data.train) // batch_size)  # type: ignore[arg-type]


def resolve_device(name: str) -> torch.device:
    """auto → cuda when available, else cpu; cuda without CUDA is a user error, not a crash later."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device: got cuda but CUDA is not available on this machine; use device=cpu or device=auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_all(cfg: RunConfig) -> Built:
    """Build and check every part; any bad value fails here, before a single training step."""
    device = resolve_device(cfg.device)
    check_optimizer(cfg.optimizer)
    loss_fn = LOSSES.get(cfg.train.loss)
    strategy = None if cfg.strategy is None else build_strategy(cfg.strategy)
    data = build_data(cfg.dataset, cfg.seed)

    def make_model() -> nn.Module:
        torch.manual_seed(cfg.seed)
        return build_model(cfg.model, data.info)

    model = make_model()
    events: list[Event] = []
    if strategy is not None and cfg.strategy is not None:
        strategy.check(model, data.info)
        spe = -(-len(data.train) // cfg.prune.batch_size)  # type: ignore[arg-type]
        per_unit = spe if cfg.schedule.unit == "epoch" else 1
        threshold = cfg.strategy.mode == "threshold"
        final = cfg.strategy.threshold if threshold else cfg.strategy.sparsity
        initial = 0.0 if threshold else cfg.schedule.initial_sparsity
        if not threshold and initial > final:  # type: ignore[operator]
            raise UserError(f"schedule.initial_sparsity: got {initial}; must be <= strategy.sparsity ({final})")
        units = cfg.prune.epochs if cfg.schedule.unit == "epoch" else cfg.prune.epochs * spe
        what = "threshold" if threshold else "sparsity"
        events = [Event(e.t * per_unit, e.target)
                  for e in build_events(cfg.schedule, units, initial, final, what)]  # type: ignore[arg-type]
        rewind = cfg.schedule.rewind
        if isinstance(rewind, int) and rewind > cfg.train.epochs:
            raise UserError(f"schedule.rewind: got {rewind}; train.epochs is {cfg.train.epochs}")
    return Built(cfg, data, device, loss_fn, make_model, strategy, events)
