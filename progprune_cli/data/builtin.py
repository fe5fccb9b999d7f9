"""torchvision's built-in datasets (MNIST family, CIFAR, SVHN): find → download → decode once (cached) → split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol

import torch
from omegaconf import MISSING

from progprune_cli.data import cache
from progprune_cli.data.base import DataInfo, DataSplits, register, split_indices
from progprune_cli.data.cache import Decoded
from progprune_cli.data.fetch import download, root_path
from progprune_cli.data.splits import Augment, TensorSplit, check_stats
from progprune_cli.config import DatasetConfig
from progprune_cli.errors import UserError

SPLITS = ("train", "test")


class Files(Protocol):
    """Where one torchvision dataset's files live under `root`, how to fetch them and how to decode a split."""

    name: str  # the registry key, also the cache files' prefix
    title: str  # the dataset's name in messages
    channels: int

    def folder(self, root: Path) -> Path:
        """The folder the files are expected in (named in messages)."""

    def missing(self, root: Path) -> list[str]:
        """Names of the required files that are not there (refusing, in one line, a layout we do not read)."""

    def fetch(self, root: Path) -> None:
        """torchvision's own download (its mirrors and md5 checksums) into `root`."""

    def by_hand(self, root: Path) -> str:
        """How to get the files without progprune's help."""

    def sources(self, root: Path, split: str) -> list[Path]:
        """The files a split is decoded from (they key its cache)."""

    def verify(self, root: Path) -> None:
        """Checksum the files (before a decode only): a one-line UserError naming a corrupt one."""

    def decode(self, root: Path, split: str) -> Decoded:
        """Read the split with torchvision; a one-line UserError naming the file on any failure."""


def check_split(val_fraction: float, limit: int | None = None) -> None:
    """Range checks on the split options that their types cannot express."""
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"dataset.val_fraction: got {val_fraction}; must be in (0, 1)")
    if limit is not None and limit < 1:
        raise UserError(f"dataset.limit: got {limit}; must be >= 1 or null")


def carve_val(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (train, val) index split of range(n); both parts must be non-empty."""
    train, val = split_indices(n, (1.0 - val_fraction, val_fraction), seed)
    if len(train) == 0 or len(val) == 0:
        raise UserError(f"dataset.val_fraction: got {val_fraction}; leaves an empty split of {n} training samples")
    return train, val


def load(files: Files, root: Path, download_on: bool) -> dict[str, Decoded]:
    """Both splits decoded, from the cache when its key still matches the files; missing files are downloaded
    when `download_on`, else a one-line error says which file is missing where."""
    if root.exists() and not root.is_dir():
        raise UserError(f"dataset.root: {root} is not a folder; {files.by_hand(root)}")
    if not root.exists() and not download_on:
        raise UserError(f"dataset.root: {root} does not exist and dataset.download is false; set it to true, "
                        f"or {files.by_hand(root)}")
    missing = files.missing(root)
    if missing:
        if not download_on:
            raise UserError(f"dataset.root: {files.folder(root)} has no {missing[0]} and dataset.download is false; "
                            f"set it to true, or {files.by_hand(root)}")
        download(lambda: files.fetch(root), lambda: not files.missing(root), files.title, files.folder(root),
                 files.by_hand(root))
    paths = {split: cache.cache_path(root, files.name, split, files.sources(root, split)) for split in SPLITS}
    decoded = {split: cache.read(path) for split, path in paths.items()}
    if any(d is None for d in decoded.values()):
        files.verify(root)  # checksums only before a decode: a cache hit already proved these files good
    for split, path in paths.items():
        if decoded[split] is None:
            decoded[split] = files.decode(root, split)
            cache.write(path, decoded[split])
    return decoded  # type: ignore[return-value]


def make_splits(decoded: dict[str, Decoded], opts: Any, seed: int, augment: Augment | None) -> DataSplits:
    """Keep the first `limit` training images (quick runs), carve val from them by `seed`, test as in the files."""
    train, test = decoded["train"], decoded["test"]
    full = TensorSplit(train.images, train.labels, tuple(opts.mean), tuple(opts.std))
    if opts.limit is not None:
        full = full.subset(torch.arange(min(opts.limit, len(full))))
    train_idx, val_idx = carve_val(len(full), opts.val_fraction, seed)
    _, c, h, w = train.images.shape
    info = DataInfo(channels=c, height=h, width=w, num_classes=len(train.classes), classes=train.classes)
    return DataSplits(train=full.subset(train_idx, augment), val=full.subset(val_idx),
                      test=TensorSplit(test.images, test.labels, tuple(opts.mean), tuple(opts.std)), info=info)


@dataclass
class TorchvisionConfig(DatasetConfig):
    """A dataset torchvision reads (the values are in its YAML, conf/dataset/<name>.yaml)."""

    root: str = MISSING
    download: bool = MISSING
    val_fraction: float = MISSING
    limit: Optional[int] = MISSING
    mean: list[float] = MISSING
    std: list[float] = MISSING


@dataclass
class AugmentedConfig(TorchvisionConfig):
    """A torchvision dataset whose training images may be augmented (cropped, flipped)."""

    augment: bool = MISSING


def register_builtin(files: Files, augment: Augment | None = None) -> None:
    """Register `files.name` as a dataset with TorchvisionConfig's keys (and AugmentedConfig's `augment`, which
    turns `augment` on for the training split, when one is given)."""

    def check(cfg: TorchvisionConfig) -> None:
        check_split(cfg.val_fraction, cfg.limit)  # before reading: a typo should not cost a 60,000-image load
        check_stats(cfg.mean, cfg.std, files.channels)

    def prepare(cfg: TorchvisionConfig) -> None:
        check(cfg)
        load(files, root_path(cfg.root), cfg.download)

    @register(files.name, prepare, TorchvisionConfig if augment is None else AugmentedConfig)
    def build(cfg: TorchvisionConfig, seed: int) -> DataSplits:
        check(cfg)
        decoded = load(files, root_path(cfg.root), cfg.download)
        return make_splits(decoded, cfg, seed, augment if getattr(cfg, "augment", False) else None)
