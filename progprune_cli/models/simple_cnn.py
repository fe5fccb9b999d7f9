"""The seed's Appendix B `SimpleCNN`: conv 32 3×3 → ReLU → max-pool 2 → linear."""

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
class SimpleCNNConfig(ModelConfig):
    channels: int = MISSING


class SimpleCNN(nn.Module):
    def __init__(self, info: DataInfo, channels: int) -> None:
        super().__init__()
        # The seed writes Linear(32*26*26, 10), which does not match the pooled shape; derive it from the input.
        height, width = (info.height - 2) // 2, (info.width - 2) // 2
        if height < 1 or width < 1:
            raise UserError(f"model=simple_cnn: input {info.height}x{info.width} is too small (needs >= 4x4)")
        self.conv1 = nn.Conv2d(info.channels, channels, 3, 1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(channels * height * width, info.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        return self.fc(torch.flatten(x, 1))


@MODELS.register("simple_cnn", SimpleCNNConfig)
def build(cfg: SimpleCNNConfig, info: DataInfo) -> nn.Module:
    return SimpleCNN(info, cfg.channels)
