"""CIFAR-100 (50,000 train / 10,000 test, 32×32 RGB, 100 fine classes) through torchvision.datasets.CIFAR100."""

from progprune_cli.data.builtin import register_builtin
from progprune_cli.data.cifar import AUGMENT, CifarFiles

register_builtin(CifarFiles("cifar100", "CIFAR100", "CIFAR-100"), AUGMENT)
