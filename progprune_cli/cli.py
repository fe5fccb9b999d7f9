"""`progprune` entry point: dispatches subcommands without importing torch (so `--help` is instant)."""

from __future__ import annotations

import sys
from typing import Callable

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
  export RUN_DIR        write a run's model as ONNX, checked with onnxruntime; --help for options

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


def _preflight(args: list[str], check: Callable[[list[str], bool], object]) -> bool:
    """`check(overrides, multirun)` before Hydra makes a folder; False once bad input is said in one line."""
    from progprune_cli.errors import UserError

    if any(a.split("=", 1)[0] in _PASSTHROUGH for a in args):
        return True
    multirun = "-m" in args or "--multirun" in args
    try:
        check([a for a in args if not a.startswith("-")], multirun)
    except UserError as error:
        print(f"progprune: error: {error}", file=sys.stderr)
        return False
    return True


def _train(args: list[str]) -> int:
    from progprune_cli.preflight import check, normalize

    args = normalize(args)
    if not _preflight(args, check):
        return 2
    from progprune_cli.app import train_task

    sys.argv = ["progprune train", *args]
    train_task()
    return 0


def _sensitivity(args: list[str]) -> int:
    from progprune_cli.preflight import check, normalize
    from progprune_cli.sensitivity.checks import check_folder, require_strategy

    args = normalize(args)
    if not _preflight(args, lambda overrides, multirun: require_strategy(check(overrides, multirun, check_folder))):
        return 2
    from progprune_cli.sensitivity.app import main as sensitivity_main

    return sensitivity_main(args)


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
