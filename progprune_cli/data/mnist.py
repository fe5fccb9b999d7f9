"""MNIST (60,000 train / 10,000 test, 28×28 gray) through torchvision.datasets.MNIST."""

from __future__ import annotations

from dataclasses import dataclass

from progprune_cli.data.builtin import register_builtin
from progprune_cli.data.idx import IdxFiles


@dataclass(frozen=True)
class Options:
    root: str = "data/mnist"
    download: bool = True
    val_fraction: float = 0.1
    limit: int | None = None
    mean: tuple[float, ...] = (0.1307,)
    std: tuple[float, ...] = (0.3081,)


register_builtin(IdxFiles("mnist", "MNIST", "MNIST"), Options)
