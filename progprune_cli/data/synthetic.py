"""A tiny, learnable synthetic image dataset (seeded Gaussian class prototypes) for fast tests."""

from __future__ import annotations

from dataclasses import dataclass
import torch
from omegaconf import MISSING

from progprune_cli.data.base import DataSplits, register, tensor_splits
from progprune_cli.data.digits import check_fractions
from progprune_cli.config import DatasetConfig
from progprune_cli.errors import UserError


@dataclass
class SyntheticConfig(DatasetConfig):
    samples: int = MISSING
    channels: int = MISSING
    size: int = MISSING
    num_classes: int = MISSING
    noise: float = MISSING
    val_fraction: float = MISSING
    test_fraction: float = MISSING


def prepare(opts: SyntheticConfig) -> None:
    """Nothing to fetch or decode (the data is drawn from the seed): only the values are checked."""
    for key in ("samples", "channels", "size", "num_classes"):
        if getattr(opts, key) < 1:
            raise UserError(f"dataset.{key}: got {getattr(opts, key)}; must be >= 1")
    check_fractions(opts.val_fraction, opts.test_fraction)


@register("synthetic", prepare, SyntheticConfig)
def build(opts: SyntheticConfig, seed: int) -> DataSplits:
    prepare(opts)
    train_fraction = check_fractions(opts.val_fraction, opts.test_fraction)
    g = torch.Generator().manual_seed(seed)
    shape = (opts.channels, opts.size, opts.size)
    prototypes = torch.rand((opts.num_classes, *shape), generator=g)
    y = torch.arange(opts.samples) % opts.num_classes
    x = prototypes[y] + opts.noise * torch.randn((opts.samples, *shape), generator=g)
    return tensor_splits(x, y, (train_fraction, opts.val_fraction, opts.test_fraction), seed, opts.num_classes)
