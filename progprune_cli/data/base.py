"""What every dataset returns (train/val/test splits plus shape info) and the shared loader helpers."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from progprune_cli.config import DatasetConfig
from progprune_cli.data.splits import Split
from progprune_cli.registry import Registry


@dataclass(frozen=True)
class DataInfo:
    """Shape of one sample and the class count: models read these, never hard-coded sizes."""

    channels: int
    height: int
    width: int
    num_classes: int
    classes: tuple[str, ...] = ()  # label i is classes[i]; empty when a caller builds a DataInfo by hand
    # Text: a sample is `width` token ids in [0, vocab) and its target the next `width` ids (num_classes == vocab,
    # channels == height == 1); 0 for images.
    vocab: int = 0
    tokenizer_folder: str = ""  # text with dataset.tokenizer=hf: the folder whose tokenizer made the ids (messages)

    @property
    def shape(self) -> tuple[int, ...]:
        """One sample's shape without the batch dim: (channels, height, width), or (block,) of token ids."""
        return (self.width,) if self.vocab else (self.channels, self.height, self.width)

    @property
    def describe(self) -> str:
        """The inputs in words, for messages: `3×32×32` or `sequences of 64 tokens (vocabulary 97)`."""
        if self.vocab:
            return f"sequences of {self.width} tokens (vocabulary {self.vocab})"
        return f"{self.channels}×{self.height}×{self.width}"

    def example(self, n: int, seed: int | None = None) -> torch.Tensor:
        """`n` inputs of the data's shape and dtype: zeros, or seeded random values (token ids for text)."""
        if self.vocab:
            if seed is None:
                return torch.zeros((n, *self.shape), dtype=torch.long)
            return torch.randint(self.vocab, (n, *self.shape), generator=torch.Generator().manual_seed(seed))
        if seed is None:
            return torch.zeros((n, *self.shape))
        return torch.randn((n, *self.shape), generator=torch.Generator().manual_seed(seed))

    def output_shape(self, n: int) -> tuple[int, ...]:
        """What a model must return for `n` inputs: one logit per class, or per token and position."""
        return (n, self.width, self.vocab) if self.vocab else (n, self.num_classes)


@dataclass(frozen=True)
class DataSplits:
    """Train, validation and test sets of one dataset; the split is fixed by the run's seed."""

    train: Dataset
    val: Dataset
    test: Dataset
    info: DataInfo
    # The data's content by hash where its config alone does not fix it (a text file the user may edit): the dense
    # cache keys on it, so an edited file never reuses a model trained on the old one.
    fingerprint: str | None = None

    @property
    def train_eval(self) -> Dataset:
        """The training set without augmentation: accuracy on it must not depend on random crops."""
        return self.train.plain() if isinstance(self.train, Split) else self.train


@dataclass(frozen=True)
class DatasetEntry:
    """One registered dataset: `build` makes the splits, `prepare` only downloads, decodes, caches and checks."""

    build: Callable[[Any, int], DataSplits]
    prepare: Callable[[Any], None]

    def __call__(self, cfg: DatasetConfig, seed: int) -> DataSplits:
        return self.build(cfg, seed)


DATASETS: Registry[DatasetEntry] = Registry("dataset", DatasetConfig)


def register(name: str, prepare: Callable[[Any], None],
             schema: type[DatasetConfig]) -> Callable[[Callable[..., DataSplits]], Callable[..., DataSplits]]:
    """Decorator: register `build` under `name` with its `prepare` and its keys' schema."""

    def add(build: Callable[[Any, int], DataSplits]) -> Callable[[Any, int], DataSplits]:
        DATASETS.register(name, schema)(DatasetEntry(build, prepare))
        return build

    return add


def build_data(cfg: DatasetConfig, seed: int) -> DataSplits:
    """Look the dataset up by name and build its splits (its values are range-checked there)."""
    return DATASETS.get(cfg.name)(cfg, seed)


def prepare_data(cfg: DatasetConfig) -> None:
    """Everything build_data needs from disk or network, checked now: values, folders, files (downloaded when
    allowed), decoding into the cache. Cheap once cached; raises a one-line UserError on any problem."""
    DATASETS.get(cfg.name).prepare(cfg)


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


def tensor_splits(x: torch.Tensor, y: torch.Tensor, fractions: tuple[float, float, float], seed: int,
                  num_classes: int) -> DataSplits:
    """Split in-memory tensors (N, C, H, W) / (N,) into train/val/test by a seeded permutation."""
    parts = split_indices(len(x), fractions, seed)
    sets = [TensorDataset(x[p], y[p]) for p in parts]
    info = DataInfo(channels=x.shape[1], height=x.shape[2], width=x.shape[3], num_classes=num_classes,
                    classes=tuple(str(i) for i in range(num_classes)))
    return DataSplits(train=sets[0], val=sets[1], test=sets[2], info=info)


