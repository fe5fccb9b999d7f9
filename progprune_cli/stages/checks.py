"""Checks of each component's own options that need no data, run by the CLI before any folder is made."""

from __future__ import annotations

from progprune_cli.build.optimizers import check_optimizer
from progprune_cli.build.schedules import build_events
from progprune_cli.build.strategies import build_strategy
from progprune_cli.config import RunConfig
from progprune_cli.stages.built import resolve_device


def check_components(cfg: RunConfig) -> None:
    """Raise the UserError a user would otherwise meet only after the data loaded."""
    resolve_device(cfg.device)
    check_optimizer(cfg.optimizer)
    if cfg.strategy is None:
        return
    build_strategy(cfg.strategy)
    if cfg.schedule.unit == "epoch":
        threshold = cfg.strategy.mode == "threshold"
        final = cfg.strategy.threshold if threshold else cfg.strategy.sparsity
        build_events(cfg.schedule, cfg.prune.epochs, 0.0 if threshold else cfg.schedule.initial_sparsity,
                     final, "threshold" if threshold else "sparsity")  # type: ignore[arg-type]
