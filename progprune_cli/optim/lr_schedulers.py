"""Learning-rate schedules per stage, built on torch.optim.lr_scheduler and stepped once per optimizer step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from omegaconf import MISSING
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    OneCycleLR,
    SequentialLR,
)

from progprune_cli.config import LRSchedulerConfig
from progprune_cli.errors import UserError
from progprune_cli.registry import Registry


@dataclass(frozen=True)
class LRHorizon:
    """How long the schedule runs, in optimizer steps: every schedule here steps once per optimizer step, so
    epoch-based settings (milestones, step size) are converted with `per_epoch`."""

    steps: int
    per_epoch: int


Builder = Callable[[torch.optim.Optimizer, Any, LRHorizon], LRScheduler]


@dataclass(frozen=True)
class LRSchedulerSpec:
    """A schedule's builder, and whether it warms up by itself (then warmup_epochs must stay 0)."""

    build: Builder
    warms_up_itself: bool = False


LR_SCHEDULERS: Registry[LRSchedulerSpec] = Registry("lr_scheduler", LRSchedulerConfig)


@dataclass
class StepConfig(LRSchedulerConfig):
    step_epochs: int = MISSING
    gamma: float = MISSING


@dataclass
class MultiStepConfig(LRSchedulerConfig):
    milestones: list[int] = MISSING
    gamma: float = MISSING


@dataclass
class CosineConfig(LRSchedulerConfig):
    min_lr: float = MISSING


@dataclass
class OneCycleConfig(LRSchedulerConfig):
    max_lr: Optional[float] = MISSING  # null: the stage's lr
    pct_start: float = MISSING
    div_factor: float = MISSING
    final_div_factor: float = MISSING


def _multistep(opt: torch.optim.Optimizer, o: MultiStepConfig, h: LRHorizon) -> LRScheduler:
    return MultiStepLR(opt, [m * h.per_epoch for m in o.milestones], gamma=o.gamma)


def _onecycle(opt: torch.optim.Optimizer, o: OneCycleConfig, h: LRHorizon) -> LRScheduler:
    max_lr = o.max_lr if o.max_lr is not None else opt.param_groups[0]["lr"]
    return OneCycleLR(opt, max_lr=max_lr, total_steps=max(h.steps, 1), pct_start=o.pct_start,
                      div_factor=o.div_factor, final_div_factor=o.final_div_factor)


LR_SCHEDULERS.register("constant")(LRSchedulerSpec(lambda opt, o, h: ConstantLR(opt, 1.0, 0)))
LR_SCHEDULERS.register("step", StepConfig)(LRSchedulerSpec(lambda opt, o, h: MultiStepLR(
    opt, list(range(o.step_epochs * h.per_epoch, max(h.steps, 1), max(o.step_epochs * h.per_epoch, 1))),
    gamma=o.gamma)))
LR_SCHEDULERS.register("multistep", MultiStepConfig)(LRSchedulerSpec(_multistep))
LR_SCHEDULERS.register("cosine", CosineConfig)(LRSchedulerSpec(lambda opt, o, h: CosineAnnealingLR(
    opt, T_max=max(h.steps, 1), eta_min=o.min_lr)))
LR_SCHEDULERS.register("onecycle", OneCycleConfig)(LRSchedulerSpec(_onecycle, warms_up_itself=True))


def check_lr_scheduler(cfg: LRSchedulerConfig, where: str) -> LRSchedulerSpec:
    """The schedule's spec; a value it cannot take fails in one line naming `where`."""
    try:
        spec = LR_SCHEDULERS.get(cfg.name)
    except UserError:
        raise UserError(f"{where}={cfg.name}: unknown lr_scheduler; choose one of "
                        f"{', '.join(LR_SCHEDULERS.names())}") from None
    if spec.warms_up_itself and cfg.warmup_epochs:
        raise UserError(f"{where}.warmup_epochs: {cfg.name} warms up by itself (pct_start); set it to 0")
    if isinstance(cfg, StepConfig) and cfg.step_epochs < 1:
        raise UserError(f"{where}.step_epochs: got {cfg.step_epochs}; must be >= 1")
    return spec


def build_lr_scheduler(cfg: LRSchedulerConfig, optimizer: torch.optim.Optimizer, horizon: LRHorizon,
                       where: str) -> LRScheduler:
    """The stage's schedule, with a linear warm-up of `warmup_epochs` in front when asked."""
    spec = check_lr_scheduler(cfg, where)
    warmup = min(cfg.warmup_epochs * horizon.per_epoch, horizon.steps)
    if warmup == 0:
        return spec.build(optimizer, cfg, horizon)
    ramp = LinearLR(optimizer, start_factor=cfg.warmup_factor, end_factor=1.0, total_iters=warmup)
    main = spec.build(optimizer, cfg, LRHorizon(horizon.steps - warmup, horizon.per_epoch))
    return SequentialLR(optimizer, [ramp, main], milestones=[warmup])
