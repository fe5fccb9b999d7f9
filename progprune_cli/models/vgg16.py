"""VGG-16 with batch-norm for CIFAR (Li et al. 2017); the architecture is in cifar_vgg."""

from progprune_cli.models.base import MODELS
from progprune_cli.models.cifar_vgg import builder

build = MODELS.register("vgg16")(builder(16))
