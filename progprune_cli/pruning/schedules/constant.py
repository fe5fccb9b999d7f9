"""`constant`: the final target at every step (keeps re-selecting at a fixed sparsity, e.g. while finetuning)."""

from __future__ import annotations

from typing import Any

from progprune_cli.pruning.schedules.base import SCHEDULES, Event, Horizon
from progprune_cli.config.schema import ScheduleConfig, common_keys
from progprune_cli.config.strict import NoOptions, from_dict


@SCHEDULES.register("constant")
def constant(horizon: Horizon, initial: float, final: float, options: dict[str, Any],
    what: str = "sparsity") -> list[Event]:
    from_dict(NoOptions, options, "schedule", common_keys(ScheduleConfig))
    return [Event(t, final) for t in horizon.times()]
