"""`progprune resume RUN_DIR|SWEEP_DIR`: continue unfinished runs from their last checkpoint, with their own config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

import yaml

from progprune_cli.errors import UserError
from progprune_cli.results.status import read_status

USAGE = "usage: progprune resume RUN_DIR|SWEEP_DIR   (continue from the last checkpoint with the folder's own config)"


def saved_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides the run was started with (.hydra/overrides.yaml, read as plain YAML)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    try:
        overrides = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        raise UserError(f"{run_dir}: no readable .hydra/overrides.yaml; it cannot be resumed") from None
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise UserError(f"{path}: not a list of overrides; it cannot be resumed")
    return overrides


def _is_run(path: Path) -> bool:
    return (path / "status.json").exists() or (path / "results.json").exists()


def resume(args: list[str], train: Callable[[list[str]], int]) -> int:
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if len(args) != 1 else sys.stdout)
        return 0 if args and args[0] in ("-h", "--help") else 2
    target = Path(args[0]).resolve()
    if not target.is_dir():
        raise UserError(f"{args[0]}: no such folder")
    if _is_run(target):
        return _resume_run(target, train)
    jobs = sorted((p for p in target.iterdir() if p.is_dir() and _is_run(p)),
                  key=lambda p: (len(p.name), p.name))
    if not jobs:
        raise UserError(f"{args[0]}: not a run folder (no status.json) or a sweep folder of runs")
    return _resume_sweep(target, jobs)


def _resume_run(run_dir: Path, train: Callable[[list[str]], int]) -> int:
    if (run_dir / "results.json").exists():
        print(f"progprune: {run_dir} is complete; nothing to resume")
        return 0
    status = read_status(run_dir) or {}
    print(f"progprune: resuming {run_dir} (was {status.get('status', 'unknown')}"
          + (f" in {status['stage']}" if status.get("stage") else "") + ")")
    return train([*saved_overrides(run_dir), f"hydra.run.dir={run_dir}"])


def _resume_sweep(sweep_dir: Path, jobs: list[Path]) -> int:
    """Each unfinished job resumed in its own process (Hydra runs one job per process here), one after another."""
    failed = 0
    for job in jobs:
        if (job / "results.json").exists():
            continue
        code = subprocess.run([sys.executable, "-m", "progprune_cli", "resume", str(job)]).returncode
        if code in (130, 143):
            return code  # interrupted again: stop here, the rest stays resumable
        failed += code != 0
    from progprune_cli.report.summary import write_sweep_summary

    print(f"sweep summary: {write_sweep_summary(sweep_dir)}")
    return 1 if failed else 0
