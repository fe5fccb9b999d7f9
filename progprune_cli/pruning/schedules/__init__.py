"""Schedule registry: `conf/schedule/<name>.yaml` ↔ `SCHEDULES.register("<name>", schema)` in a module of this
package (every module here is imported, so adding a schedule adds no line elsewhere)."""

from progprune_cli.pruning.schedules.base import SCHEDULES, Event, Horizon, build_events
from progprune_cli.registry import import_all

import_all(__name__, __path__)

__all__ = ["SCHEDULES", "Event", "Horizon", "build_events"]
