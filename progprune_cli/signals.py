"""SIGINT/SIGTERM stop a run in whatever phase it is: inside a training loop at the next optimizer step, after a
checkpoint; anywhere else at once (nothing there is worth finishing). A second Ctrl-C stops at once."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(Exception):
    """A stop request carried out: raised by a training loop once it has saved its checkpoint, or by the signal
    handler itself in a phase with nothing to save (build, evaluate, report, a stage's set-up)."""

    def __init__(self, signum: int, where: str) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name} at {where}; resume with progprune resume")
        self.signum, self.where = signum, where

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(signal.Signals(self.signum), 128 + self.signum)


@dataclass
class StopRequest:
    """Set by the signal handlers. `phase` names where a run is (status.json's stage), for the message of a stop
    outside a training loop; inside one (`deferred()`) the loop polls `signum` after every optimizer step."""

    signum: int | None = None
    phase: str = "build"
    _deferred: int = 0
    _previous: dict[int, object] = field(default_factory=dict)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # the second Ctrl-C: stop now, without a checkpoint
            return  # a stop is already under way; a repeated SIGTERM must not cut its status write short
        self.signum = signum
        if not self._deferred:
            raise Interrupted(signum, f"the {self.phase} phase")

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """A block that checkpoints itself (a training loop): a signal in it only sets `signum`."""
        self._deferred += 1
        try:
            yield
        finally:
            self._deferred -= 1

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGINT and SIGTERM while the block runs; an inherited SIG_IGN is respected (a job started in the
        background of a script must not be stopped by the terminal's Ctrl-C)."""
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
