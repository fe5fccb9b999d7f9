"""torchvision's MobileNetV2 (Sandler et al. 2018); small_input: the first conv strides 1, for 32×32 inputs."""

from __future__ import annotations

from typing import Any

from torch import nn

from progprune_cli.data import DataInfo
from progprune_cli.models.base import MODELS
from progprune_cli.models.small_input import small_input_options, stem_conv


@MODELS.register("mobilenet_v2")
def build(options: dict[str, Any], info: DataInfo) -> nn.Module:
    from torchvision.models import mobilenet_v2  # here, not at the top: importing torchvision costs every run ~2.4 s

    opts = small_input_options(options, info)
    model = mobilenet_v2(weights=None, num_classes=info.num_classes)
    first = model.features[0][0]
    if opts.small_input or info.channels != first.in_channels:
        model.features[0][0] = stem_conv(first, info.channels, 3, 1 if opts.small_input else 2)
    return model
