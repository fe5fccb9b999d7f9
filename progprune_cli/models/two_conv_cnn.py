"""The seed's CNN of §5.3/§6.3: two (conv 3×3 'same' → ReLU → max-pool 2) blocks, flatten, dense."""

from __future__ import annotations

from dataclasses import dataclass
import torch
from omegaconf import MISSING
from torch import nn

from progprune_cli.data import DataInfo
from progprune_cli.config import ModelConfig
from progprune_cli.models.base import MODELS
from progprune_cli.errors import UserError


@dataclass
class TwoConvCNNConfig(ModelConfig):
    channels: int = MISSING


class TwoConvCNN(nn.Module):
    def __init__(self, info: DataInfo, channels: int) -> None:
        super().__init__()
        height, width = info.height // 4, info.width // 4
        if height < 1 or width < 1:
            raise UserError(f"model=two_conv_cnn: input {info.height}x{info.width} is too small (needs >= 4x4)")
        self.conv1 = nn.Conv2d(info.channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        # The seed's softmax lives in the loss (cross-entropy takes logits).
        self.fc = nn.Linear(channels * height * width, info.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


@MODELS.register("two_conv_cnn", TwoConvCNNConfig)
def build(cfg: TwoConvCNNConfig, info: DataInfo) -> nn.Module:
    return TwoConvCNN(info, cfg.channels)
