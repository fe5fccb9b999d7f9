"""Experiment presets and what a diverging run tells its user: the hint names the key that set the lr."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch import nn
from torch.utils.data import TensorDataset

from conftest import progprune
from progprune_cli.config import OptimizerConfig
from progprune_cli.optim.losses import cross_entropy
from progprune_cli.stages.io import StageIO
from progprune_cli.stages.loop import Diverged, Loop
from test_data_loaders import write_mnist

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


def test_a_preset_run_on_a_small_mnist_split_records_it_and_is_not_compared(workdir: Path) -> None:
    """The user's case: an MNIST preset on far fewer training images than the paper's figure assumes."""
    write_mnist(workdir / "mnist", n_train=40, n_test=10)
    run_dir = workdir / "run"
    done = progprune("train", "experiment=lenet300_mnist", f"dataset.root={workdir / 'mnist'}",
                     "dataset.download=false", "train.epochs=1", "prune.epochs=1", "finetune.epochs=1",
                     "evaluate.dense_baseline=false", "evaluate.repeats=1", "evaluate.warmup=0",
                     f"hydra.run.dir={run_dir}", cwd=workdir)
    assert done.returncode == 0, done.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["run"]["train_samples"] == 36  # 40 images, 10% held out for validation
    rows = [line for line in (run_dir / "results.md").read_text().splitlines() if "Han et al. 2015" in line]
    assert [row.rsplit("|", 2)[1].strip() for row in rows] == [
        "not comparable: trained on 36 images; the figure assumes 54,000",
        "not comparable: trained on 36 images; the figure assumes 54,000",
        "reached"]  # weights kept: no data involved
