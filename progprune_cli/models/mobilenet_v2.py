"""torchvision's MobileNetV2 (Sandler et al. 2018); small_input: the first conv strides 1, for 32×32 inputs."""

from __future__ import annotations

from torch import nn

from progprune_cli.data import DataInfo
from progprune_cli.models.base import MODELS
from progprune_cli.models.small_input import SmallInputConfig, small_input, stem_conv


@MODELS.register("mobilenet_v2", SmallInputConfig)
def build(cfg: SmallInputConfig, info: DataInfo) -> nn.Module:
    from torchvision.models import mobilenet_v2  # here, not at the top: importing torchvision costs every run ~2.4 s

    small = small_input(cfg, info)
    model = mobilenet_v2(weights=None, num_classes=info.num_classes)
    first = model.features[0][0]
    if small or info.channels != first.in_channels:
        model.features[0][0] = stem_conv(first, info.channels, 3, 1 if small else 2)
    return model
