"""A multilayer perceptron over flattened pixels: Linear → ReLU for each hidden size, then a classifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from progprune_cli.data import DataInfo
from progprune_cli.models.base import MODELS, model_options


@dataclass(frozen=True)
class Options:
    hidden: tuple[int, ...] = (128, 64)


@MODELS.register("mlp")
def build(options: dict[str, Any], info: DataInfo) -> nn.Module:
    opts = model_options(Options, options)
    layers: list[nn.Module] = [nn.Flatten()]
    width = info.channels * info.height * info.width
    for size in opts.hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, info.num_classes))
    return nn.Sequential(*layers)
