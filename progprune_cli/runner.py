"""Runs one experiment in its run folder: parts → stages (train, prune, finetune, dense_long) → evaluate → report."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from progprune_cli.atomic import write_atomic
from progprune_cli.config import RunConfig
from progprune_cli.distributed import World
from progprune_cli.errors import UserError
from progprune_cli.export import save_compacted
from progprune_cli.parts import Parts, build_parts, resolve_threads
from progprune_cli.results.schema import Results, RunInfo
from progprune_cli.results.status import RunLock, Status, check_folder, save_config
from progprune_cli.stages.base import Produced, RunContext, Stage
from progprune_cli.stages.dense_long import DenseLong
from progprune_cli.stages.evaluate import TrainedModel, evaluate_models
from progprune_cli.stages.finetune import Finetune
from progprune_cli.stages.io import StageIO, load_checkpoint
from progprune_cli.stages.prune import Prune
from progprune_cli.stages.signals import Interrupted, StopRequest
from progprune_cli.stages.train import Train


def pipeline(cfg: RunConfig) -> list[Stage]:
    """The stages a config runs, in order: a dense run trains only; dense_long is the fair baseline."""
    if cfg.strategy is None:
        return [Train()]
    return [Train(), Prune(), Finetune()] + ([DenseLong()] if cfg.evaluate.dense_baseline else [])


def run(cfg: RunConfig, config_dict: dict[str, Any], overrides: list[str], run_dir: Path, console: Console,
        cache_dir: Path | None, world: World | None = None, scratch: Path | None = None) -> dict[str, Any]:
    """Run (or resume) the whole pipeline in `run_dir`, holding its lock; returns the results.json dict. Under
    torchrun (`world`) only rank 0 does that; every other rank trains alongside it, reading `run_dir` and writing
    only into its own `scratch` folder (see _follow)."""
    world = World() if world is None else world
    if not world.is_main:
        assert scratch is not None
        refused = world.broadcast_object(None)  # rank 0's verdict on the folder and its lock
        if refused is not None:
            raise UserError(refused)
        return _follow(cfg, run_dir, scratch, world)
    lock = RunLock(run_dir)  # rank 0's alone: the other ranks never write the folder
    try:
        check_folder(run_dir, config_dict)
        lock.acquire()
    except UserError as error:
        world.broadcast_object(str(error))  # the other ranks stop with it, rather than wait for rank 0 in DDP
        raise
    world.broadcast_object(None)
    try:
        return _locked(cfg, config_dict, overrides, run_dir, console, cache_dir, world)
    finally:
        lock.release()


@dataclass
class _FollowerIO(StageIO):
    """A rank other than 0: loads the checkpoints rank 0 writes in the run folder (`source`: resume, rewind),
    writes everything it would write into its scratch folder (`run_dir`, removed when the run ends), logs nothing
    (rank 0 logs what try_load finds unreadable)."""

    source: Path = Path()

    def log(self, message: str) -> None:
        pass

    def detail(self, message: str) -> None:
        pass

    def source_checkpoint(self, name: str) -> Path:
        return self.source / "checkpoints" / f"{name}.pt"

    def load(self, name: str) -> dict[str, Any]:
        # Rank 0's file; this rank's own copy (it saved the same one) where another node cannot see rank 0's folder.
        path = self.source_checkpoint(name)
        return load_checkpoint(path if path.exists() else self.checkpoint(name))


class _NoStatus:
    """status.json is rank 0's; the other ranks' status calls go nowhere."""

    def set(self, *args: Any, **kwargs: Any) -> None:
        pass


def _follow(cfg: RunConfig, run_dir: Path, scratch: Path, world: World) -> dict[str, Any]:
    """A rank other than 0: the same stages and evaluation as rank 0 (DDP and the all-reduces need every rank),
    with no lock, status, results or report, and the dense cache off as on rank 0."""
    torch.set_num_threads(resolve_threads(cfg.train.threads, world.local_world_size))
    parts = build_parts(cfg, world)
    io = _FollowerIO(scratch, Console(quiet=True), run_dir)
    stop = StopRequest()
    with stop.installed():
        _stages(RunContext(parts, io, stop, None, world), _NoStatus())  # type: ignore[arg-type]
    return {"status": "complete"}


def _locked(cfg: RunConfig, config_dict: dict[str, Any], overrides: list[str], run_dir: Path, console: Console,
            cache_dir: Path | None, world: World) -> dict[str, Any]:
    status = Status(run_dir, config_dict)
    stop = StopRequest()
    started = time.perf_counter()
    with status.recorded(run_dir, f"progprune resume {run_dir}"):
        status.set("running", "build")
        save_config(run_dir, config_dict)
        torch.set_num_threads(resolve_threads(cfg.train.threads, world.local_world_size))
        parts = build_parts(cfg, world)
        io = StageIO(run_dir, console)
        if world.distributed:
            io.log(f"torchrun: {world.world_size} ranks ({world.backend}; rank 0 on {world.device}); batch_size is "
                   f"the global batch of every stage, each rank trains on 1/{world.world_size} of it")
            if cache_dir is not None and cfg.train.reuse:
                # Every rank would have to find (or store) the same entry at the same moment; train instead.
                io.log("train.reuse: off under torchrun; the dense model is trained (and not cached)")
            cache_dir = None
        with stop.installed():
            results = _stages(RunContext(parts, io, stop, cache_dir, world), status)
        record = results.with_run(_run_info(cfg, overrides, run_dir, status.started, time.perf_counter() - started,
                                            parts, results.run.dense_reused_from), config_dict)
        text = record.dumps()  # strict JSON: a NaN or Infinity fails here, before anything is drawn from it
        status.set("running", "report")
        _report(record, run_dir, console)
        # Last, so a results.json always means a finished run (a crash before it leaves a resumable folder).
        write_atomic(run_dir / "results.json", text)
        results = record.to_json()  # run() still returns the results.json dict (app.py reads its "status")
    status.set("complete")
    return results


def _stages(run: RunContext, status: Status) -> Results:
    parts, io = run.parts, run.io
    produced = Produced()
    stages = pipeline(parts.cfg)
    if parts.strategy is None:
        io.log("dense baseline: no strategy given, so train → evaluate (add +strategy=NAME to prune)")
    started = time.perf_counter()
    for stage in stages:
        status.set("running", stage.name)
        setattr(produced, stage.output, stage.resume_or_run(run, produced))
    if run.stop.signum is not None:  # a signal that came after the last optimizer step
        raise Interrupted(run.stop.signum, "the end of training, before evaluate")
    status.set("running", "evaluate")
    trained = time.perf_counter()
    results = evaluate_models(parts, io, _trained(run, produced), produced.pruned.pruning if produced.pruned else None,
                              produced.original.reused_from if produced.original else None)
    measuring, training = time.perf_counter() - trained, trained - started
    io.log(f"evaluate: measuring took {measuring:.1f} s, {measuring / max(measuring + training, 1e-9):.0%} of this "
           f"attempt's stages (training {training:.1f} s)")
    return results


def _trained(run: RunContext, produced: Produced) -> dict[str, TrainedModel]:
    """The models to evaluate, with the compacted one built (and saved) where the strategy removes channels."""
    cfg = run.parts.cfg
    assert produced.original is not None
    trained = {"original": TrainedModel(produced.original.model, cfg.train.epochs, mask_only=False)}
    if produced.pruned is None or produced.finetuned is None:
        return trained
    pruned_epochs = cfg.train.epochs + cfg.prune.epochs
    epochs = pruned_epochs + cfg.finetune.epochs
    trained["pruned"] = TrainedModel(produced.pruned.model, pruned_epochs, mask_only=True)
    trained["finetuned"] = TrainedModel(produced.finetuned, epochs, mask_only=True)
    strategy = run.parts.strategy
    assert strategy is not None
    compacted = strategy.compact(produced.finetuned, produced.pruned.unit_masks, run.parts.data.info)
    if compacted is not None:
        # Tensors and plain values only (state dict, kept widths, masks): it loads without unpickling code.
        save_compacted(run.io.checkpoint("compacted"), compacted, produced.pruned.unit_masks, cfg.model,
                       run.parts.data.info)
        trained["compacted"] = TrainedModel(compacted, epochs, mask_only=False)
    if produced.dense_long is not None:
        trained["dense_long"] = TrainedModel(produced.dense_long, epochs, mask_only=False)
    return trained


def _run_info(cfg: RunConfig, overrides: list[str], run_dir: Path, started: str, duration: float,
              parts: Parts, dense_reused_from: str | None) -> RunInfo:
    return RunInfo(id=run_dir.name, started=started, finished=dt.datetime.now().isoformat(timespec="seconds"),
                   duration_s=round(duration, 3), overrides=tuple(overrides), seed=cfg.seed, device=str(parts.device),
                   torch=torch.__version__, python=platform.python_version(), threads=cfg.evaluate.threads,
                   train_threads=torch.get_num_threads(), git_commit=_git_commit(),
                   dense_reused_from=dense_reused_from, train_samples=len(parts.data.train))


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
