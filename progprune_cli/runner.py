"""Runs one experiment in its run folder: parts → the stages of results.schema.ROWS → evaluate → report."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from rich.console import Console

from progprune_cli.allocator import keep_freed_memory
from progprune_cli.atomic import write_atomic
from progprune_cli.checkpoints import load_checkpoint
from progprune_cli.config import RunConfig
from progprune_cli.device import resolve_threads
from progprune_cli.distributed import World, max_over_ranks
from progprune_cli.errors import UserError
from progprune_cli.parts import Parts, build_parts
from progprune_cli.pruning.budget import BudgetFit, budget_key
from progprune_cli.results.attempt import Attempt
from progprune_cli.results.schema import ROWS, Results, RunInfo, Weights
from progprune_cli.signals import Interrupted, StopRequest
from progprune_cli.stages import register_all
from progprune_cli.stored_budget import keep_search, stored_search
from progprune_cli.stages.base import STAGES, Produced, RunContext, Stage
from progprune_cli.stages.io import StageIO
from progprune_cli.trackers import RunFinished, RunStarted, Trackers
from progprune_cli.trackers.base import figures_of, flat_params

register_all()


def pipeline(cfg: RunConfig) -> list[Stage]:
    """The stages a config runs, in order: the training stages of results.schema.ROWS whose `applies` holds (a
    dense run trains only; dense_long is the fair baseline), then evaluate."""
    stages = [STAGES.get(row.stage)() for row in ROWS if row.stage is not None]
    return [stage for stage in stages if stage.applies(cfg)] + [STAGES.get("evaluate")()]


def run(cfg: RunConfig, config_dict: dict[str, Any], overrides: list[str], run_dir: Path, console: Console,
        cache_dir: Path | None, world: World | None = None, scratch: Path | None = None,
        runs_root: Path | None = None, sweep_dir: Path | None = None,
        fits: dict[str, BudgetFit] | None = None) -> dict[str, Any]:
    """Run (or resume) the whole pipeline in `run_dir`, holding its lock; returns the results.json dict. Under
    torchrun (`world`) only rank 0 does that; every other rank trains alongside it, reading `run_dir` and writing
    only into its own `scratch` folder (see _follow). `runs_root` (default ./runs) is where a tracker's local store
    goes; `sweep_dir`, the sweep of a sweep's job (a tracker nests its run under the sweep's); `fits`, MAC and
    parameter budgets found already (by budget_key: preflight's), so the run does not search them again."""
    world = World() if world is None else world
    if not world.is_main:
        assert scratch is not None
        refused = world.broadcast_object(None)  # rank 0's verdict on the folder and its lock
        if refused is not None:
            raise UserError(refused)
        return _follow(cfg, run_dir, scratch, world)
    attempt = Attempt(run_dir, config_dict, f"progprune resume {run_dir}")  # rank 0's: the others write nothing
    try:
        attempt.claim()
    except UserError as error:
        world.broadcast_object(str(error))  # the other ranks stop with it, rather than wait for rank 0 in DDP
        raise
    world.broadcast_object(None)
    try:
        return _locked(cfg, overrides, attempt, console, cache_dir, world,
                       Path("runs").absolute() if runs_root is None else runs_root, sweep_dir, fits or {})
    finally:
        attempt.release()


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


def _follow(cfg: RunConfig, run_dir: Path, scratch: Path, world: World) -> dict[str, Any]:
    """A rank other than 0: the same stages and evaluation as rank 0 (DDP and the all-reduces need every rank),
    with no lock, status, results or report, and the dense cache off as on rank 0."""
    keep_freed_memory()
    torch.set_num_threads(resolve_threads(cfg.train.threads, world.local_world_size))
    parts = build_parts(cfg, world)
    io = _FollowerIO(scratch, Console(quiet=True), source=run_dir)
    stop = StopRequest()

    def phase(name: str) -> None:  # status.json is rank 0's: here a phase only names where a stop lands
        stop.phase = name

    with stop.installed(), stop.deferred():  # see _locked: under torchrun the loops' all-reduce decides a stop
        _stages(RunContext(parts, io, stop, None, world), phase)
    return {"status": "complete"}


def _locked(cfg: RunConfig, overrides: list[str], attempt: Attempt, console: Console, cache_dir: Path | None,
            world: World, runs_root: Path, sweep_dir: Path | None, fits: dict[str, BudgetFit]) -> dict[str, Any]:
    run_dir, started = attempt.run_dir, time.perf_counter()
    # Under torchrun a signal acts only inside the training loops, where the ranks agree on it in one all-reduce
    # (a rank that stopped alone elsewhere would leave the others waiting in a collective for ever).
    with attempt.running(agreed_stops=world.distributed):
        attempt.phase("build")
        allocator = keep_freed_memory()  # before any batch: build_parts may time a latency budget's candidates
        torch.set_num_threads(resolve_threads(cfg.train.threads, world.local_world_size))
        stored = stored_search(run_dir, cfg)
        parts = build_parts(cfg, world, stored or fits.get(budget_key(cfg)))
        io = StageIO(run_dir, console)
        io.detail(allocator)
        keep_search(run_dir, parts.budget, stored is not None, io.log)
        trackers = Trackers(cfg.logger, io.log)
        io.on_metrics = trackers.rows
        trackers.start(RunStarted(run_dir, runs_root, flat_params(attempt.config), sweep_dir))
        status = "failed"
        try:
            record = _measured(cfg, overrides, attempt, console, cache_dir, world, parts, io, started)
            status = "complete"
            trackers.finish(RunFinished(figures_of(record.to_json()["models"]), _REPORT_FILES,
                                        tuple(sorted(p.relative_to(run_dir) for p in run_dir.glob("plots/*.png")))))
        except Interrupted:
            status = "interrupted"
            raise
        finally:
            trackers.close(status)
    return record.to_json()  # run() still returns the results.json dict (app.py reads its "status")


# The report files a tracker keeps (its plots besides), relative to the run folder.
_REPORT_FILES = (Path("results.json"), Path("results.md"), Path("run.log"))


def _measured(cfg: RunConfig, overrides: list[str], attempt: Attempt, console: Console, cache_dir: Path | None,
              world: World, parts: Parts, io: StageIO, started: float) -> Results:
    """The stages, then results.json and the report: the run's results record."""
    run_dir = attempt.run_dir
    if parts.budget is not None:
        io.log(parts.budget.line())
    if world.distributed:
        io.log(f"torchrun: {world.world_size} ranks ({world.backend}; rank 0 on {world.device}); batch_size is "
               f"the global batch of every stage, each rank trains on 1/{world.world_size} of it")
        if cache_dir is not None and cfg.train.reuse:
            # Every rank would have to find (or store) the same entry at the same moment; train instead.
            io.log("train.reuse: off under torchrun; the dense model is trained (and not cached)")
        cache_dir = None
    results = _stages(RunContext(parts, io, attempt.stop, cache_dir, world), attempt.phase)
    assert attempt.status is not None
    record = results.with_run(_run_info(cfg, overrides, run_dir, attempt.status.started,
                                        time.perf_counter() - started, parts, results.run.dense_reused_from),
                              attempt.config)
    text = record.dumps()  # strict JSON: a NaN or Infinity fails here, before anything is drawn from it
    attempt.phase("report")
    _report(record, run_dir, console)
    with attempt.finishing():
        # Last, so a results.json always means a finished run (a crash before it leaves a resumable folder).
        write_atomic(run_dir / "results.json", text)
    return record


def _stages(run: RunContext, phase: Callable[[str], None]) -> Results:
    """Every stage of the pipeline in turn, each entering its phase; the evaluate stage's results record."""
    parts, io = run.parts, run.io
    produced = Produced()
    if parts.strategy is None:
        io.log("dense baseline: no strategy given, so train → evaluate (add +strategy=NAME to prune)")
    started = time.perf_counter()
    for stage in pipeline(parts.cfg):
        phase(stage.name)
        measured = time.perf_counter()
        produced[stage.output] = stage.resume_or_run(run, produced)
        if stage.checkpointed:
            _stop_if_requested(run, f"the end of {stage.name}")  # a signal that came as its loop ended
    measuring, training = time.perf_counter() - measured, measured - started
    io.log(f"evaluate: measuring took {measuring:.1f} s, {measuring / max(measuring + training, 1e-9):.0%} of this "
           f"attempt's stages (training {training:.1f} s)")
    return produced["results"]


def _stop_if_requested(run: RunContext, where: str) -> None:
    """Carry out a stop request that a loop deferred; under torchrun every rank stops if any rank was asked to."""
    signum = run.stop.signum or 0
    if run.world.distributed:
        signum = max_over_ranks(run.world, [signum], run.parts.device)[0]
    if signum:
        raise Interrupted(signum, where)


def _run_info(cfg: RunConfig, overrides: list[str], run_dir: Path, started: str, duration: float,
              parts: Parts, dense_reused_from: str | None) -> RunInfo:
    return RunInfo(id=run_dir.name, started=started, finished=dt.datetime.now().isoformat(timespec="seconds"),
                   duration_s=round(duration, 3), overrides=tuple(overrides), seed=cfg.seed, device=str(parts.device),
                   torch=torch.__version__, python=platform.python_version(), threads=cfg.evaluate.threads,
                   train_threads=torch.get_num_threads(), git_commit=_git_commit(),
                   dense_reused_from=dense_reused_from, train_samples=len(parts.data.train),
                   train_eval_samples=min(len(parts.data.train), cfg.evaluate.train_samples or len(parts.data.train)),
                   **_origin(parts))


def _origin(parts: Parts) -> dict[str, Any]:
    """RunInfo's model_source, weights and original."""
    origin = parts.origin
    if origin is None:
        return {}
    fitted = origin.weights
    weights = None if fitted is None else Weights(file=fitted.file, sha256=fitted.sha256,
                                                  head_replaced=fitted.head_replaced, adapted=fitted.adapted)
    return {"model_source": origin.source, "weights": weights, "original": origin.original}


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
