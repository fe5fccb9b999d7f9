"""`iterative` (Han et al. 2015; lottery tickets): each round prunes `rate` of the *remaining* weights."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

from progprune_cli.pruning.schedules.base import SCHEDULES, Event, Horizon
from progprune_cli.config import ScheduleConfig
from progprune_cli.errors import UserError


@dataclass
class IterativeConfig(ScheduleConfig):
    rate: float = MISSING
    rounds: Optional[int] = MISSING  # null: as many rounds as reach the final sparsity at `rate` per round


@SCHEDULES.register("iterative", IterativeConfig)
def iterative(horizon: Horizon, initial: float, final: float, opts: IterativeConfig,
    what: str = "sparsity") -> list[Event]:
    if what != "sparsity":
        raise UserError("schedule=iterative: prunes a fraction of the remaining weights, so it needs "
                        "strategy.sparsity; unset strategy.threshold (strategy.threshold=null)")
    if not 0.0 < opts.rate < 1.0:
        raise UserError(f"schedule.rate: got {opts.rate}; must be in (0, 1)")
    if opts.rounds is not None and opts.rounds < 1:
        raise UserError(f"schedule.rounds: got {opts.rounds}; must be >= 1 (or null)")
    remaining = (1.0 - final) / (1.0 - initial)
    if opts.rounds is None:
        rounds = max(1, math.ceil(math.log(remaining) / math.log(1.0 - opts.rate) - 1e-9)) if final > initial else 1
        rate = opts.rate
    else:
        # A fixed round count wins: the per-round rate is what reaches the final sparsity in that many rounds.
        rounds, rate = opts.rounds, 1.0 - remaining ** (1.0 / opts.rounds)
    times = horizon.times()
    if rounds > len(times):
        key = "schedule.rounds" if opts.rounds is not None else f"schedule.rate: {rate} per round"
        raise UserError(f"{key}: {rounds} rounds need {rounds} pruning steps but the prune stage offers "
                        f"{len(times)}; raise prune.epochs, lower schedule.frequency or use schedule.unit=step")
    targets = [min(final, 1.0 - (1.0 - initial) * (1.0 - rate) ** r) for r in range(1, rounds)] + [final]
    return [Event(t, target) for t, target in zip(times, targets)]
