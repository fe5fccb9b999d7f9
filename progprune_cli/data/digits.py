"""scikit-learn's bundled 8×8 handwritten digits (1,797 real images, no download): the default dataset."""

from __future__ import annotations

from dataclasses import dataclass
import torch
from omegaconf import MISSING

from progprune_cli.data.base import DataSplits, register, tensor_splits
from progprune_cli.config import DatasetConfig
from progprune_cli.errors import UserError


@dataclass
class DigitsConfig(DatasetConfig):
    val_fraction: float = MISSING
    test_fraction: float = MISSING


def prepare(cfg: DigitsConfig) -> None:
    """Nothing to fetch or decode (the images ship with scikit-learn): only the values are checked."""
    check_fractions(cfg.val_fraction, cfg.test_fraction)


@register("digits", prepare, DigitsConfig)
def build(opts: DigitsConfig, seed: int) -> DataSplits:
    from sklearn.datasets import load_digits  # only this dataset needs scikit-learn

    train_fraction = check_fractions(opts.val_fraction, opts.test_fraction)
    bunch = load_digits()
    # Pixels are 0..16 in the bundled data; scale to [0, 1] like the seed does for images (§6.1).
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    return tensor_splits(x, y, (train_fraction, opts.val_fraction, opts.test_fraction), seed, num_classes=10)


def check_fractions(val: float, test: float) -> float:
    """Return the train fraction, or fail when val/test leave nothing to train on."""
    for key, value in (("dataset.val_fraction", val), ("dataset.test_fraction", test)):
        if not 0.0 < value < 1.0:
            raise UserError(f"{key}: got {value}; must be in (0, 1)")
    if val + test >= 1.0:
        raise UserError(f"dataset.val_fraction + dataset.test_fraction: got {val + test}; must be < 1")
    return 1.0 - val - test
