"""schedule.max_drop (§7.1): a pruning step waits while validation accuracy is too far below the dense model's."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from rich.console import Console

from progprune_cli.config import load_run_config
from progprune_cli.errors import UserError
from progprune_cli.stages import gate
from progprune_cli.parts import build_parts
from progprune_cli.stages.io import StageIO
from progprune_cli.stages.base import Produced, RunContext
from progprune_cli.stages.prune import Prune
from progprune_cli.stages.train import Train

BASE = ["+strategy=weight", "strategy.sparsity=0.6", "dataset=synthetic", "model=mlp", "schedule=linear",
        "train.epochs=1", "prune.epochs=4"]


def config(*overrides: str) -> dict:
    with initialize_config_module(config_module="progprune_cli.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*BASE, *overrides])
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def test_held_steps_wait_and_say_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = build_parts(load_run_config(config("schedule.max_drop=0.05")))
    stage_io = StageIO(tmp_path, Console(file=io.StringIO()))
    run = RunContext(parts, stage_io)
    dense = Train().run(run, Produced(), None)
    # Scripted val accuracies: the dense reference, then one per pruning step (linear: 0, 0.2, 0.4, 0.6).
    accuracies = iter([0.90, 0.90, 0.84, 0.86, 0.50])
    monkeypatch.setattr(gate, "evaluate", lambda *args, **kwargs: (next(accuracies), 0.0))
    pruning = Prune().run(run, Produced(original=dense), None).pruning
    steps = pruning.steps
    assert [s.held for s in steps] == [False, True, False, True]
    assert [s.target for s in steps] == pytest.approx([0.0, 0.2, 0.4, 0.6])
    # A held step removes nothing; the next admitted one catches up to its own target.
    assert [s.achieved for s in steps] == pytest.approx([0.0, 0.0, 0.4, 0.4], abs=0.01)
    assert pruning.achieved_sparsity == pytest.approx(0.4, abs=0.01)
    assert pruning.notes[-1] == ("schedule.max_drop=0.05: 2 of 4 steps held because val accuracy fell too far; "
                                 "final sparsity 40.0% of a 60.0% target")
    log = (tmp_path / "run.log").read_text()
    assert "prune step 2 (epoch 1): held, val accuracy 84.00% is more than 5.00% below the dense model's 90.00%" in log


def test_without_max_drop_nothing_is_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = build_parts(load_run_config(config()))
    stage_io = StageIO(tmp_path, Console(file=io.StringIO()))
    run = RunContext(parts, stage_io)
    dense = Train().run(run, Produced(), None)
    monkeypatch.setattr(gate, "evaluate", lambda *args, **kwargs: pytest.fail("no gate, no extra evaluation"))
    pruning = Prune().run(run, Produced(original=dense), None).pruning
    assert not any(s.held for s in pruning.steps)
    assert pruning.achieved_sparsity == pytest.approx(0.6, abs=0.01)


def test_max_drop_must_be_a_fraction() -> None:
    with pytest.raises(UserError) as error:
        load_run_config(config("schedule.max_drop=1.5"))
    assert str(error.value) == "schedule.max_drop: got 1.5; must be in [0, 1)"
