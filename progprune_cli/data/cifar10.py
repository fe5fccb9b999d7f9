"""CIFAR-10 from the official python pickles on disk (never downloaded), with crop/flip train augmentation."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from progprune_cli.data.base import DATASETS, Augmented, DataInfo, DataSplits
from progprune_cli.data.mnist import check_split, existing_dir, train_val
from progprune_cli.config.strict import from_dict
from progprune_cli.errors import UserError

_HINT = "download CIFAR-10 (python version) there (progprune never downloads)"
_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


@dataclass(frozen=True)
class Options:
    root: str = "data/cifar10"
    val_fraction: float = 0.1
    augment: bool = True
    limit: int | None = None


@DATASETS.register("cifar10")
def build(options: dict[str, Any], seed: int) -> DataSplits:
    opts = from_dict(Options, options, "dataset", ("name",))
    check_split(opts.val_fraction, opts.limit)
    folder = _batch_folder(existing_dir(opts.root, _HINT))
    for name in (*_TRAIN, "test_batch"):  # check all six up front so a partial download fails before any loading
        if not (folder / name).is_file():
            raise UserError(f"dataset.root: {folder} has no {name}; {_HINT}")
    x, y = (torch.cat(parts) for parts in zip(*(_read_batch(folder / name) for name in _TRAIN)))
    train, val = train_val(x, y, opts.limit, opts.val_fraction, seed)
    test = TensorDataset(*_read_batch(folder / "test_batch"))
    info = DataInfo(channels=3, height=32, width=32, num_classes=10)
    # Augment train only: val/test must score the images as they are.
    train_set: Dataset = Augmented(train, augmentation()) if opts.augment else train
    return DataSplits(train=train_set, val=val, test=test, info=info)


def augmentation() -> Callable[[torch.Tensor], torch.Tensor]:
    """Seed §6.1's random crop and flip; tensor transforms, drawing from torch's global (run-seeded) RNG."""
    from torchvision import transforms  # imported here: torchvision takes seconds to load, most runs skip it

    return transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()])


def _batch_folder(root: Path) -> Path:
    """The extracted archive's own folder when `root` is its parent, else `root` itself."""
    nested = root / "cifar-10-batches-py"
    return nested if nested.is_dir() else root


def _read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, 32, 32) in [0, 1] and labels (N,) of one pickled batch."""
    try:
        with path.open("rb") as f:
            # The official format is a pickle (as torchvision reads it); only load files you downloaded yourself.
            batch = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise UserError(f"dataset.root: {path} is not a CIFAR-10 python batch ({error})") from None
    if not _is_batch(batch):
        raise UserError(f"dataset.root: {path} is not a CIFAR-10 python batch "
                        "(needs b'data' uint8 N×3072 and N b'labels' in 0..9)")
    x = torch.from_numpy(batch[b"data"]).reshape(-1, 3, 32, 32).float().div_(255.0)
    return x, torch.tensor(batch[b"labels"], dtype=torch.long)


def _is_batch(batch: Any) -> bool:
    """The official layout: b'data' is uint8 (N, 3072) (R, G, B planes of 32×32) and b'labels' N ints 0..9."""
    if not isinstance(batch, dict):
        return False
    data, labels = batch.get(b"data"), batch.get(b"labels")
    return (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072
            and isinstance(labels, list) and len(labels) == len(data) and all(0 <= v <= 9 for v in labels))
