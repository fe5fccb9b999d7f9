"""Experiment presets and what a diverging run tells its user: the hint names the key that set the lr."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch import nn
from torch.utils.data import TensorDataset

from progprune_cli.config import OptimizerConfig
from progprune_cli.optim.losses import cross_entropy
from progprune_cli.stages.io import StageIO
from progprune_cli.stages.loop import Diverged, Loop

# (stage, the stage's own lr or None) → the key the hint must name, and the lr it must quote
LR_KEYS = [
    ("train", None, "optimizer.lr", "0.05"),
    ("train", 0.5, "train.lr", "0.5"),
    ("prune", None, "optimizer.lr", "0.05"),
    ("prune", 0.5, "prune.lr", "0.5"),
    ("finetune", 2e12, "finetune.lr", "2e+12"),
    ("dense_long", 0.5, "train.lr", "0.5"),  # dense_long trains at train's lr
    ("dense_long", None, "optimizer.lr", "0.05"),
]


@pytest.mark.parametrize(("stage", "lr", "key", "shown"), LR_KEYS)
def test_the_divergence_hint_names_the_key_that_set_the_lr(tmp_path: Path, stage: str, lr: float | None, key: str,
                                                           shown: str) -> None:
    infinite = TensorDataset(torch.full((24, 4), float("inf")), torch.arange(24) % 3)  # the first loss is NaN
    loop = Loop(nn.Linear(4, 3), infinite, infinite, OptimizerConfig(name="sgd", lr=0.05), cross_entropy,
                torch.device("cpu"), batch_size=8, io=StageIO(tmp_path, Console(file=io.StringIO())), stage=stage,
                seed=0, lr=lr, epochs=1)
    with pytest.raises(Diverged) as caught:
        loop.run(1)
    assert str(caught.value) == (
        f"{stage} epoch 1, step 1 of 3: the training loss is not finite; training diverged (lower {key}, now "
        f"{shown}, or set optimizer.clip_grad_norm); the last good checkpoint is kept")
