"""train.threads: null means the cores this process may use, capped by its launcher's grant and thread limits."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from conftest import TINY, progprune
from progprune_cli.app import with_launcher_threads
from progprune_cli.config import load_run_config
from progprune_cli.device import available_cores, resolve_threads
from test_config import composed


def test_an_explicit_count_wins_and_ranks_share_the_cores() -> None:
    assert resolve_threads(5) == 5
    assert resolve_threads(None, local_world_size=10_000) == 1
    assert resolve_threads(None) <= available_cores()


def test_a_launchers_thread_limit_holds() -> None:
    """joblib's workers (and torchrun's ranks) start with OMP_NUM_THREADS=1: progprune must not raise it again."""
    code = "from progprune_cli.device import resolve_threads; print(resolve_threads(None))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.stdout == "1\n", out.stderr


def test_cpus_per_task_reaches_train_threads() -> None:
    cfg = load_run_config(composed())
    assert with_launcher_threads(cfg, OmegaConf.create({"cpus_per_task": 3})).train.threads == 3
    assert with_launcher_threads(cfg, OmegaConf.create({"n_jobs": 2})).train.threads is None
    pinned = load_run_config(composed("train.threads=2"))
    assert with_launcher_threads(pinned, OmegaConf.create({"cpus_per_task": 3})).train.threads == 2


def test_the_threads_used_are_recorded_and_timing_is_bounded(workdir: Path) -> None:
    done = progprune("train", *TINY, "train.threads=1", "evaluate.timing_samples=10",
                     f"hydra.run.dir={workdir / 'run'}", cwd=workdir)
    assert done.returncode == 0, done.stderr
    results = json.loads((workdir / "run" / "results.json").read_text())
    assert results["run"]["train_threads"] == 1
    assert results["models"]["original"]["latency"]["eval_samples"] == 10  # of the 64 test inputs
    assert re.search(r"evaluate: measuring took \d+\.\d s, \d+% of this attempt's stages \(training \d+\.\d s\)",
                     (workdir / "run" / "run.log").read_text())
