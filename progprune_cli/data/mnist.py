"""MNIST from the original IDX files on disk (never downloaded); also the train/val helpers other loaders share."""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from progprune_cli.data.base import DATASETS, DataInfo, DataSplits, split_indices
from progprune_cli.config.strict import from_dict
from progprune_cli.errors import UserError

_HINT = "download MNIST there (progprune never downloads)"
_IMAGES, _LABELS = 2051, 2049  # IDX magic: 0x0803 = unsigned bytes, 3 dims; 0x0801 = unsigned bytes, 1 dim


@dataclass(frozen=True)
class Options:
    root: str = "data/mnist"
    val_fraction: float = 0.1
    limit: int | None = None


@DATASETS.register("mnist")
def build(options: dict[str, Any], seed: int) -> DataSplits:
    opts = from_dict(Options, options, "dataset", ("name",))
    check_split(opts.val_fraction, opts.limit)  # before reading: a typo should not cost a 60,000-image load
    root = existing_dir(opts.root, _HINT)
    x, y = _read_pair(root, "train")
    train, val = train_val(x, y, opts.limit, opts.val_fraction, seed)
    test = TensorDataset(*_read_pair(root, "t10k"))
    info = DataInfo(channels=1, height=x.shape[2], width=x.shape[3], num_classes=10)
    return DataSplits(train=train, val=val, test=test, info=info)


def existing_dir(root: str, hint: str) -> Path:
    """`root` as an absolute folder path (so the message shows where we looked), or a one-line UserError."""
    path = Path(root).expanduser().absolute()
    if not path.is_dir():
        raise UserError(f"dataset.root: {path} {'is not a folder' if path.exists() else 'does not exist'}; {hint}")
    return path


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


def train_val(x: torch.Tensor, y: torch.Tensor, limit: int | None, val_fraction: float,
              seed: int) -> tuple[TensorDataset, TensorDataset]:
    """Keep the first `limit` training samples (quick runs), then carve the validation set from them."""
    if limit is not None:
        x, y = x[:limit], y[:limit]
    train, val = carve_val(len(x), val_fraction, seed)
    return TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val])


def _read_pair(root: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, H, W) in [0, 1] and labels (N,) of one IDX pair, checked against each other."""
    images_path = _find(root, f"{prefix}-images-idx3-ubyte")
    labels_path = _find(root, f"{prefix}-labels-idx1-ubyte")
    images, labels = _read_idx(images_path, _IMAGES), _read_idx(labels_path, _LABELS)
    if len(images) != len(labels):
        raise UserError(f"dataset.root: {images_path} has {len(images)} images "
                        f"but {labels_path} has {len(labels)} labels")
    if labels.max(initial=0) > 9:
        raise UserError(f"dataset.root: {labels_path} has label {labels.max()}; MNIST labels are 0..9")
    x = torch.from_numpy(images).unsqueeze(1).float().div_(255.0)
    return x, torch.from_numpy(labels).long()


def _find(root: Path, name: str) -> Path:
    """The file as-is or gzipped, in `root` or in torchvision's download layout `root/MNIST/raw`."""
    for folder in (root, root / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise UserError(f"dataset.root: {root} has no {name}[.gz]; {_HINT}")


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file; the header's magic and sizes must match the payload exactly."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as error:  # a cut-off download or a non-gzip file named .gz
        raise UserError(f"dataset.root: {path} cannot be unzipped ({error})") from None
    ndim = magic & 0xFF  # the magic's low byte is the number of dimensions
    header = 4 + 4 * ndim
    found = struct.unpack(">i", data[:4])[0] if len(data) >= 4 else None
    if found != magic:
        raise UserError(f"dataset.root: {path} has magic number {found}, expected {magic}; not an MNIST IDX file")
    shape = struct.unpack(f">{ndim}I", data[4:header]) if len(data) >= header else ()
    if len(shape) != ndim or len(data) - header != int(np.prod(shape)):
        raise UserError(f"dataset.root: {path} has {len(data) - header} data bytes, header shape {shape}; "
                        "the file is truncated or not MNIST")
    # A bytearray makes the array writable, which torch.from_numpy wants.
    return np.frombuffer(bytearray(data), dtype=np.uint8, offset=header).reshape(shape)
