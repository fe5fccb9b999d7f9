"""`exponential`: s_t = s_i + (s_f − s_i)(1 − e^(−λu))/(1 − e^(−λ)), u = (t − t0)/(end − t0); λ = `decay`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from progprune_cli.pruning.schedules.base import SCHEDULES, Event, Horizon
from progprune_cli.config.schema import ScheduleConfig, common_keys
from progprune_cli.config.strict import from_dict
from progprune_cli.errors import UserError


@dataclass(frozen=True)
class Options:
    decay: float = 3.0


@SCHEDULES.register("exponential")
def exponential(horizon: Horizon, initial: float, final: float, options: dict[str, Any],
    what: str = "sparsity") -> list[Event]:
    decay = from_dict(Options, options, "schedule", common_keys(ScheduleConfig)).decay
    if decay <= 0:
        raise UserError(f"schedule.decay: got {decay}; must be > 0")
    scale = 1.0 - math.exp(-decay)
    return [Event(t, initial + (final - initial) * (1.0 - math.exp(-decay * horizon.fraction(t))) / scale)
            for t in horizon.times()]
