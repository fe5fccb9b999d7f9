"""`progprune` entry point: dispatches subcommands without importing torch (so `--help` is instant)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from progprune_cli import __version__

HELP = f"""usage: progprune COMMAND [ARGS]

progprune {__version__}: progressive neural-network pruning experiments (train → prune → finetune → evaluate).

commands:
  train [OVERRIDES]     run one experiment (Hydra overrides; -m for a sweep)
                          progprune train                          dense baseline
                          progprune train +strategy=weight         prune by weight magnitude
                          progprune train +strategy=weight strategy.threshold=0.2 optimizer=sgd
                          progprune train -m +strategy=weight strategy.sparsity=0.5,0.8,0.9
                        progprune train --help lists every config group and key
  sensitivity [OVERRIDES]
                        prune each layer (or channel group) alone to sensitivity.levels, measure val accuracy, and
                        derive per-layer sparsities for sensitivity.target: +strategy.layers_from=RUN/layers.yaml
                          progprune sensitivity +strategy=weight sensitivity.target=0.8
  resume RUN_DIR        continue an interrupted run (or every unfinished or unstarted job of a sweep folder) from
                        its last checkpoint, with the folder's own config; only overrides of progprune's own
                        config are taken from a folder (no hydra.*, no flags); --trust-targets also takes ones
                        that set a _target_ (code to import), printing each
  compare RUN [RUN...]  one row per run folder (or sweep folder, or glob); --help for options
  report RUN_DIR        print a run's tables from its files
  export RUN_DIR        write a run's model as ONNX, or a Hugging Face folder (--format hf); --help for options

Each run writes a folder under runs/ with results.md, results.json, metrics.csv, plots and checkpoints.
"""


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(HELP, end="")
        sys.exit(0 if args else 2)
    if args[0] in ("-V", "--version"):
        print(f"progprune {__version__}")
        sys.exit(0)
    commands: dict[str, Callable[[list[str]], int]] = {"train": _train, "sensitivity": _sensitivity,
                                                        "resume": _resume, "compare": _compare, "report": _report,
                                                        "export": _export}
    if args[0] not in commands:
        print(f"progprune: error: unknown command {args[0]!r}; choose one of {', '.join(commands)}",
              file=sys.stderr)
        sys.exit(2)
    try:
        sys.exit(commands[args[0]](args[1:]))
    except KeyboardInterrupt:
        # The run folder's status.json already says "interrupted"; finished stages resume from their checkpoints.
        print("progprune: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        # `progprune ... | head` closed the pipe: not an error worth a traceback.
        sys.stderr.close()
        sys.exit(0)


# Hydra's own modes, and options that point Hydra at other configs, go straight to Hydra.
_PASSTHROUGH = {"--help", "-h", "--hydra-help", "--info", "--cfg", "-c", "--shell-completion", "--version",
                "-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir", "--resolve", "--package", "-p"}


def _preflight(args: list[str], check: Callable[[list[str], bool], list[Any]]) -> list[Any] | None:
    """`check(overrides, multirun)` before Hydra makes a folder: what it returns, or None once bad input is said in
    one line (an empty list for Hydra's own modes, which are not checked)."""
    from progprune_cli.errors import UserError

    if any(a.split("=", 1)[0] in _PASSTHROUGH for a in args):
        return []
    multirun = "-m" in args or "--multirun" in args
    try:
        return check([a for a in args if not a.startswith("-")], multirun)
    except UserError as error:
        print(f"progprune: error: {error}", file=sys.stderr)
        return None


@contextmanager
def _holding(args: list[str], jobs: list[Any], folder_check: Callable[[Path, dict[str, Any]], None]) -> Iterator[bool]:
    """A given hydra.run.dir locked (and judged again under the lock) before Hydra writes anything into it, for as
    long as the command runs: two runs started into one folder at once cannot both pass the check and then rewrite
    each other's .hydra/. Yields False once a refusal is said in one line."""
    from progprune_cli.errors import UserError
    from progprune_cli.preflight import run_dir_of
    from progprune_cli.results.status import RunLock

    run_dir = None if not jobs or "-m" in args or "--multirun" in args or _follower_rank() else run_dir_of(args)
    if run_dir is None:
        yield True
        return
    lock = RunLock(run_dir)
    try:
        lock.acquire()
        folder_check(run_dir, jobs[0][1])
    except UserError as error:
        lock.release()
        print(f"progprune: error: {error}", file=sys.stderr)
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def _follower_rank() -> bool:
    """A torchrun rank other than 0: it writes into a scratch folder of its own, never the run folder."""
    return os.environ.get("RANK", "0") != "0" and int(os.environ.get("WORLD_SIZE", "1")) > 1


def _train(args: list[str]) -> int:
    from progprune_cli.preflight import checked
    from progprune_cli.results.status import check_folder

    # A torchrun rank other than 0 does not judge the folder: rank 0 does, holding its lock (maybe already, as
    # the ranks start at once), and the others stop with rank 0's verdict (runner.run).
    folder_check = (lambda run_dir, config: None) if _follower_rank() else check_folder
    fits: dict[str, Any] = {}  # the budgets preflight found: the jobs run in this process take them, not search again
    jobs = _preflight(args, lambda overrides, multirun: checked(overrides, multirun, folder_check, fits))
    if jobs is None:
        return 2
    from progprune_cli.app import train

    with _holding(args, jobs, check_folder) as held:
        if not held:
            return 2
        train(args, fits)
    return 0


def _sensitivity(args: list[str]) -> int:
    from progprune_cli.preflight import checked
    from progprune_cli.sensitivity.checks import check_folder, require_strategy

    def check(overrides: list[str], multirun: bool) -> list[Any]:
        jobs = checked(overrides, multirun, check_folder)
        require_strategy([cfg for cfg, _ in jobs])
        return jobs

    jobs = _preflight(args, check)
    if jobs is None:
        return 2
    from progprune_cli.sensitivity.app import main as sensitivity_main

    with _holding(args, jobs, check_folder) as held:
        return sensitivity_main(args) if held else 2


def _resume(args: list[str]) -> int:
    from progprune_cli.errors import UserError
    from progprune_cli.resume import resume

    try:
        return resume(args, _train)
    except UserError as error:
        print(f"progprune: error: {error}", file=sys.stderr)
        return 2


def _compare(args: list[str]) -> int:
    from progprune_cli.report.compare_cli import main as compare_main

    return compare_main(args)


def _report(args: list[str]) -> int:
    from progprune_cli.report.report_cli import main as report_main

    return report_main(args)


def _export(args: list[str]) -> int:
    from progprune_cli.export.cli import main as export_main

    return export_main(args)
