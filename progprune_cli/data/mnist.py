"""MNIST (60,000 train / 10,000 test, 28×28 gray) through torchvision.datasets.MNIST."""

from progprune_cli.data.builtin import register_builtin
from progprune_cli.data.idx import IdxFiles

register_builtin(IdxFiles("mnist", "MNIST", "MNIST"))
