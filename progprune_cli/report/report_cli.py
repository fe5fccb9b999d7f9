"""`progprune report RUN_DIR [--md] [--verbose]`: show one run from its folder's files, never importing torch."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from progprune_cli import reading
from progprune_cli.errors import UserError
from progprune_cli.report.console import print_summary
from progprune_cli.report.markdown import render_markdown
from progprune_cli.report.runs import check_status, process_gone
from progprune_cli.report.terminal import reader_console
from progprune_cli.results.record import SchemaError, UnknownVersion
from progprune_cli.results.schema import SCHEMA_VERSION, Results

PROG = "progprune report"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Show one run's tables from its run folder.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (holds status.json and, when complete, "
                                                      "results.json)")
    p.add_argument("--md", action="store_true", help="print results.md-style markdown instead of tables")
    p.add_argument("--verbose", action="store_true", help="also show per-layer and per-step tables")
    return p


def read_json(path: Path, limit: int = reading.JSON_LIMIT, lines: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON object through progprune_cli.reading (no symlink, capped size and depth, control characters
    replaced); anything else is a one-line UserError naming the file."""
    try:
        data = reading.read_json(path, limit, lines=lines)
    except FileNotFoundError:
        raise UserError(f"{path}: cannot read (no such file)") from None
    except reading.Unreadable as err:
        raise UserError(str(err)) from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def read_status(path: Path) -> dict[str, Any]:
    status = read_json(path, reading.STATUS_LIMIT, lines=("error",))
    why = check_status(status)
    if why:
        raise UserError(f"{path}: {why}")
    return status


def status_line(shown: str, status: dict[str, Any]) -> str:
    """One line for a run that has no results yet: what state it is in, where, and why it stopped."""
    state, stage, error = status.get("status", "unknown"), status.get("stage"), status.get("error")
    if state == "running" and process_gone(status):
        state = "killed"
        error = f"pid {status['pid']} on {status['host']} is gone; resume with progprune resume {shown}"
    line = f"{shown}: {state}" + (f" in stage {stage}" if stage else "")
    line += f": {error}" if error else ""
    line += f" (updated {status['updated']})" if status.get("updated") else ""
    if state == "running":
        line += "; results.json is written when the run completes"
    elif state == "complete":
        line += "; but results.json is missing"
    return line


def plot_paths(run_dir: Path) -> list[str]:
    """PNGs already drawn under plots/, relative to the run folder so the links survive a copy."""
    found = sorted(reading.clean_text(p.relative_to(run_dir).as_posix()) for p in (run_dir / "plots").glob("*.png"))
    return sorted(found, key=lambda p: p != "plots/progress.png")  # the run's story first, as draw_plots orders


def show(shown: str, md: bool, verbose: bool) -> int:
    run_dir, shown = Path(shown), reading.clean_text(shown)  # a glob may have expanded to any folder name
    # lexists, not is_file: a symlink or a FIFO in the folder is read, and refused in one line, not taken as missing.
    if os.path.lexists(run_dir / "sensitivity.csv"):  # a `progprune sensitivity` folder: its table and budget
        from progprune_cli.sensitivity.show import print_sensitivity

        return print_sensitivity(run_dir, md=md)
    results_path, status_path = run_dir / "results.json", run_dir / "status.json"
    if not run_dir.is_dir() or not (os.path.lexists(results_path) or os.path.lexists(status_path)):
        raise UserError(f"RUN_DIR: {shown} is not a run folder (no status.json or results.json)")
    if not os.path.lexists(results_path):
        print(status_line(shown, read_status(status_path)))
        return 1
    try:
        results = Results.from_json(read_json(results_path))
    except UnknownVersion as err:
        raise UserError(f"{results_path}: {err}") from None
    except SchemaError as err:
        raise UserError(f"{results_path}: does not match schema_version {SCHEMA_VERSION} ({err})") from None
    # Every value has its schema type by now, so rendering (pure formatting) needs no guard of its own.
    if md:
        sys.stdout.write(render_markdown(results, plot_paths(run_dir)))
    else:
        print_summary(results, reader_console(), verbose=verbose)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit 0 shown, 1 no results yet (status line printed), 2 bad input (one line on stderr)."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit_:  # argparse has already printed usage or help
        return int(exit_.code or 0)
    try:
        return show(args.run_dir, args.md, args.verbose)
    except UserError as err:
        print(f"{PROG}: error: {reading.clean_text(str(err))}", file=sys.stderr)
        return 2
