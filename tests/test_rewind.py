"""Lottery-ticket rewinding: after a pruning step the surviving weights are reset to their saved values."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from rich.console import Console

from progprune_cli.config import load_run_config
from progprune_cli.parts import build_parts
from progprune_cli.stages.io import StageIO
from progprune_cli.stages.base import Produced, RunContext
from progprune_cli.stages.prune import Prune
from progprune_cli.stages.train import Train

BASE = ["+strategy=weight", "dataset=synthetic", "model=mlp", "schedule=oneshot", "prune.epochs=1",
        "train.epochs=2"]


def parts(*overrides: str):
    with initialize_config_module(config_module="progprune_cli.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*BASE, *overrides])
    return build_parts(load_run_config(OmegaConf.to_container(cfg, resolve=True)))  # type: ignore[arg-type]


def test_rewind_to_init_resets_surviving_weights(tmp_path: Path) -> None:
    stage_io = StageIO(tmp_path, Console(file=io.StringIO()))
    # Train normally (saving the init weights), then prune with a learning rate too small to move a float32
    # weight, so what the prune stage leaves is exactly what the rewind set.
    dense = Train().run(RunContext(parts("schedule.rewind=init"), stage_io), Produced(), None)
    original = dense.model
    frozen = parts("schedule.rewind=init", "optimizer=sgd", "optimizer.lr=1e-30", "optimizer.momentum=0.0")
    result = Prune().run(RunContext(frozen, stage_io), Produced(original=dense), None)
    model, pruning = result.model, result.pruning
    init = stage_io.load("rewind")["model"]
    masks = stage_io.load("pruned")["masks"]
    assert pruning.steps[0].achieved == 0.5
    for name, param in model.named_parameters():
        expected = init[name] * masks[name] if name in masks else init[name]
        assert torch.equal(param.detach().cpu(), expected), name
        assert not torch.equal(init[name], original.state_dict()[name])  # training did move it


def test_without_rewind_surviving_weights_keep_their_trained_values(tmp_path: Path) -> None:
    stage_io = StageIO(tmp_path, Console(file=io.StringIO()))
    dense = Train().run(RunContext(parts(), stage_io), Produced(), None)
    trained = {k: v.detach().clone() for k, v in dense.model.state_dict().items()}
    frozen = parts("optimizer=sgd", "optimizer.lr=1e-30", "optimizer.momentum=0.0")
    model = Prune().run(RunContext(frozen, stage_io), Produced(original=dense), None).model
    masks = stage_io.load("pruned")["masks"]
    for name, param in model.named_parameters():
        expected = trained[name] * masks[name] if name in masks else trained[name]
        assert torch.equal(param.detach().cpu(), expected), name
    assert not (tmp_path / "checkpoints" / "rewind.pt").exists()
