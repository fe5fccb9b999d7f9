"""The `small_input` option of torchvision's ImageNet models: a stem for CIFAR-sized inputs, any channel count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING
from torch import nn

from progprune_cli.data import DataInfo
from progprune_cli.config import ModelConfig

SMALL = 64  # inputs at most this wide get the small stem unless the config says otherwise


@dataclass
class SmallInputConfig(ModelConfig):
    small_input: Optional[bool] = MISSING  # null: true when the input is at most SMALL px wide


def small_input(cfg: SmallInputConfig, info: DataInfo) -> bool:
    """Whether to build the small stem: `small_input`, or when it is null whether the input is that small."""
    return cfg.small_input if cfg.small_input is not None else info.width <= SMALL


def stem_conv(old: nn.Conv2d, in_channels: int, kernel: int, stride: int) -> nn.Conv2d:
    """`old` rebuilt for `in_channels` inputs with this kernel and stride, initialised as torchvision does."""
    conv = nn.Conv2d(in_channels, old.out_channels, kernel, stride, kernel // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv
