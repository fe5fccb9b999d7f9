"""`oneshot`: a single pruning step to the final target at `start` (the classic prune-then-finetune)."""

from __future__ import annotations

from typing import Any

from progprune_cli.pruning.schedules.base import SCHEDULES, Event, Horizon
from progprune_cli.config.schema import ScheduleConfig, common_keys
from progprune_cli.config.strict import NoOptions, from_dict


@SCHEDULES.register("oneshot")
def oneshot(horizon: Horizon, initial: float, final: float, options: dict[str, Any],
    what: str = "sparsity") -> list[Event]:
    from_dict(NoOptions, options, "schedule", common_keys(ScheduleConfig))
    return [Event(horizon.start, final)]
