"""Signals in every phase: SIGINT or SIGTERM in build, a stage's set-up, evaluate or report stops the run with status
`interrupted` naming the phase (exit 130 / 143), never a run that says complete or one left `running`."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from rich.console import Console

from conftest import PROGPRUNE, TINY
from progprune_cli import runner
from progprune_cli.config import load_run_config
from progprune_cli.stages import evaluate as evaluate_stage
from progprune_cli.stages import train as train_stage
from progprune_cli.signals import Interrupted

FAST = [*TINY, "evaluate.dense_baseline=false", "+strategy=weight"]


def _config() -> dict[str, Any]:
    with initialize_config_module(config_module="progprune_cli.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=FAST)
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def _signalling(real: Callable[..., Any], signum: int) -> Callable[..., Any]:
    """`real`, which first sends this process `signum`: the signal lands exactly inside the phase that calls it."""

    def call(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    return call


# (phase, where the signal is sent from, the signal): build, a stage's set-up (the dense-cache wait), evaluate,
# report. A single SIGINT in build was logged as "Ctrl-C twice" before.
PHASES = [("build", runner, "build_parts", signal.SIGINT), ("train", train_stage, "reuse_or_train", signal.SIGTERM),
          ("evaluate", evaluate_stage, "evaluate_models", signal.SIGTERM), ("report", runner, "_report", signal.SIGINT)]


@pytest.mark.parametrize(("phase", "module", "name", "signum"), PHASES, ids=[p[0] for p in PHASES])
def test_a_signal_in_any_phase_stops_the_run_naming_it(phase: str, module: Any, name: str, signum: int,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       default_signals: None) -> None:
    data = _config()
    cfg = load_run_config(data)
    run_dir = tmp_path / "run"
    monkeypatch.setattr(module, name, _signalling(getattr(module, name), signum))
    with pytest.raises(Interrupted) as caught:
        runner.run(cfg, data, [], run_dir, Console(file=io.StringIO()), tmp_path / "cache")
    assert caught.value.where == f"the {phase} phase"
    status = json.loads((run_dir / "status.json").read_text())
    name_ = signal.Signals(signum).name
    assert (status["status"], status["stage"], status["signal"]) == ("interrupted", phase, signum)
    assert status["error"] == (f"interrupted by {name_} at the {phase} phase; to continue: progprune resume "
                               f"{run_dir}")
    assert not (run_dir / "results.json").exists()
    # The handlers are the ones from before the run again, and the folder resumes to a complete run.
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    monkeypatch.undo()
    assert runner.run(cfg, data, [], run_dir, Console(file=io.StringIO()), tmp_path / "cache")["status"] == "complete"
    assert json.loads((run_dir / "status.json").read_text())["status"] == "complete"


def test_sigterm_during_evaluate_exits_143_with_status_interrupted(tmp_path: Path) -> None:
    # Timing made long (many passes over every timing sample at batch 1), so the signal sent on the line that opens
    # the timing lands inside it.
    slow = ["evaluate.repeats=400", "evaluate.min_repeats=400", "evaluate.target_spread=null",
            "evaluate.timing_samples=null"]
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([PROGPRUNE, "train", *FAST, *slow, f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    for line in proc.stdout:
        if re.search(r"evaluate: timing \d+ models", line):
            proc.send_signal(signal.SIGTERM)
            break
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert err == ("progprune: interrupted by SIGTERM at the evaluate phase; resume with progprune resume\n")
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["status"], status["stage"]) == ("interrupted", "evaluate")
    assert not (run_dir / "results.json").exists()