@dataclass(frozen=True)
class Batches:
    """Re-iterable batches of one split, on `device`: what the training loop, evaluation and calibration read.

    The order of a shuffled pass depends on `seed` alone, and `start` skips that many batches of it, so a stage
    resumed mid-epoch sees exactly the batches an uninterrupted run would have seen next. A `Split` (the image
    datasets) makes its batches itself, with augmentation drawn per (seed, batch index); any other Dataset goes
    through a DataLoader.

    `shard=(rank, world_size)` (torchrun): every batch is still one batch of `batch_size` of the same order (the
    global batch; `start` and len() count global batches), of which this rank yields every world_size-th sample,
    starting at its rank; a rank whose share of a batch is empty (a last batch smaller than the world) skips it.
    """

    dataset: Dataset
    batch_size: int
    shuffle: bool = False
    seed: int = 0
    device: torch.device = torch.device("cpu")
    start: int = 0
    shard: tuple[int, int] | None = None

    def __len__(self) -> int:
        n = len(self.dataset)  # type: ignore[arg-type]
        total = steps_per_epoch(self.dataset, self.batch_size) if self.shuffle else -(-n // self.batch_size)
        return max(total - self.start, 0)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # len() batches: a shuffled (training) pass stops before a last batch of one sample (see steps_per_epoch).
        return itertools.islice(self._batches(torch.device(self.device)), len(self))

    def _batches(self, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.shard is not None and self.shard[1] > 1:
            yield from self._shard(device, *self.shard)
            return
        if isinstance(self.dataset, Split):
            yield from self.dataset.batches(self.batch_size, self.shuffle, self.seed, device, self.start)
            return
        generator = torch.Generator().manual_seed(self.seed) if self.shuffle else None
        loader = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=self.shuffle, generator=generator,
                            num_workers=0)
        for x, y in itertools.islice(loader, self.start, None):
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def _shard(self, device: torch.device, rank: int, world: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(self.dataset, Split):
            # The whole global batch is made, then sliced: its augmentation is drawn per (seed, batch) for the batch
            # as a whole, so a rank's samples are augmented exactly as one process would augment them (the price:
            # every rank reads and augments the whole batch).
            for x, y in self.dataset.batches(self.batch_size, self.shuffle, self.seed, device, self.start):
                if len(y) > rank:
                    yield x[rank::world].contiguous(), y[rank::world].contiguous()
            return
        # Only this rank's samples are read. The global batches' indices come from the very DataLoader the
        # unsharded path uses, run over the indices (its seeded generator draws alike), then strided by rank.
        generator = torch.Generator().manual_seed(self.seed) if self.shuffle else None
        indices = DataLoader(range(len(self.dataset)), batch_size=self.batch_size,  # type: ignore[arg-type]
                             shuffle=self.shuffle, generator=generator, num_workers=0)
        mine = [batch[rank::world].tolist() for batch in itertools.islice(indices, self.start, None)]
        loader = DataLoader(self.dataset, batch_sampler=[b for b in mine if b], num_workers=0)
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def inputs(dataset: Dataset, limit: int | None = None) -> torch.Tensor:
    """The first `limit` (all, when None) inputs of a split as one tensor, as the model sees them (timing)."""
    if isinstance(dataset, Split):
        return dataset.inputs(limit)
    count = len(dataset) if limit is None else min(limit, len(dataset))  # type: ignore[arg-type]
    return torch.stack([dataset[i][0] for i in range(count)])  # type: ignore[index]


def sample_of(dataset: Dataset, count: int | None, seed: int) -> Dataset:
    """`count` samples of `dataset` chosen by a seeded permutation, in index order (all of it when None or when it
    has no more): every model is measured on the same ones."""
    size = len(dataset)  # type: ignore[arg-type]
    if count is None or count >= size:
        return dataset
    chosen = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:count].sort().values
    subset = getattr(dataset, "subset", None)  # an in-memory split copies its rows and keeps its fast batches
    return subset(chosen) if subset is not None else Subset(dataset, chosen.tolist())


def steps_per_epoch(dataset: Dataset, batch_size: int) -> int:
    """Optimizer steps in one training epoch: ceil(n / batch_size), except that a last batch of a single sample is
    left out — batch-norm cannot train on one sample, and the shuffle leaves out another sample every epoch."""
    full, rest = divmod(len(dataset), batch_size)  # type: ignore[arg-type]
    return full + (1 if rest > 1 or (rest == 1 and full == 0) else 0)
