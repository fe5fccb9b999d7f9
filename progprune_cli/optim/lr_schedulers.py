"""Learning-rate schedules per stage, built on torch.optim.lr_scheduler and stepped once per optimizer step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
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
from progprune_cli.config.strict import NoOptions, from_dict
from progprune_cli.errors import UserError
from progprune_cli.registry import Registry


@dataclass(frozen=True)
class Horizon:
    """How long the schedule runs, in optimizer steps: every schedule here steps once per optimizer step, so
    epoch-based settings (milestones, step size) are converted with `per_epoch`."""

    steps: int
    per_epoch: int


Builder = Callable[[torch.optim.Optimizer, object, Horizon], LRScheduler]


@dataclass(frozen=True)
class LRSchedulerSpec:
    """The schedule's own options (a strict dataclass) and its builder."""

    options: type
    build: Builder
    warms_up_itself: bool = False


LR_SCHEDULERS: Registry[LRSchedulerSpec] = Registry("lr_scheduler")


@dataclass(frozen=True)
class _Step:
    step_epochs: int = 30
    gamma: float = 0.1


@dataclass(frozen=True)
class _MultiStep:
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1


@dataclass(frozen=True)
class _Cosine:
    min_lr: float = 0.0


@dataclass(frozen=True)
class _OneCycle:
    max_lr: Optional[float] = None  # null: the stage's lr
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4


def _multistep(opt: torch.optim.Optimizer, o: _MultiStep, h: Horizon) -> LRScheduler:
    return MultiStepLR(opt, [m * h.per_epoch for m in o.milestones], gamma=o.gamma)


def _onecycle(opt: torch.optim.Optimizer, o: _OneCycle, h: Horizon) -> LRScheduler:
    max_lr = o.max_lr if o.max_lr is not None else opt.param_groups[0]["lr"]
    return OneCycleLR(opt, max_lr=max_lr, total_steps=max(h.steps, 1), pct_start=o.pct_start,
                      div_factor=o.div_factor, final_div_factor=o.final_div_factor)


LR_SCHEDULERS.register("constant")(LRSchedulerSpec(NoOptions, lambda opt, o, h: ConstantLR(opt, 1.0, 0)))
LR_SCHEDULERS.register("step")(LRSchedulerSpec(_Step, lambda opt, o, h: MultiStepLR(
    opt, list(range(o.step_epochs * h.per_epoch, max(h.steps, 1), max(o.step_epochs * h.per_epoch, 1))),
    gamma=o.gamma)))
LR_SCHEDULERS.register("multistep")(LRSchedulerSpec(_MultiStep, _multistep))
LR_SCHEDULERS.register("cosine")(LRSchedulerSpec(_Cosine, lambda opt, o, h: CosineAnnealingLR(
    opt, T_max=max(h.steps, 1), eta_min=o.min_lr)))
LR_SCHEDULERS.register("onecycle")(LRSchedulerSpec(_OneCycle, _onecycle, warms_up_itself=True))


def check_lr_scheduler(cfg: LRSchedulerConfig, where: str) -> tuple[LRSchedulerSpec, object]:
    """The spec and checked options; a bad name or key fails in one line naming `where`."""
    try:
        spec = LR_SCHEDULERS.get(cfg.name)
    except UserError:
        raise UserError(f"{where}={cfg.name}: unknown lr_scheduler; choose one of "
                        f"{', '.join(LR_SCHEDULERS.names())}") from None
    options = from_dict(spec.options, cfg.options, where, ("name", "warmup_epochs", "warmup_factor"))
    if spec.warms_up_itself and cfg.warmup_epochs:
        raise UserError(f"{where}.warmup_epochs: {cfg.name} warms up by itself (pct_start); set it to 0")
    if isinstance(options, _Step) and options.step_epochs < 1:
        raise UserError(f"{where}.step_epochs: got {options.step_epochs}; must be >= 1")
    return spec, options


def build_lr_scheduler(cfg: LRSchedulerConfig, optimizer: torch.optim.Optimizer, horizon: Horizon,
                       where: str) -> LRScheduler:
    """The stage's schedule, with a linear warm-up of `warmup_epochs` in front when asked."""
    spec, options = check_lr_scheduler(cfg, where)
    warmup = min(cfg.warmup_epochs * horizon.per_epoch, horizon.steps)
    if warmup == 0:
        return spec.build(optimizer, options, horizon)
    ramp = LinearLR(optimizer, start_factor=cfg.warmup_factor, end_factor=1.0, total_iters=warmup)
    main = spec.build(optimizer, options, Horizon(horizon.steps - warmup, horizon.per_epoch))
    return SequentialLR(optimizer, [ramp, main], milestones=[warmup])
