"""Calibration batches (activation, taylor, wanda, sparsegpt, heads' taylor) are a seeded shuffle of the training
split, the same at every schedule step, never simply its first batches."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch.utils.data import TensorDataset

from conftest import composed, dataset_splits
from progprune_cli.config import load_run_config
from progprune_cli.data import Batches
from progprune_cli.parts import build_parts
from progprune_cli.pruning.strategies.calibration import calibration_loader
from progprune_cli.stages.base import Produced, RunContext
from progprune_cli.stages.io import StageIO
from progprune_cli.stages.prune import Prune
from progprune_cli.stages.train import Train

CPU = torch.device("cpu")


def _labels(loader, count: int) -> list[list[int]]:
    return [y.tolist() for _, y in list(loader)[:count]]


def test_a_class_sorted_dataset_is_calibrated_on_every_class_the_same_way_each_time():
    # A user's Dataset sorted by class: its first 4 batches of 8 would all be class 0.
    sorted_by_class = TensorDataset(torch.arange(64.0)[:, None], torch.arange(64) // 32)
    loader = calibration_loader(sorted_by_class, 8, seed=0, device=CPU)
    first = _labels(loader, 4)
    assert {label for batch in first for label in batch} == {0, 1}
    assert _labels(loader, 4) == first  # read again (the next schedule step): the same samples
    again = _labels(calibration_loader(sorted_by_class, 8, seed=0, device=CPU), 4)
    other = _labels(calibration_loader(sorted_by_class, 8, seed=1, device=CPU), 4)
    assert again == first and other != first


def test_a_texts_calibration_windows_are_not_its_first_pages():
    split = dataset_splits("text", {"block_size": 32}, 0).train_eval
    first_windows = torch.stack([split[i][0] for i in range(4)])
    x, _ = next(iter(calibration_loader(split, 4, seed=0, device=CPU)))
    assert x.shape == first_windows.shape
    assert not torch.equal(x, first_windows)


def test_the_prune_stage_scores_every_step_on_the_same_shuffled_batches(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_run_config(composed("+strategy=activation", "strategy.batches=2", "dataset=synthetic", "model=mlp",
                                   "train.epochs=1", "prune.epochs=3", "schedule=linear"))
    parts = build_parts(cfg)
    run = RunContext(parts, StageIO(tmp_path, Console(file=io.StringIO())))
    dense = Train().run(run, Produced(), None)
    seen: list[list[list[int]]] = []
    step = type(parts.strategy).step

    def spying(self, model, masks, target, progress, ctx):  # type: ignore[no-untyped-def]
        seen.append(_labels(ctx.loader, 2))  # what the step's scores are computed on
        return step(self, model, masks, target, progress, ctx)

    monkeypatch.setattr(type(parts.strategy), "step", spying)
    Prune().run(run, Produced(original=dense), None)
    split = parts.data.train_eval
    shuffled = _labels(calibration_loader(split, cfg.prune.batch_size, cfg.seed, CPU), 2)
    first = _labels(Batches(split, cfg.prune.batch_size), 2)
    assert len(seen) == 3 and seen == [shuffled] * 3
    assert shuffled != first
