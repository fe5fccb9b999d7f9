"""Fashion-MNIST (60,000 train / 10,000 test, 28×28 gray clothing) through torchvision.datasets.FashionMNIST."""

from progprune_cli.data.builtin import register_builtin
from progprune_cli.data.idx import IdxFiles

register_builtin(IdxFiles("fashion_mnist", "FashionMNIST", "Fashion-MNIST"))
