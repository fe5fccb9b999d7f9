"""Kuzushiji-MNIST (60,000 train / 10,000 test, 28×28 gray cursive Japanese) through torchvision.datasets.KMNIST."""

from __future__ import annotations

from dataclasses import dataclass

from progprune_cli.data.builtin import register_builtin
from progprune_cli.data.idx import IdxFiles


@dataclass(frozen=True)
class Options:
    root: str = "data/kmnist"
    download: bool = True
    val_fraction: float = 0.1
    limit: int | None = None
    mean: tuple[float, ...] = (0.1918,)
    std: tuple[float, ...] = (0.3483,)


register_builtin(IdxFiles("kmnist", "KMNIST", "KMNIST"), Options)
