"""`constant`: the final target at every step (keeps re-selecting at a fixed sparsity, e.g. while finetuning)."""

from __future__ import annotations

from progprune_cli.pruning.schedules.base import SCHEDULES, Event, Horizon
from progprune_cli.config import ScheduleConfig


@SCHEDULES.register("constant")
def constant(horizon: Horizon, initial: float, final: float, cfg: ScheduleConfig,
    what: str = "sparsity") -> list[Event]:
    return [Event(t, final) for t in horizon.times()]
