"""Schedule registry: `conf/schedule/<name>.yaml` ↔ `SCHEDULES.register("<name>")` in `<name>.py`."""

from progprune_cli.pruning.schedules.base import SCHEDULES, Event, Horizon, build_events

from progprune_cli.pruning.schedules import (  # noqa: F401,E402  (registers)
    constant,
    cubic,
    exponential,
    iterative,
    linear,
    oneshot,
)

__all__ = ["SCHEDULES", "Event", "Horizon", "build_events"]
