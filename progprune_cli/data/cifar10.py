"""CIFAR-10 (50,000 train / 10,000 test, 32×32 RGB, 10 classes) through torchvision.datasets.CIFAR10."""

from progprune_cli.data.builtin import register_builtin
from progprune_cli.data.cifar import AUGMENT, CifarFiles

register_builtin(CifarFiles("cifar10", "CIFAR10", "CIFAR-10"), AUGMENT)
