"""torchvision's ResNet-18 (He et al. 2016); small_input: conv1 3×3 stride 1 and no max-pool, for 32×32 inputs."""

from __future__ import annotations

from torch import nn

from progprune_cli.data import DataInfo
from progprune_cli.models.base import MODELS
from progprune_cli.models.small_input import SmallInputConfig, small_input, stem_conv


@MODELS.register("resnet18", SmallInputConfig)
def build(cfg: SmallInputConfig, info: DataInfo) -> nn.Module:
    from torchvision.models import resnet18  # here, not at the top: importing torchvision costs every run ~2.4 s

    model = resnet18(weights=None, num_classes=info.num_classes)
    if small_input(cfg, info):
        # The ImageNet stem shrinks 32×32 to 8×8 before the first block; this is the usual CIFAR adaptation.
        model.conv1 = stem_conv(model.conv1, info.channels, 3, 1)
        model.maxpool = nn.Identity()
    elif info.channels != model.conv1.in_channels:
        model.conv1 = stem_conv(model.conv1, info.channels, 7, 2)
    return model
