"""A multilayer perceptron over flattened pixels: Linear → ReLU for each hidden size, then a classifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from progprune_cli.build.data import DataInfo
from progprune_cli.build.models.base import MODELS
from progprune_cli.config.strict import from_dict
from progprune_cli.errors import UserError


@dataclass(frozen=True)
class Options:
    hidden: tuple[int, ...] = (128, 64)


@MODELS.register("mlp")
def build(options: dict[str, Any], info: DataInfo) -> nn.Module:
    opts = from_dict(Options, options, "model", ("name",))
    if any(h < 1 for h in opts.hidden):
        raise UserError(f"model.hidden: got {list(opts.hidden)}; every size must be >= 1")
    layers: list[nn.Module] = [nn.Flatten()]
    width = info.channels * info.height * info.width
    for size in opts.hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, info.num_classes))
    return nn.Sequential(*layers)
