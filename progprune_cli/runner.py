"""Runs one experiment in its run folder: build → train → prune → finetune → evaluate → results → report."""

from __future__ import annotations

import copy
import datetime as dt
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from progprune_cli.config import RunConfig
from progprune_cli.errors import UserError
from progprune_cli.results.status import Status, check_folder
from progprune_cli.parts import Parts, build_parts
from progprune_cli.stages.dense_long import dense_long
from progprune_cli.stages.evaluate import TrainedModel, evaluate_models
from progprune_cli.stages.finetune import finetune
from progprune_cli.atomic import write_atomic
from progprune_cli.stages.io import StageIO, write_json
from progprune_cli.stages.prune import prune
from progprune_cli.stages.train import train


def run(cfg: RunConfig, config_dict: dict[str, Any], overrides: list[str], run_dir: Path, console: Console,
        cache_dir: Path | None) -> dict[str, Any]:
    """Run (or resume) the whole pipeline in `run_dir`; returns the results.json dict."""
    check_folder(run_dir, config_dict)
    status = Status(run_dir, config_dict)
    status.set("running", "build")
    started = time.perf_counter()
    try:
        parts = build_parts(cfg)
        io = StageIO(run_dir, console)
        results = _stages(parts, io, status, cache_dir)
        record = results.with_run(_run_info(cfg, overrides, run_dir, status.started, time.perf_counter() - started,
                                            parts, results.run.dense_reused_from), config_dict)
        text = record.dumps()  # strict JSON: a NaN or Infinity fails here, before anything is drawn from it
        status.set("running", "report")
        _report(record, run_dir, console)
        # Last, so a results.json always means a finished run (a crash before it leaves a resumable folder).
        write_atomic(run_dir / "results.json", text)
        results = record.to_json()  # run() still returns the results.json dict (app.py reads its "status")
    except KeyboardInterrupt:
        status.set("interrupted", error="interrupted by the user (Ctrl-C)")
        raise
    except UserError as error:
        status.set("failed", error=str(error))
        raise
    except Exception as error:
        status.set("failed", error=f"{type(error).__name__}: {error}")
        raise
    status.set("complete")
    return results


def _stages(parts: Parts, io: StageIO, status: Status, cache_dir: Path | None) -> dict[str, Any]:
    cfg = parts.cfg
    status.set("running", "train")
    original, reused = train(parts, io, cache_dir)
    trained = {"original": TrainedModel(original, cfg.train.epochs, mask_only=False)}
    pruning = None
    if parts.strategy is None:
        io.log("dense baseline: no strategy given, so train → evaluate (add +strategy=NAME to prune)")
    else:
        start = cfg.train.epochs * parts.steps_per_epoch(cfg.train.batch_size)
        status.set("running", "prune")
        pruned, unit_masks, pruning = prune(parts, io, start)
        trained["pruned"] = TrainedModel(pruned, cfg.train.epochs + cfg.prune.epochs, mask_only=True)
        status.set("running", "finetune")
        after_prune = start + cfg.prune.epochs * parts.steps_per_epoch(cfg.prune.batch_size)
        finetuned = finetune(parts, io, after_prune)
        epochs = cfg.train.epochs + cfg.prune.epochs + cfg.finetune.epochs
        trained["finetuned"] = TrainedModel(finetuned, epochs, mask_only=True)
        compacted = parts.strategy.compact(finetuned, unit_masks, parts.data.info)
        if compacted is not None:
            # A CPU copy, so the saved module loads on a machine without the GPU it was made on.
            io.save("compacted", {"module": copy.deepcopy(compacted).cpu(), "stage": "compact"})
            trained["compacted"] = TrainedModel(compacted, epochs, mask_only=False)
        if cfg.evaluate.dense_baseline:
            status.set("running", "dense_long")
            trained["dense_long"] = TrainedModel(dense_long(parts, io, start, cache_dir), epochs, mask_only=False)
    status.set("running", "evaluate")
    return evaluate_models(parts, io, trained, pruning, reused)


def _run_info(cfg: RunConfig, overrides: list[str], run_dir: Path, started: str, duration: float,
              parts: Parts, dense_reused_from: str | None) -> RunInfo:
    from progprune_cli.results.schema import RunInfo

    return RunInfo(id=run_dir.name, started=started, finished=dt.datetime.now().isoformat(timespec="seconds"),
                   duration_s=round(duration, 3), overrides=tuple(overrides), seed=cfg.seed, device=str(parts.device),
                   torch=torch.__version__, python=platform.python_version(), threads=cfg.evaluate.threads,
                   train_threads=torch.get_num_threads(), git_commit=_git_commit(),
                   dense_reused_from=dense_reused_from)


def _git_commit() -> str | None:
    """The commit of progprune's own checkout; None for an installed wheel (even one inside another repo)."""
    here = Path(__file__).parent
    try:
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", Path(__file__).name], cwd=here,
                                 capture_output=True, timeout=5)
        if tracked.returncode != 0:
            return None
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=here)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _report(results: Results, run_dir: Path, console: Console) -> None:
    """results.md, the plots and the terminal summary, all drawn from the results record and metrics.csv."""
    from progprune_cli.report.console import print_summary
    from progprune_cli.report.markdown import render_markdown
    from progprune_cli.report.plots import draw_plots

    plots = draw_plots(run_dir, results)
    write_atomic(run_dir / "results.md", render_markdown(results, plots))
    print_summary(results, console)
    console.print(f"run folder: {run_dir}")

