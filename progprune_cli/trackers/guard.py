"""The trackers of one run behind one guard: a tracker that raises is reported in one line and switched off, so a
tracker never fails, stops or changes the run it watches."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from progprune_cli.config.schema import TrackerConfig
from progprune_cli.errors import described
from progprune_cli.trackers.base import TRACKERS, MetricRow, RunFinished, RunStarted, Tracker


def check_trackers(logger: Mapping[str, TrackerConfig]) -> None:
    """Every chosen tracker's package importable, or its one-line error (the pre-run check calls this)."""
    for key, cfg in logger.items():
        TRACKERS.get(cfg.name).require(f"logger={key}")


class Trackers:
    """The run's trackers, fed from the runner and StageIO's rows; `say` writes one line to the console and run.log."""

    def __init__(self, logger: Mapping[str, TrackerConfig], say: Callable[[str], None]) -> None:
        self._say = say
        self._on: dict[str, Tracker] = {key: TRACKERS.get(cfg.name)(cfg) for key, cfg in logger.items()}
        self._sent: set[tuple[str, str, str, str]] = set()

    def start(self, run: RunStarted) -> None:
        self._each("start", run)

    def rows(self, table: list[dict[str, str]]) -> None:
        """metrics.csv as just written (its cells as text): the rows not sent before go to every tracker. A resumed
        run sends the rows of its earlier attempts again (the trackers record them at the same steps)."""
        fresh = [row for row in table if _key(row) not in self._sent]
        if not fresh or not self._on:
            return
        self._sent.update(_key(row) for row in fresh)
        self._each("rows", [_record(row) for row in fresh])

    def finish(self, run: RunFinished) -> None:
        self._each("finish", run)

    def close(self, status: str) -> None:
        self._each("close", status)
        self._on.clear()

    def _each(self, event: str, record: Any) -> None:
        for key, tracker in list(self._on.items()):
            try:
                getattr(tracker, event)(record)
            except Exception as error:  # whatever the tracker's library raises: a locked store, a full disk
                del self._on[key]
                self._say(f"logger={key}: {event} failed ({described(error)}); this tracker "
                          "is off for the rest of the run, which goes on")
                if event != "close":
                    _quietly_closed(tracker)


def _quietly_closed(tracker: Tracker) -> None:
    """Release what a failed tracker holds (files, a store connection); a second error there says nothing new."""
    try:
        tracker.close("failed")
    except Exception:  # noqa: BLE001  (already reported once; the run goes on)
        pass


def _key(row: Mapping[str, str]) -> tuple[str, str, str, str]:
    return row["stage"], row["event"], row["epoch"], row["iteration"]


_IDS = ("stage", "event", "epoch", "iteration")


def _record(row: Mapping[str, str]) -> MetricRow:
    values = {k: float(v) for k, v in row.items() if k not in _IDS and v not in ("", None)}
    return MetricRow(row["stage"], row["event"], int(row["epoch"]), int(row["iteration"]), values)
