"""A tiny, learnable synthetic image dataset (seeded Gaussian class prototypes) for fast tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from progprune_cli.data.base import DataSplits, register, tensor_splits
from progprune_cli.data.digits import check_fractions
from progprune_cli.config.strict import from_dict
from progprune_cli.errors import UserError


@dataclass(frozen=True)
class Options:
    samples: int = 256
    channels: int = 1
    size: int = 8
    num_classes: int = 4
    noise: float = 0.5
    val_fraction: float = 0.25
    test_fraction: float = 0.25


def _parse(options: dict[str, Any]) -> Options:
    opts = from_dict(Options, options, "dataset", ("name",))
    for key in ("samples", "channels", "size", "num_classes"):
        if getattr(opts, key) < 1:
            raise UserError(f"dataset.{key}: got {getattr(opts, key)}; must be >= 1")
    check_fractions(opts.val_fraction, opts.test_fraction)
    return opts


def prepare(options: dict[str, Any]) -> None:
    """Nothing to fetch or decode (the data is drawn from the seed): only the options are checked."""
    _parse(options)


@register("synthetic", prepare)
def build(options: dict[str, Any], seed: int) -> DataSplits:
    opts = _parse(options)
    train_fraction = check_fractions(opts.val_fraction, opts.test_fraction)
    g = torch.Generator().manual_seed(seed)
    shape = (opts.channels, opts.size, opts.size)
    prototypes = torch.rand((opts.num_classes, *shape), generator=g)
    y = torch.arange(opts.samples) % opts.num_classes
    x = prototypes[y] + opts.noise * torch.randn((opts.samples, *shape), generator=g)
    return tensor_splits(x, y, (train_fraction, opts.val_fraction, opts.test_fraction), seed, opts.num_classes)
