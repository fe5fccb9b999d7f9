"""`linear`: the target rises in equal steps from the initial to the final value between start and end."""

from __future__ import annotations

from progprune_cli.pruning.schedules.base import SCHEDULES, Event, Horizon
from progprune_cli.config import ScheduleConfig


@SCHEDULES.register("linear")
def linear(horizon: Horizon, initial: float, final: float, cfg: ScheduleConfig,
    what: str = "sparsity") -> list[Event]:
    return [Event(t, initial + (final - initial) * horizon.fraction(t)) for t in horizon.times()]
