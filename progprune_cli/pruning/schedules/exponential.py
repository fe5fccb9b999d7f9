"""`exponential`: s_t = s_i + (s_f − s_i)(1 − e^(−λu))/(1 − e^(−λ)), u = (t − t0)/(end − t0); λ = `decay`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from omegaconf import MISSING

from progprune_cli.pruning.schedules.base import SCHEDULES, Event, Horizon
from progprune_cli.config import ScheduleConfig
from progprune_cli.errors import UserError


@dataclass
class ExponentialConfig(ScheduleConfig):
    decay: float = MISSING


@SCHEDULES.register("exponential", ExponentialConfig)
def exponential(horizon: Horizon, initial: float, final: float, cfg: ExponentialConfig,
    what: str = "sparsity") -> list[Event]:
    decay = cfg.decay
    if decay <= 0:
        raise UserError(f"schedule.decay: got {decay}; must be > 0")
    scale = 1.0 - math.exp(-decay)
    return [Event(t, initial + (final - initial) * (1.0 - math.exp(-decay * horizon.fraction(t))) / scale)
            for t in horizon.times()]
