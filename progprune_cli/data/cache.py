"""The decode cache: a split decoded once to uint8 tensors, kept in root/.progprune/ as one .pt file."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from progprune_cli.atomic import replace_atomically
from progprune_cli.checkpoints import load_checkpoint
from progprune_cli.hashing import short_hash

# Bump when the decoded content of any dataset changes, so old caches are not read as new ones.
FORMAT = 1
FOLDER = ".progprune"


@dataclass(frozen=True, eq=False)
class Decoded:
    """One whole split as read from its files: uint8 images (N, C, H, W), int64 labels (N,), class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]


def cache_path(root: Path, name: str, split: str, files: Iterable[Path], **settings: Any) -> Path:
    """Where the decoded split lives: <name>-<split>-<settings key>-<files key>.pt. The files key covers each source
    file's name, size and mtime, so a replaced file gives a new key rather than stale images; the settings key
    (e.g. image_size) lets runs with other settings keep their own cache side by side."""
    stats = []
    for path in files:
        info = path.stat()
        stats.append([str(path.relative_to(root)) if path.is_relative_to(root) else str(path), info.st_size,
                      info.st_mtime_ns])
    config = short_hash({"format": FORMAT, "name": name, "split": split, "settings": settings}, 8)
    return root / FOLDER / f"{name}-{split}-{config}-{short_hash(stats, 12)}.pt"


def read(path: Path, num_classes: int | None = None) -> Decoded | None:
    """The cached split, or None when absent, unreadable or not what a decode gives (then it is decoded again and
    rewritten): labels must lie in 0..num_classes-1 (by default, the number of class names it holds)."""
    try:
        # The checkpoint reader: weights_only (reading a cache never runs code), no link followed, no FIFO waited on.
        data = load_checkpoint(path)
        images, labels, classes = data["images"], data["labels"], data["classes"]
    except Exception:  # absent, a link, truncated, foreign, or a pickle with code (never run): only a cache miss
        return None
    if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.dim() == 4
            and isinstance(labels, torch.Tensor) and labels.dtype == torch.int64 and labels.dim() == 1
            and len(labels) == len(images) and isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        return None
    count = num_classes if num_classes is not None else len(classes)
    if len(labels) and (count < 1 or int(labels.min()) < 0 or int(labels.max()) >= count):
        return None  # an index past the classes would fail deep inside the loss, or silently mislabel
    return Decoded(images, labels, tuple(classes))


def write(path: Path, decoded: Decoded) -> None:
    """Store atomically (parallel sweep jobs may write the same file) and drop older versions of it (same
    settings, other files); a folder we may not write to only costs the next run a decode."""
    data = {"images": decoded.images.contiguous(), "labels": decoded.labels.contiguous(),
            "classes": list(decoded.classes)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(path, lambda tmp: torch.save(data, tmp))
        stem = path.stem.rsplit("-", 1)[0]  # <name>-<split>-<settings key>
        for old in path.parent.glob(f"{stem}-*.pt"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        pass


def decoded_or_cached(path: Path, decode: Callable[[], Decoded], num_classes: int) -> Decoded:
    """The split from the cache at `path`, else `decode()` it and store it there."""
    hit = read(path, num_classes)
    if hit is not None:
        return hit
    decoded = decode()
    write(path, decoded)
    return decoded
