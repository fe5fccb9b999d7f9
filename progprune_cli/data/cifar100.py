"""CIFAR-100 (50,000 train / 10,000 test, 32×32 RGB, 100 fine classes) through torchvision.datasets.CIFAR100."""

from __future__ import annotations

from dataclasses import dataclass

from progprune_cli.data.builtin import register_builtin
from progprune_cli.data.cifar import AUGMENT, CifarFiles


@dataclass(frozen=True)
class Options:
    root: str = "data/cifar100"
    download: bool = True
    val_fraction: float = 0.1
    limit: int | None = None
    augment: bool = True
    mean: tuple[float, ...] = (0.5071, 0.4865, 0.4409)
    std: tuple[float, ...] = (0.2673, 0.2564, 0.2762)


register_builtin(CifarFiles("cifar100", "CIFAR100", "CIFAR-100"), Options, AUGMENT)
