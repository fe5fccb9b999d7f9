"""One sensitivity analysis in its run folder: parts → dense model (train stage or cache) → analysis → files."""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import signal
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from progprune_cli.atomic import write_atomic
from progprune_cli.config import RunConfig
from progprune_cli.data import Batches
from progprune_cli.allocator import keep_freed_memory
from progprune_cli.device import resolve_threads
from progprune_cli.parts import Parts, build_parts
from progprune_cli.pruning.strategies import PruneContext
from progprune_cli.results.attempt import Attempt
from progprune_cli.sensitivity import budget, plot
from progprune_cli.sensitivity.analysis import Analysis, Evaluation, analyse, ranking
from progprune_cli.sensitivity.checks import check_folder, marked, require_strategy
from progprune_cli.sensitivity.table import write_table
from progprune_cli.signals import Interrupted
from progprune_cli.stages.base import Produced, RunContext
from progprune_cli.stages.io import StageIO
from progprune_cli.stages.train import Train

FILES = ("sensitivity.csv", "sensitivity.png", "layers.yaml")
_UNITS = {"weight": "weight tensor", "channel": "channel group (named by its first layer)"}


def interrupted_message(error: Interrupted, run_dir: Path) -> str:
    """`progprune resume` continues training runs only; a sensitivity run continues by running it again there."""
    return (f"interrupted by {signal.Signals(error.signum).name} at {error.where}; to continue, run the same "
            f"progprune sensitivity command with hydra.run.dir={run_dir}")


def run_sensitivity(cfg: RunConfig, config: dict[str, Any], overrides: list[str], run_dir: Path, console: Console,
                    cache_dir: Path | None) -> Analysis:
    """Analyse in `run_dir`, holding its lock, with status.json saying where it is; returns the analysis.
    `overrides` (the command line's) make the train command layers.yaml suggests."""
    require_strategy([cfg])
    attempt = Attempt(run_dir, marked(config), f"the same progprune sensitivity command with hydra.run.dir={run_dir}",
                      check=check_folder)
    attempt.claim()
    try:
        with attempt.running():
            attempt.phase("build")
            allocator = keep_freed_memory()
            torch.set_num_threads(resolve_threads(cfg.train.threads))
            parts = build_parts(cfg)
            io = StageIO(run_dir, console)
            io.detail(allocator)
            attempt.phase("train")
            # Exactly the runner's train stage: the dense cache is shared with training runs and sweep jobs.
            dense = Train().resume_or_run(RunContext(parts, io, attempt.stop, cache_dir), Produced())
            if attempt.stop.signum is not None:  # a signal that came as its loop ended
                raise Interrupted(attempt.stop.signum, "the end of train")
            attempt.phase("sensitivity")
            analysis = _analyse(parts, dense.model, io)
            attempt.phase("report")
            _write(parts, analysis, overrides, run_dir, io)
            with attempt.finishing():
                pass  # its files are written: only status.json is left to say so
            return analysis
    finally:
        attempt.release()


def _analyse(parts: Parts, model: torch.nn.Module, io: StageIO) -> Analysis:
    cfg, strategy = parts.cfg, parts.strategy
    assert strategy is not None and cfg.strategy is not None
    levels = cfg.sensitivity.levels
    io.log(f"sensitivity: {cfg.strategy.name} scores, each unit pruned alone to {', '.join(f'{v:g}' for v in levels)}"
           f", val accuracy without retraining")
    # The prune stage's calibration batches and seed, so scores match what a training run would compute.
    ctx = PruneContext(Batches(parts.data.train, cfg.prune.batch_size, device=parts.device), parts.loss_fn,
                       parts.device, cfg.seed)
    measure = Evaluation(parts.data.val, parts.loss_fn, parts.device, cfg.evaluate.batch_size)
    analysis = analyse(model, strategy, levels, measure, ctx, parts.data.info, io.log)
    for note in analysis.notes:
        io.log(f"sensitivity: {note}")
    io.log(f"sensitivity: most sensitive first: {', '.join(ranking(analysis))}")
    return analysis


def _write(parts: Parts, analysis: Analysis, overrides: list[str], run_dir: Path, io: StageIO) -> None:
    cfg, strategy = parts.cfg, parts.strategy
    assert strategy is not None and cfg.strategy is not None
    write_table(run_dir / "sensitivity.csv", [dataclasses.asdict(p) for p in analysis.points])
    plot.draw(analysis, run_dir / "sensitivity.png",
              f"{cfg.strategy.name} on {cfg.model.name} / {cfg.dataset.name}: each unit pruned alone")
    curves = [budget.Curve(unit, size, tuple(p.level for p in analysis.curve(unit)),
                           tuple(p.val_accuracy for p in analysis.curve(unit)),
                           tuple(p.params_removed for p in analysis.curve(unit)))
              for unit, size in analysis.sizes.items()]
    target = cfg.sensitivity.target
    derived = budget.derive(curves, analysis.dense_accuracy, target)
    path = run_dir / "layers.yaml"
    header = _header(cfg, strategy.granularity, analysis, derived, train_command(overrides, target, path))
    write_atomic(path, budget.layers_yaml(derived, header))
    io.log(f"sensitivity: budget for overall sparsity {derived.sparsity:.2%}, predicted val accuracy "
           f"{analysis.dense_accuracy - derived.predicted_drop:.2%} (dense {analysis.dense_accuracy:.2%}): "
           + ", ".join(f"{u} {s:.2%}" for u, s in derived.sparsities.items()))
    io.log(f"sensitivity: wrote {', '.join(FILES)} in {run_dir}")


def _header(cfg: RunConfig, granularity: str, analysis: Analysis, derived: budget.Budget, use: str) -> list[str]:
    """How layers.yaml was derived, and how to use it: the comment at its top."""
    assert cfg.strategy is not None
    name, target = cfg.strategy.name, cfg.sensitivity.target
    predicted = analysis.dense_accuracy - derived.predicted_drop
    return [
        f"Sparsities per {_UNITS.get(granularity, granularity)} for strategy={name}, from progprune sensitivity.",
        "How: each unit in sensitivity.csv (beside this file) was pruned alone to each level, without retraining.",
        "Starting all dense, the unit whose next measured level loses the least predicted val accuracy per",
        "parameter removed was raised one level at a time, until the overall sparsity, weighted by unit size,",
        f"reached sensitivity.target={target:g} (the last raise interpolated between its two levels to land on it).",
        f"Predicted val accuracy {predicted:.2%} (dense {analysis.dense_accuracy:.2%}): the sum of the units' own "
        "drops, a guide only.",
        f"Use: {use}",
    ]


def train_command(overrides: list[str], target: float, path: Path) -> str:
    """This analysis's own overrides (same data, model, strategy and dense training: the cached dense model is
    reused) as a train command, with the budget's overall sparsity and the budget itself."""
    ours = re.compile(r"^[+~]*(sensitivity[.=]|strategy\.(sparsity|layers_from)=)")
    kept = [o for o in overrides if not ours.match(o)]
    return shlex.join(["progprune", "train", *kept, f"strategy.sparsity={target:g}",
                       f"+strategy.layers_from={_shown(path)}"])


def _shown(path: Path) -> str:
    """Relative to the folder the command ran in when it is below it (as a user would type it)."""
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd().resolve()) else str(path)
    except ValueError:
        return str(path)
