"""A multilayer perceptron over flattened pixels: Linear → ReLU for each hidden size, then a classifier."""

from __future__ import annotations

from dataclasses import dataclass
from omegaconf import MISSING
from torch import nn

from progprune_cli.data import DataInfo
from progprune_cli.config import ModelConfig
from progprune_cli.models.base import MODELS


@dataclass
class MLPConfig(ModelConfig):
    hidden: list[int] = MISSING


@MODELS.register("mlp", MLPConfig)
def build(cfg: MLPConfig, info: DataInfo) -> nn.Module:
    return mlp(cfg.hidden, info)


def mlp(hidden: list[int], info: DataInfo) -> nn.Module:
    """Flatten, then Linear → ReLU for each of the `hidden` sizes, then the classifier."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = info.channels * info.height * info.width
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, info.num_classes))
    return nn.Sequential(*layers)
