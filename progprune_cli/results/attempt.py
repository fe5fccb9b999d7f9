"""One attempt at a run folder (a training run or a sensitivity analysis): its lock held, status.json saying each
phase and how the attempt ended, and a signal stopping it in whatever phase it is."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from progprune_cli.results.status import RunLock, Status, check_folder, save_config
from progprune_cli.signals import StopRequest

FolderCheck = Callable[[Path, dict[str, Any]], None]


class Attempt:
    """`claim()` the folder (judged, then locked), then run its phases inside `running()`, and `finishing()` for
    the writes that make it complete; `resume` is the command that continues the folder, for status.json."""

    def __init__(self, run_dir: Path, config: dict[str, Any], resume: str, check: FolderCheck = check_folder) -> None:
        self.run_dir, self.config, self.resume, self.check = run_dir, config, resume, check
        self.stop = StopRequest()
        self.status: Status | None = None
        self._lock = RunLock(run_dir)

    def claim(self) -> None:
        """Refuse a folder this attempt may not use (a UserError, in one line), else hold its lock."""
        self.check(self.run_dir, self.config)
        self._lock.acquire()

    def release(self) -> None:
        self._lock.release()

    @contextlib.contextmanager
    def running(self, agreed_stops: bool = False) -> Iterator[Attempt]:
        """status.json records however the block ends; SIGINT/SIGTERM are handled from the first phase to the last
        (`agreed_stops`: only where a training loop defers them, as torchrun's ranks must agree on a stop)."""
        self.status = Status(self.run_dir, self.config)
        agreed = self.stop.deferred() if agreed_stops else contextlib.nullcontext()
        with self.status.recorded(self.run_dir, self.resume), self.stop.installed(), agreed:
            save_config(self.run_dir, self.config)
            yield self

    def phase(self, name: str) -> None:
        """Enter a phase: status.json says it, and a signal from now on stops the attempt naming it."""
        assert self.status is not None, "phase() runs inside running()"
        self.status.set("running", name)
        self.stop.phase = name

    @contextlib.contextmanager
    def finishing(self) -> Iterator[None]:
        """The last writes (results.json, ...), then status complete: the attempt is finished from here, so a late
        signal must not mark it interrupted."""
        assert self.status is not None, "finishing() runs inside running()"
        with self.stop.deferred():
            yield
            self.status.set("complete")
