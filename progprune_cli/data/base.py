"""What every dataset returns (train/val/test splits plus shape info) and the shared loader helpers."""

from __future__ import annotations

from dataclasses import dataclass
import itertools
from collections.abc import Iterator
from typing import Any, Callable, Protocol

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from progprune_cli.config import DatasetConfig
from progprune_cli.registry import Registry


@dataclass(frozen=True)
class DataInfo:
    """Shape of one sample and the class count: models read these, never hard-coded sizes."""

    channels: int
    height: int
    width: int
    num_classes: int


@dataclass(frozen=True)
class DataSplits:
    """Train, validation and test sets of one dataset; the split is fixed by the run's seed."""

    train: Dataset
    val: Dataset
    test: Dataset
    info: DataInfo

    @property
    def train_eval(self) -> Dataset:
        """The training set without augmentation: accuracy on it must not depend on random crops."""
        return self.train.base if isinstance(self.train, Augmented) else self.train


class DatasetBuilder(Protocol):
    def __call__(self, options: dict[str, Any], seed: int) -> DataSplits: ...


DATASETS: Registry[DatasetBuilder] = Registry("dataset")


def build_data(cfg: DatasetConfig, seed: int) -> DataSplits:
    """Look the dataset up by name and build its splits (its options are validated there)."""
    return DATASETS.get(cfg.name)(dict(cfg.options), seed)


def split_indices(n: int, fractions: tuple[float, ...], seed: int) -> list[torch.Tensor]:
    """A seeded permutation of range(n) cut into consecutive parts of the given fractions (last gets the rest)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts, start = [], 0
    for fraction in fractions[:-1]:
        size = int(round(fraction * n))
        parts.append(perm[start : start + size])
        start += size
    parts.append(perm[start:])
    return parts


class Augmented(Dataset):
    """Applies a per-sample tensor transform on top of another dataset (train-time augmentation)."""

    def __init__(self, base: Dataset, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
        x, y = self.base[i]
        return self.transform(x), y


def tensor_splits(x: torch.Tensor, y: torch.Tensor, fractions: tuple[float, float, float], seed: int,
                  num_classes: int) -> DataSplits:
    """Split in-memory tensors (N, C, H, W) / (N,) into train/val/test by a seeded permutation."""
    parts = split_indices(len(x), fractions, seed)
    sets = [TensorDataset(x[p], y[p]) for p in parts]
    info = DataInfo(channels=x.shape[1], height=x.shape[2], width=x.shape[3], num_classes=num_classes)
    return DataSplits(train=sets[0], val=sets[1], test=sets[2], info=info)


@dataclass(frozen=True)
class Batches:
    """Re-iterable batches of one split, on `device`: what the training loop, evaluation and calibration read.

    The order of a shuffled pass depends on `seed` alone, and `start` skips that many batches of it, so a stage
    resumed mid-epoch sees exactly the batches an uninterrupted run would have seen next.
    """

    dataset: Dataset
    batch_size: int
    shuffle: bool = False
    seed: int = 0
    device: torch.device = torch.device("cpu")
    start: int = 0

    def __len__(self) -> int:
        return max(steps_per_epoch(self.dataset, self.batch_size) - self.start, 0)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed) if self.shuffle else None
        loader = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=self.shuffle, generator=generator,
                            num_workers=0)
        for x, y in itertools.islice(loader, self.start, None):
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def inputs(dataset: Dataset, limit: int | None = None) -> torch.Tensor:
    """The first `limit` (all, when None) inputs of a split as one tensor, as the model sees them (timing)."""
    count = len(dataset) if limit is None else min(limit, len(dataset))  # type: ignore[arg-type]
    return torch.stack([dataset[i][0] for i in range(count)])  # type: ignore[index]


def steps_per_epoch(dataset: Dataset, batch_size: int) -> int:
    """Optimizer steps in one epoch (the last batch may be short)."""
    return -(-len(dataset) // batch_size)  # type: ignore[arg-type]
