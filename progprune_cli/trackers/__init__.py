"""Experiment trackers (`logger=NAME`): `conf/logger/<name>.yaml` ↔ `TRACKERS.register("<name>", schema)` in a module
of this package; each imports its optional package only when chosen, so the core runs without them."""

from progprune_cli.registry import import_all
from progprune_cli.trackers.base import TRACKERS, MetricRow, RunFinished, RunStarted, Tracker
from progprune_cli.trackers.guard import Trackers, check_trackers

import_all(__name__, __path__)

__all__ = ["TRACKERS", "MetricRow", "RunFinished", "RunStarted", "Tracker", "Trackers", "check_trackers"]
