"""ResNet-56 for CIFAR (He et al. 2016 §4.2): 9 basic blocks per stage; the architecture is in cifar_resnet."""

from progprune_cli.models.base import MODELS
from progprune_cli.models.cifar_resnet import CifarResNetConfig, builder

build = MODELS.register("resnet56", CifarResNetConfig)(builder(9))
