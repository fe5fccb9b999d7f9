"""Calibration batches (activation, taylor, wanda, sparsegpt, heads' taylor) are a seeded shuffle of the training
split, the same at every schedule step, never simply its first batches."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from conftest import dataset_splits
from progprune_cli.pruning.strategies.calibration import calibration_loader

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
