"""`cubic` (Zhu & Gupta 2017): s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³ — prune fast early, gently late."""

from __future__ import annotations

from progprune_cli.pruning.schedules.base import SCHEDULES, Event, Horizon
from progprune_cli.config import ScheduleConfig


@SCHEDULES.register("cubic")
def cubic(horizon: Horizon, initial: float, final: float, cfg: ScheduleConfig,
    what: str = "sparsity") -> list[Event]:
    return [Event(t, final + (initial - final) * (1.0 - horizon.fraction(t)) ** 3) for t in horizon.times()]
