"""Caffe's LeNet-5 as pruned by Han et al. 2015: conv 20 5×5, pool, conv 50 5×5, pool, fc 500, ReLU, fc."""

from __future__ import annotations

import torch
from torch import nn

from progprune_cli.config import ModelConfig
from progprune_cli.data import DataInfo
from progprune_cli.models.base import MODELS, too_small


class LeNet5(nn.Module):
    """Caffe's examples/mnist/lenet_train_test.prototxt: no nonlinearity after the convolutions, only after ip1."""

    def __init__(self, info: DataInfo) -> None:
        super().__init__()
        too_small("lenet5", info, 16)  # two (5×5 valid conv, pool 2) stages must leave at least 1×1
        height, width = ((info.height - 4) // 2 - 4) // 2, ((info.width - 4) // 2 - 4) // 2
        self.conv1 = nn.Conv2d(info.channels, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(50 * height * width, 500)
        self.fc2 = nn.Linear(500, info.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.conv2(self.pool(self.conv1(x))))
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


@MODELS.register("lenet5")
def build(cfg: ModelConfig, info: DataInfo) -> nn.Module:
    return LeNet5(info)
