"""Schedules are pure functions: (horizon, initial, final, options) → the pruning events of the prune stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from progprune_cli.config import ScheduleConfig
from progprune_cli.errors import UserError
from progprune_cli.registry import Registry


@dataclass(frozen=True)
class Horizon:
    """Pruning may happen at t = start, start + frequency, ..., ≤ end (epochs or steps of the prune stage)."""

    start: int
    end: int
    frequency: int

    def times(self) -> list[int]:
        """Every `frequency` units from start, plus `end` itself so the final target is always reached."""
        times = list(range(self.start, self.end + 1, self.frequency))
        return times if times[-1] == self.end else [*times, self.end]

    def fraction(self, t: int) -> float:
        """How far t is from start to end, in [0, 1] (1 when start == end)."""
        return 1.0 if self.end == self.start else (t - self.start) / (self.end - self.start)


@dataclass(frozen=True)
class Event:
    """Prune to `target` (sparsity, or threshold in threshold mode) before training unit `t`."""

    t: int
    target: float


class ScheduleFn(Protocol):
    def __call__(self, horizon: Horizon, initial: float, final: float, cfg: Any,
                 what: str = "sparsity") -> list[Event]: ...


SCHEDULES: Registry[ScheduleFn] = Registry("schedule", ScheduleConfig)


def build_events(cfg: ScheduleConfig, units: int, initial: float, final: float,
                 what: str = "sparsity") -> list[Event]:
    """The events for a prune stage of `units` epochs (or steps); `what` says whether targets are sparsities
    or thresholds. Fails before training on a bad horizon."""
    if units < 1:
        return _at_once(cfg, initial, final, what)
    end = units - 1 if cfg.end is None else cfg.end
    if cfg.start > units - 1:
        raise UserError(f"schedule.start: got {cfg.start}; the prune stage has {cfg.unit}s 0..{units - 1}")
    if end > units - 1:
        raise UserError(f"schedule.end: got {end}; the prune stage has {cfg.unit}s 0..{units - 1}")
    if end < cfg.start:
        raise UserError(f"schedule.end: got {end}; must be >= schedule.start ({cfg.start})")
    horizon = Horizon(cfg.start, end, cfg.frequency)
    return SCHEDULES.get(cfg.name)(horizon, initial, final, cfg, what)


def _at_once(cfg: ScheduleConfig, initial: float, final: float, what: str) -> list[Event]:
    """prune.epochs=0 (one-shot pruning, no training while pruning): the schedule's single step, before anything
    trains; a schedule that makes more than one step needs prune epochs to spread them over."""
    if cfg.start != 0 or cfg.end not in (None, 0):
        key, value = ("schedule.start", cfg.start) if cfg.start != 0 else ("schedule.end", cfg.end)
        raise UserError(f"{key}: got {value}; prune.epochs=0 prunes once, at 0, before any training")
    events = SCHEDULES.get(cfg.name)(Horizon(0, 0, cfg.frequency), initial, final, cfg, what)
    if len(events) != 1 or events[0].target != final:
        raise UserError(f"prune.epochs: got 0; schedule={cfg.name} makes {len(events)} pruning steps, and with no "
                        f"prune epochs only one step to the final target can be taken (schedule=oneshot)")
    return events
