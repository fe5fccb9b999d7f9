"""The CIFAR VGG with batch-norm of Li et al. 2017 (as in the l1-norm-pruning code of Liu et al. 2019), for vgg11/16.

Conv 3×3 (no bias) → BN → ReLU per width of the configuration, max-pool 2 at each 'M'; then global average pooling
and a classifier Linear(512, 512) → BN → ReLU → Linear(512, classes). Their code averages the last 2×2 map of a
32×32 input; pooling to 1×1 is the same there and lets other input sizes through.
"""

from __future__ import annotations

import torch
from torch import nn

from progprune_cli.config import ModelConfig
from progprune_cli.data import DataInfo
from progprune_cli.models.base import ModelBuilder, too_small

Layers = tuple[int | str, ...]

CONFIGS: dict[int, Layers] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
}


class CifarVGG(nn.Module):
    def __init__(self, info: DataInfo, layers: Layers, name: str) -> None:
        super().__init__()
        too_small(name, info, 2 ** layers.count("M"))  # every max-pool halves the map; it must stay >= 1×1
        stack: list[nn.Module] = []
        cin = info.channels
        for layer in layers:
            if layer == "M":
                stack.append(nn.MaxPool2d(2))
            else:
                # No conv bias: the batch-norm shift makes it redundant.
                stack += [nn.Conv2d(cin, int(layer), 3, padding=1, bias=False), nn.BatchNorm2d(int(layer)),
                          nn.ReLU(inplace=True)]
                cin = int(layer)
        self.features = nn.Sequential(*stack)
        self.classifier = nn.Sequential(nn.Linear(cin, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                                        nn.Linear(512, info.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def builder(depth: int) -> ModelBuilder:
    """The registry entry of the VGG of this depth (a key of CONFIGS)."""

    def build(cfg: ModelConfig, info: DataInfo) -> nn.Module:
        return CifarVGG(info, CONFIGS[depth], f"vgg{depth}")

    return build
