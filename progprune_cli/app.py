"""The Hydra edge: the `progprune train` task turns the composed config into a RunConfig and runs it."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

import progprune_cli.catalog  # noqa: F401  (every component's schema, for Hydra's compose)
import progprune_cli.resolvers  # noqa: F401  (the resolvers conf/config.yaml uses)
from progprune_cli.config import RunConfig, load_run_config
from progprune_cli.config.search import parse_objectives
from progprune_cli.edge import exit_codes, hydra_argv, job_console
from progprune_cli.errors import UserError
from progprune_cli.results.objectives import objective_values
from progprune_cli.results.records import BASIC_SWEEPER
from progprune_cli.results.schema import Results


def _torchrun_rank() -> tuple[int, int] | None:
    """(RANK, WORLD_SIZE) when torchrun started this process with other ranks, else None (read without importing
    torch, which `--help` must not wait for; distributed.from_env reads the same variables)."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])


def train(args: list[str], fits: dict[str, Any] | None = None) -> Any:
    """`progprune train ARGS` as the Hydra task. Under torchrun every rank runs it; a rank other than 0 gets a
    rank-local scratch folder as its Hydra folder (and no .hydra/ in it), so it creates and writes nothing in runs/.
    `fits`: MAC and parameter budgets preflight found (pruning.budget.budget_key → BudgetFit), for the jobs to reuse."""
    ranks = _torchrun_rank()
    if ranks is not None:
        if any(arg in ("-m", "--multirun") for arg in args):
            if ranks[0] == 0:
                print("progprune: error: -m: a sweep under torchrun is not supported; start one torchrun per job",
                      file=sys.stderr)
            raise SystemExit(2)
        if ranks[0] != 0:
            scratch = tempfile.mkdtemp(prefix=f"progprune-rank{ranks[0]}-")
            args = [*args, f"hydra.run.dir={scratch}", "hydra.output_subdir=null"]  # the last one wins in Hydra
    with hydra_argv("progprune train", args):
        return _hydra_task(fits or {})()


def with_launcher_threads(cfg: RunConfig, launcher: Any) -> RunConfig:
    """`train.threads: null` under a launcher that grants `cpus_per_task` (the Slurm preset, submitit_local) means
    that many threads: submitit_local starts every job at once and would otherwise give each all the cores."""
    cpus = launcher.get("cpus_per_task") if hasattr(launcher, "get") else None
    if cfg.train.threads is not None or not isinstance(cpus, int) or cpus < 1:
        return cfg
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=cpus))


def _hydra_task(fits: dict[str, Any]) -> Callable[[], Any]:
    """The task Hydra runs for each job, holding `fits` (a launcher that starts jobs elsewhere pickles them along)."""

    @hydra.main(config_path="pkg://progprune_cli.conf", config_name="config", version_base="1.3")
    def task(cfg: DictConfig) -> Any:
        return _task(cfg, fits)

    return task


def _task(cfg: DictConfig, fits: dict[str, Any]) -> Any:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    console = job_console()
    container: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    ranks = _torchrun_rank()
    main, world = ranks is None or ranks[0] == 0, None
    try:
        # Every rank meets the same stop or error; rank 0 says it once.
        with exit_codes(multirun=multirun, speak=main,
                        sweep_failed=lambda error: f"progprune: a sweep job failed ({error}); see "
                                                   f"{hc.sweep.dir}/summary.md"):
            from progprune_cli.distributed import start  # torch is imported only once a job really starts
            from progprune_cli.runner import run

            cfg_ = with_launcher_threads(load_run_config(container), hc.launcher)
            # torchrun's process group (a single process gets World() and none). Rank 0 already holds the run
            # folder's lock (cli.py takes it before Hydra writes); the other ranks never judge the folder.
            world = start(cfg_.device)
            # Rank 0's folder is the run folder of every rank: they read the checkpoints rank 0 writes there.
            source = Path(world.broadcast_object(str(run_dir)))
            runs_root = Path(hc.runtime.cwd) / "runs"
            sweep_dir = Path(hc.runtime.cwd, hc.sweep.dir) if multirun else None
            result = run(cfg_, container, list(hc.overrides.task), source, console, runs_root / ".cache", world=world,
                         scratch=run_dir, runs_root=runs_root, sweep_dir=sweep_dir, fits=fits)
            return returned(cfg_, result, sampled=_sampling(hc.sweeper)) if multirun else result["status"]
    finally:
        if world is not None:
            from progprune_cli.distributed import finish

            finish()
        if not main:
            shutil.rmtree(run_dir, ignore_errors=True)  # this rank's scratch folder
        if multirun:
            _sweep_summary(Path(hc.sweep.dir), console)


def _sampling(sweeper: Any) -> bool:
    """A sweeper that optimises what the jobs return (Optuna), not Hydra's basic one that only lists them."""
    target = sweeper.get("_target_") if hasattr(sweeper, "get") else None
    return str(target or BASIC_SWEEPER).rpartition(".")[2] != BASIC_SWEEPER


def returned(cfg: RunConfig, result: dict[str, Any], sampled: bool) -> float | list[float] | None:
    """What a sweep job returns to its sweeper: the finished run's search.objectives values (one float for one
    objective, else a list in their order). For a sampling sweeper an objective the run did not measure fails the
    trial (an error is what the Optuna sweeper records as a failed trial; a NaN would stop the whole search)."""
    objectives = parse_objectives(cfg.search.objectives)
    values = objective_values(Results.from_json(result), objectives)
    missing = [str(o) for o, v in zip(objectives, values) if v is None or not math.isfinite(v)]
    if missing:
        if sampled:
            raise UserError(f"search.objectives: {', '.join(missing)}: not measured by this run, so the trial "
                            "has no score")
        return None
    return values[0] if len(values) == 1 else values  # type: ignore[return-value]


def _sweep_summary(sweep_dir: Path, console: Console) -> None:
    """Rebuilt from the files on disk after every job, so it is right even if a later job dies."""
    from progprune_cli.report.summary import write_sweep_summary

    path = write_sweep_summary(sweep_dir)
    console.print(f"sweep summary: {path}")
