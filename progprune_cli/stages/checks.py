"""Checks of each component's own options that need no data, run by the CLI before any folder is made."""

from __future__ import annotations

from progprune_cli.optim.losses import build_loss
from progprune_cli.optim.lr_schedulers import check_lr_scheduler
from progprune_cli.optim.optimizers import check_optimizer
from progprune_cli.pruning.strategies import build_strategy
from progprune_cli.config import RunConfig
from progprune_cli.device import resolve_device
from progprune_cli.parts import plan_events
from progprune_cli.stages import register_all
from progprune_cli.stages.base import STAGES
from progprune_cli.trackers import check_trackers


def check_components(cfg: RunConfig, here: bool = True) -> None:
    """Raise the UserError a user would otherwise meet only after the data loaded; `here`: the jobs run on this
    machine (a sweep may run on cluster nodes whose devices this machine cannot see)."""
    if here:
        resolve_device(cfg.device)
    check_optimizer(cfg.optimizer)
    for stage in ("train", "prune", "finetune"):
        check_lr_scheduler(getattr(cfg, stage).lr_scheduler, f"{stage}.lr_scheduler")
    build_loss(cfg.train.loss, cfg.train.label_smoothing)
    if "onnxruntime" in cfg.evaluate.backends:
        from progprune_cli.measure.onnxruntime_backend import require  # imports onnx only when asked for

        require()
    register_all()
    for name in STAGES.names():
        STAGES.get(name).refuse(cfg)
    check_trackers(cfg.logger)  # imports each chosen tracker's package: one missing is one line now
    if cfg.strategy is None:
        return
    build_strategy(cfg.strategy)
    # With strategy.target the sparsity is found once the model is built: preflight checks the schedule then.
    if cfg.schedule.unit == "epoch" and cfg.strategy.target.key is None:
        plan_events(cfg, steps=1)  # epoch-unit events scale with the step count, so one step per epoch checks them
