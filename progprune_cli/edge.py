"""What both Hydra apps do at the edge: the console a job prints on, and how a stop or bad input ends the job."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hydra.errors import CompactHydraException
from rich.console import Console

from progprune_cli.errors import UserError
from progprune_cli.stages.signals import Interrupted


class JobFailed(CompactHydraException):
    """A sweep job stopped on bad input; Hydra prints a compact exception's message without a traceback."""


def job_console() -> Console:
    """The console a job prints on: the terminal's width, or 150 when piped (wide tables, not wrapped cells)."""
    # log_path=False: the logging call's file:line after every line is noise to a user.
    console = Console(highlight=False, log_path=False)
    if not console.is_terminal:
        console = Console(highlight=False, log_path=False, width=150)
    return console


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
    except UserError as error:
        if speak:
            print(f"progprune: error: {error}", file=sys.stderr)
        if multirun:
            # The other jobs still run; Hydra then reports this short message (no traceback) and exits 1.
            raise JobFailed(sweep_failed(error)) from None
        raise SystemExit(2) from None
