"""Adding a strategy is one module and one YAML: a copy of the package gets both, nothing else, and runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

import progprune_cli
from conftest import TINY

pytestmark = pytest.mark.slow

MODULE = '''"""`power`: |w|^p scores (p = 1 is magnitude pruning): a strategy added as one module and one YAML."""

from dataclasses import dataclass

from omegaconf import MISSING

from progprune_cli.config import StrategyConfig
from progprune_cli.pruning.strategies.base import STRATEGIES, Strategy


@dataclass
class PowerConfig(StrategyConfig):
    power: float = MISSING


@STRATEGIES.register("power", PowerConfig)
class Power(Strategy):
    def scores(self, model, masks, ctx):
        params = dict(model.named_parameters())
        return {name: params[name].detach().abs().pow(self.cfg.power).cpu() for name in masks}
'''

YAML = """# |w|^power, one ranking per layer: the example of a strategy added as one module and this file.
defaults:
  - base_power
  - _self_
name: power
power: 2.0
"""


def test_a_strategy_added_as_one_module_and_one_yaml_runs(tmp_path: Path) -> None:
    package = tmp_path / "src" / "progprune_cli"
    shutil.copytree(Path(progprune_cli.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(Path(str(resources.files("progprune_cli.conf"))), package / "conf",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (package / "pruning" / "strategies" / "power.py").write_text(MODULE)
    (package / "conf" / "strategy" / "power.yaml").write_text(YAML)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "src")}

    def progprune(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "progprune_cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    done = progprune("train", *TINY, "evaluate.dense_baseline=false", "+strategy=power", "strategy.power=3",
                     f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["pruning"]["strategy"] == "power" and results["config"]["strategy"]["power"] == 3.0
    bad = progprune("train", *TINY, "+strategy=power", "strategy.power=high")
    assert (bad.returncode, bad.stderr) == (2, "progprune: error: strategy.power: got 'high'; expected a number\n")
