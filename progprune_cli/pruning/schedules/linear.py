"""`linear`: the target rises in equal steps from the initial to the final value between start and end."""

from __future__ import annotations

from typing import Any

from progprune_cli.pruning.schedules.base import SCHEDULES, Event, Horizon
from progprune_cli.config.schema import ScheduleConfig, common_keys
from progprune_cli.config.strict import NoOptions, from_dict


@SCHEDULES.register("linear")
def linear(horizon: Horizon, initial: float, final: float, options: dict[str, Any],
    what: str = "sparsity") -> list[Event]:
    from_dict(NoOptions, options, "schedule", common_keys(ScheduleConfig))
    return [Event(t, initial + (final - initial) * horizon.fraction(t)) for t in horizon.times()]
