"""What both Hydra apps do at the edge: the console a job prints on, and how a stop or bad input ends the job."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hydra.errors import CompactHydraException
from rich.console import Console

from progprune_cli.errors import UserError
from progprune_cli.signals import Interrupted


class JobFailed(CompactHydraException):
    """A sweep job stopped on bad input; Hydra prints a compact exception's message without a traceback."""


class _JobConsole(Console):
    """A console that goes quiet when its reader goes away (`progprune train | head -1`): the run carries on and
    run.log keeps every line, where rich's own console would exit(1) mid-stage and leave status.json `running`."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        # Later writes, and the interpreter's last flush of stdout, go nowhere instead of failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def job_console() -> Console:
    """The console a job prints on: the terminal's width, or 150 when piped (wide tables, not wrapped cells)."""
    # log_path=False: the logging call's file:line after every line is noise to a user.
    console = _JobConsole(highlight=False, log_path=False)
    if not console.is_terminal:
        console = _JobConsole(highlight=False, log_path=False, width=150)
    return console


@contextmanager
def hydra_argv(prog: str, args: list[str]) -> Iterator[None]:
    """The command line a Hydra app reads: hydra.main takes it from sys.argv, its only public way in, so it is set
    for the call alone and restored after (nothing else reads sys.argv)."""
    saved = sys.argv
    sys.argv = [prog, *args]
    try:
        yield
    finally:
        sys.argv = saved


@contextmanager
def exit_codes(*, multirun: bool, sweep_failed: Callable[[UserError], str],
               stopped: Callable[[Interrupted], str] = str, speak: bool = True) -> Iterator[None]:
    """A stop exits with its signal's code, bad input prints `progprune: error: ...` and exits 2 (or, in a sweep,
    raises JobFailed with `sweep_failed(error)`). Only when `speak` is a message printed."""
    try:
        yield
    except Interrupted as error:
        # The checkpoint is written and status.json says where; 130 for SIGINT, 143 for SIGTERM (as a shell does).
        if speak:
            print(f"progprune: {stopped(error)}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    except OSError as error:
        if error.errno not in _CANNOT_WRITE:
            raise
        # A read-only folder or a full disk is the user's to fix, not a traceback (status.json says it too, where
        # it could still be written).
        where = f" {error.filename}" if error.filename else ""
        _refuse(UserError(f"cannot write{where} ({error.strerror})"), multirun, sweep_failed, speak)
    except UserError as error:
        _refuse(error, multirun, sweep_failed, speak)


# What a write meets on a folder it may not write or a disk with no room.
_CANNOT_WRITE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def _refuse(error: UserError, multirun: bool, sweep_failed: Callable[[UserError], str], speak: bool) -> None:
    if speak:
        print(f"progprune: error: {error}", file=sys.stderr)
    if multirun:
        # The other jobs still run; Hydra then reports this short message (no traceback) and exits 1.
        raise JobFailed(sweep_failed(error)) from None
    raise SystemExit(2) from None
