"""SIGINT/SIGTERM as a request to stop at the next optimizer step, after a checkpoint; a second Ctrl-C is at once."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(Exception):
    """Raised by a stage once it has saved its checkpoint after a stop request."""

    def __init__(self, signum: int, where: str) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name} at {where}; resume with progprune resume")
        self.signum, self.where = signum, where

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(signal.Signals(self.signum), 128 + self.signum)


@dataclass
class StopRequest:
    """Set by the signal handlers; the training loop polls it after every optimizer step."""

    signum: int | None = None
    _previous: dict[int, object] = field(default_factory=dict)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now, without a checkpoint
        self.signum = signum

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGINT and SIGTERM while the run's stages execute; an inherited SIG_IGN is respected (a job
        started in the background of a script must not be stopped by the terminal's Ctrl-C)."""
        for signum in EXIT_CODES:
            current = signal.getsignal(signum)
            if current is signal.SIG_IGN:
                continue
            self._previous[signum] = current
            signal.signal(signum, self._handle)
        try:
            yield self
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]
            self._previous.clear()
