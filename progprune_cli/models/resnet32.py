"""ResNet-32 for CIFAR (He et al. 2016 §4.2): 5 basic blocks per stage; the architecture is in cifar_resnet."""

from progprune_cli.models.base import MODELS
from progprune_cli.models.cifar_resnet import CifarResNetConfig, builder

build = MODELS.register("resnet32", CifarResNetConfig)(builder(5))
