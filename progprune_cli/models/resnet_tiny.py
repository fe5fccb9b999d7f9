"""A tiny ResNet: conv-bn-relu stem, two residual blocks (the second strided, with a projection), pool, linear."""

from __future__ import annotations

from dataclasses import dataclass
import torch
from omegaconf import MISSING
from torch import nn

from progprune_cli.data import DataInfo
from progprune_cli.config import ModelConfig
from progprune_cli.models.base import MODELS


@dataclass
class ResNetTinyConfig(ModelConfig):
    width: int = MISSING


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    # No conv bias: the batch-norm shift makes it redundant.
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)); by default the shortcut is identity unless the shape
    changes, then a 1×1 conv + batch-norm projection."""

    def __init__(self, cin: int, cout: int, stride: int, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        if shortcut is None:
            shortcut = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetTiny(nn.Module):
    def __init__(self, info: DataInfo, width: int = 16) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(info.channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width)
        self.layer1 = BasicBlock(width, width, 1)
        self.layer2 = BasicBlock(width, 2 * width, 2)
        self.fc = nn.Linear(2 * width, info.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@MODELS.register("resnet_tiny", ResNetTinyConfig)
def build(cfg: ResNetTinyConfig, info: DataInfo) -> nn.Module:
    return ResNetTiny(info, cfg.width)
