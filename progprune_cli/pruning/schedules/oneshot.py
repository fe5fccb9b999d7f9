"""`oneshot`: a single pruning step to the final target at `start` (the classic prune-then-finetune)."""

from __future__ import annotations

from progprune_cli.pruning.schedules.base import SCHEDULES, Event, Horizon
from progprune_cli.config import ScheduleConfig


@SCHEDULES.register("oneshot")
def oneshot(horizon: Horizon, initial: float, final: float, cfg: ScheduleConfig,
    what: str = "sparsity") -> list[Event]:
    return [Event(horizon.start, final)]
