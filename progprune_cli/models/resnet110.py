"""ResNet-110 for CIFAR (He et al. 2016 §4.2): 18 basic blocks per stage; the architecture is in cifar_resnet."""

from progprune_cli.models.base import MODELS
from progprune_cli.models.cifar_resnet import CifarResNetConfig, builder

build = MODELS.register("resnet110", CifarResNetConfig)(builder(18))
