"""Shared test helpers: the installed `progprune` command and a tiny, fast experiment config."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import progprune_cli.catalog  # noqa: F401  (the components' schemas)
from progprune_cli.config.load import load_component

PROGPRUNE = str(Path(sys.executable).parent / "progprune")
CONF = Path(str(resources.files("progprune_cli.conf")))

# `make test` runs the suite in pytest-xdist workers, one per core: each worker, and every progprune it starts
# (which takes OMP_NUM_THREADS as its launcher's limit, as under joblib), gets its share of the cores, so the
# workers' torch threads do not outnumber the cores and wait on each other.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    from progprune_cli.device import available_cores

    _SHARE = str(max(available_cores() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]), 1))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = _SHARE
    torch.set_num_threads(int(_SHARE))

# The real conf/ shrunk: synthetic data, one epoch per stage, few timing repeats.
TINY = ["dataset=synthetic", "train.epochs=1", "prune.epochs=2", "finetune.epochs=1",
        "evaluate.repeats=2", "evaluate.warmup=1"]


def component(group: str, name: str, **values: Any) -> Any:
    """A component's typed config as conf/<group>/<name>.yaml gives it, with `values` on top, checked as a run's
    would be: what a test builds rather than writing a YAML's values again (an unknown name is the run's error)."""
    path = CONF / group / f"{name}.yaml"
    data = yaml.safe_load(path.read_text()) if path.exists() else {"name": name}
    data.pop("defaults", None)
    return load_component(group, {**data, **values})


def composed(*overrides: str) -> dict[str, Any]:
    """The plain dict `progprune train OVERRIDES` hands to load_run_config: the real conf/ composed."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    with initialize_config_module(config_module="progprune_cli.conf", version_base="1.3"):
        data = OmegaConf.to_container(compose(config_name="config", overrides=list(overrides)), resolve=True)
    assert isinstance(data, dict)
    data.pop("hydra", None)
    return data


def model_of(name: str, values: dict[str, Any], info: Any) -> Any:
    """The model `name` built for data of shape `info`, with `values` on top of its YAML's."""
    from progprune_cli.models import build_model

    return build_model(component("model", name, **values), info)


def dataset_splits(name: str, values: dict[str, Any], seed: int) -> Any:
    """The splits the dataset `name` builds with `values` on top of its YAML's."""
    from progprune_cli.data import build_data

    return build_data(component("dataset", name, **values), seed)


def progprune(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the installed command as a user would, capturing its output."""
    return subprocess.run([PROGPRUNE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def refused(*args: str, cwd: Path, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> str:
    """`progprune ARGS` in this process, started in `cwd` (what the pre-run check refuses needs no new process):
    its stderr, once it exited 2 having printed nothing on stdout. Each table of bad input keeps one case run
    through the installed command as well, for what only a real process shows."""
    from progprune_cli import cli

    monkeypatch.chdir(cwd)
    with pytest.raises(SystemExit) as exit_:
        cli.main(list(args))
    captured = capsys.readouterr()
    assert (exit_.value.code, captured.out) == (2, ""), captured.err
    return captured.err


def untimed(pruning: dict[str, Any] | None) -> dict[str, Any] | None:
    """results.json's `pruning` without what a clock measured (each step's seconds): what must be equal between
    two runs of the same config, resumed or not."""
    if pruning is None:
        return None
    return {**pruning, "steps": [{k: v for k, v in step.items() if k != "seconds"} for step in pruning["steps"]]}


def finished_run(factory: pytest.TempPathFactory, *overrides: str) -> Path:
    """A run of the installed command, finished, in a temp folder of its own (for a module's tests to copy)."""
    work = factory.mktemp("finished")
    done = progprune("train", *overrides, f"hydra.run.dir={work / 'run'}", cwd=work)
    assert done.returncode == 0, done.stderr
    return work / "run"


def resumable_copy(finished: Path, where: Path) -> Path:
    """A copy of a finished run without its results.json: as far as a resume can tell, an interrupted run."""
    run = where / "run"
    shutil.copytree(finished, run)
    (run / "results.json").unlink()
    return run


@pytest.fixture
def default_signals() -> Iterator[None]:
    """SIGINT and SIGTERM at Python's defaults for the test, whatever the suite inherited (a suite started in the
    background of a script inherits SIGINT ignored, which StopRequest rightly respects), restored after it."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty folder to run in: runs/ and the dense cache land here."""
    return tmp_path


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread for the test, restored after it."""
    # Tracing runs many one-sample forward passes; on a busy machine extra threads only add wake-up latency.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
