"""The run's parts, built once from the config before any training: data, model factory, strategy, events, device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from progprune_cli.data import DataSplits, build_data, steps_per_epoch
from progprune_cli.optim.losses import LossFn, build_loss
from progprune_cli.models import build_model
from progprune_cli.pruning.schedules import Event, build_events
from progprune_cli.pruning.strategies import Strategy, build_strategy
from progprune_cli.config import RunConfig
from progprune_cli.config.checks import check_precision
from progprune_cli.device import resolve_device
from progprune_cli.distributed import World
from progprune_cli.errors import UserError


@dataclass
class Parts:
    """The run's parts; `events` are in optimizer steps of the prune stage."""

    cfg: RunConfig
    data: DataSplits
    device: torch.device
    loss_fn: LossFn
    make_model: Callable[[], nn.Module]
    strategy: Strategy | None
    events: list[Event]

    def steps_per_epoch(self, batch_size: int) -> int:
        return steps_per_epoch(self.data.train, batch_size)


def build_parts(cfg: RunConfig, world: World | None = None) -> Parts:
    """Build and check every part; any bad value fails here, before a single training step. Under torchrun the
    device is the rank's own (`world.device`)."""
    device = world.device if world is not None and world.device is not None else resolve_device(cfg.device)
    check_precision(cfg.train.precision, device.type)
    loss_fn = build_loss(cfg.train.loss, cfg.train.label_smoothing)
    strategy = None if cfg.strategy is None else build_strategy(cfg.strategy)
    data = build_data(cfg.dataset, cfg.seed)

    def make_model() -> nn.Module:
        torch.manual_seed(cfg.seed)
        return build_model(cfg.model, data.info)

    events: list[Event] = []
    if strategy is not None:
        strategy.check(make_model(), data.info)
        events = plan_events(cfg, steps_per_epoch(data.train, cfg.prune.batch_size))
    return Parts(cfg, data, device, loss_fn, make_model, strategy, events)


def plan_events(cfg: RunConfig, steps: int) -> list[Event]:
    """The prune stage's pruning steps, in optimizer steps (`steps` per epoch); fails on a bad schedule."""
    strategy, schedule = cfg.strategy, cfg.schedule
    assert strategy is not None
    threshold = strategy.mode == "threshold"
    initial, final = (0.0 if threshold else schedule.initial_sparsity), strategy.final_target
    if initial > final:
        raise UserError(f"schedule.initial_sparsity: got {initial}; must be <= strategy.sparsity ({final})")
    if isinstance(schedule.rewind, int) and schedule.rewind > cfg.train.epochs:
        raise UserError(f"schedule.rewind: got {schedule.rewind}; train.epochs is {cfg.train.epochs}")
    per_unit = steps if schedule.unit == "epoch" else 1
    units = cfg.prune.epochs * steps // per_unit
    what = "threshold" if threshold else "sparsity"
    return [Event(e.t * per_unit, e.target) for e in build_events(schedule, units, initial, final, what)]
