"""`cubic` (Zhu & Gupta 2017): s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³ — prune fast early, gently late."""

from __future__ import annotations

from typing import Any

from progprune_cli.pruning.schedules.base import SCHEDULES, Event, Horizon
from progprune_cli.config.schema import ScheduleConfig, common_keys
from progprune_cli.config.strict import NoOptions, from_dict


@SCHEDULES.register("cubic")
def cubic(horizon: Horizon, initial: float, final: float, options: dict[str, Any],
    what: str = "sparsity") -> list[Event]:
    from_dict(NoOptions, options, "schedule", common_keys(ScheduleConfig))
    return [Event(t, final + (initial - final) * (1.0 - horizon.fraction(t)) ** 3) for t in horizon.times()]
