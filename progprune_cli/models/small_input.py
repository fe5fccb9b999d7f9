"""The `small_input` option of torchvision's ImageNet models: a stem for CIFAR-sized inputs, any channel count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from progprune_cli.data import DataInfo
from progprune_cli.models.base import model_options, with_default

SMALL = 64  # inputs at most this wide get the small stem unless the config says otherwise


@dataclass(frozen=True)
class SmallInputOptions:
    small_input: bool = True  # never used: small_input_options fills in the data-dependent default


def small_input_options(options: dict[str, Any], info: DataInfo) -> SmallInputOptions:
    """The checked options; `small_input` missing or null means: true when the input is at most 64 px wide."""
    return model_options(SmallInputOptions, with_default(options, "small_input", info.width <= SMALL))


def stem_conv(old: nn.Conv2d, in_channels: int, kernel: int, stride: int) -> nn.Conv2d:
    """`old` rebuilt for `in_channels` inputs with this kernel and stride, initialised as torchvision does."""
    conv = nn.Conv2d(in_channels, old.out_channels, kernel, stride, kernel // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv
