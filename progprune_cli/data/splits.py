"""Splits of uint8 images that Batches reads batch-wise: order, augmentation and normalization as tensor ops."""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import torch
from torch.utils.data import Dataset

from progprune_cli.errors import UserError


@dataclass(frozen=True)
class Augment:
    """Random crop back to the image's own size from a zero-padded copy, plus an optional horizontal flip."""

    padding: int = 4
    flip: bool = True

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a uint8 batch (B, C, H, W) on its device; the random draws come from `generator` (CPU) only."""
        b, c, h, w = images.shape
        span = 2 * self.padding + 1
        # Drawn on the CPU from the per-batch generator, so a GPU run draws exactly what a CPU run draws.
        dy = torch.randint(0, span, (b,), generator=generator)
        dx = torch.randint(0, span, (b,), generator=generator)
        flip = torch.rand(b, generator=generator) < 0.5 if self.flip else torch.zeros(b, dtype=torch.bool)
        device = images.device
        dy, dx, flip = torch.stack([dy, dx, flip.long()]).to(device)  # one small copy to the device, not three
        flip = flip.bool()
        padded = torch.nn.functional.pad(images, (self.padding,) * 4)  # zero = black, as RandomCrop pads
        pw = w + 2 * self.padding
        rows = dy[:, None] + torch.arange(h, device=device)  # (B, H)
        steps = torch.arange(w, device=device)
        # A flipped crop reads its window right to left: one gather does crop and flip together.
        cols = dx[:, None] + torch.where(flip[:, None], w - 1 - steps, steps)  # (B, W)
        flat = (rows[:, :, None] * pw + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
        return padded.reshape(b, c, -1).gather(2, flat).reshape(b, c, h, w)


def batch_generator(seed: int, index: int) -> torch.Generator:
    """The generator of batch `index` of a pass seeded `seed`: it depends on these two numbers alone, so a pass
    resumed at batch k draws for it what an uninterrupted pass draws, whatever this process drew before."""
    digest = hashlib.blake2b(f"progprune-augment:{seed}:{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little"))


def batch_order(n: int, shuffle: bool, seed: int) -> torch.Tensor:
    """Sample indices of one pass: a permutation seeded by `seed` alone (what DataLoader's shuffle gives), or 0..n-1."""
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def remaining_order(n: int, shuffle: bool, seed: int, indices: torch.Tensor | None, start: int,
                    batch_size: int) -> list[int]:
    """The dataset indices of one pass from batch `start` on (a subset's `indices` map its positions to the set's)."""
    order = batch_order(n, shuffle, seed)
    if indices is not None:
        order = indices[order]
    return order[start * batch_size :].tolist()


def check_stats(mean: tuple[float, ...], std: tuple[float, ...], channels: int) -> None:
    """mean/std have one value for all channels or one per channel, and every std is positive."""
    for key, values in (("dataset.mean", mean), ("dataset.std", std)):
        if len(values) not in (1, channels):
            raise UserError(f"{key}: got {list(values)}; needs 1 or {channels} values (one per channel)")
    if min(std) <= 0:
        raise UserError(f"dataset.std: got {list(std)}; every value must be > 0")


class Split(Dataset):
    """A split of uint8 images that Batches hands to `batches`: normalized (and, for training, augmented) per batch
    with tensor ops on the training device, instead of per sample in Python."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: Augment | None

    def batches(self, batch_size: int, shuffle: bool, seed: int, device: torch.device,
                start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    def plain(self) -> Split:
        """The same images without augmentation (accuracy on the training set must not depend on random crops)."""
        return self if self.augment is None else replace(self, augment=None)  # type: ignore[type-var]

    def inputs(self, limit: int | None) -> torch.Tensor:
        """The first `limit` (all, when None) images normalized, on the CPU, without augmentation."""
        count = len(self) if limit is None else min(limit, len(self))
        size = 1024
        parts = [x for x, _ in itertools.islice(self.plain().batches(size, False, 0, torch.device("cpu"), 0),
                                                -(-count // size))]
        return torch.cat(parts)[:count] if parts else torch.empty(0)

    def finish(self, images: torch.Tensor, labels: torch.Tensor, seed: int,
               index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 batch `index` (already on its device) → (augmented, normalized float32, labels)."""
        if self.augment is not None:
            images = self.augment(images, batch_generator(seed, index))
        return normalize(images, self.mean, self.std), labels

    def __len__(self) -> int:
        raise NotImplementedError


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (B, C, H, W) → float32 (x / 255 − mean) / std per channel, on the images' device."""
    m, s = _stats(mean, std, str(images.device))
    return images.float().div_(255.0).sub_(m).div_(s)


@functools.lru_cache(maxsize=64)
def _stats(mean: tuple[float, ...], std: tuple[float, ...], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """mean/std as (1, C, 1, 1) float32 on `device`, made once: not a host-to-device copy per batch."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1).to(device)
    return m, torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1).to(device)


@dataclass(frozen=True, eq=False)
class TensorSplit(Split):
    """A split held in memory as one uint8 tensor (N, C, H, W) and int64 labels (N,): a batch is one index op."""

    images: torch.Tensor
    labels: torch.Tensor
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    augment: Augment | None = None
    # One copy per training device, made on first use: a GPU epoch then never crosses the bus for images.
    _copies: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or len(self.labels) != len(self.images):
            raise ValueError(f"TensorSplit needs uint8 (N, C, H, W) images and N labels, got {self.images.dtype} "
                             f"{tuple(self.images.shape)} and {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample i as the model sees it without augmentation (a slow path; Batches reads whole batches)."""
        return normalize(self.images[i : i + 1], self.mean, self.std)[0], self.labels[i]

    def plain(self) -> TensorSplit:
        if self.augment is None:
            return self
        return replace(self, augment=None)  # shares _copies: the same images, never a second upload

    def on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels on `device` (the CPU tensors themselves on the CPU)."""
        if device.type == "cpu":
            return self.images, self.labels
        key = str(device)
        if key not in self._copies:
            self._copies[key] = (self.images.to(device), self.labels.to(device))
        return self._copies[key]

    def batches(self, batch_size: int, shuffle: bool, seed: int, device: torch.device,
                start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images, labels = self.on(device)
        order = batch_order(len(self), shuffle, seed).to(device)
        for index in range(start, -(-len(self) // batch_size)):
            idx = order[index * batch_size : (index + 1) * batch_size]
            yield self.finish(images[idx], labels[idx], seed, index)

    def inputs(self, limit: int | None) -> torch.Tensor:
        return normalize(self.images[: len(self) if limit is None else limit], self.mean, self.std)

    def subset(self, indices: torch.Tensor, augment: Augment | None = None) -> TensorSplit:
        """The samples at `indices` (a copy), with this split's normalization."""
        return TensorSplit(self.images[indices], self.labels[indices], self.mean, self.std, augment)
