"""CIFAR-10 (50,000 train / 10,000 test, 32×32 RGB, 10 classes) through torchvision.datasets.CIFAR10."""

from __future__ import annotations

from dataclasses import dataclass

from progprune_cli.data.builtin import register_builtin
from progprune_cli.data.cifar import AUGMENT, CifarFiles


@dataclass(frozen=True)
class Options:
    root: str = "data/cifar10"
    download: bool = True
    val_fraction: float = 0.1
    limit: int | None = None
    augment: bool = True
    mean: tuple[float, ...] = (0.4914, 0.4822, 0.4465)
    std: tuple[float, ...] = (0.2470, 0.2435, 0.2616)


register_builtin(CifarFiles("cifar10", "CIFAR10", "CIFAR-10"), Options, AUGMENT)
