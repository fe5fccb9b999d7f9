"""LeNet-300-100 (LeCun et al. 1998; the MNIST MLP of Han et al. 2015): flattened pixels → 300 → 100 → classes."""

from __future__ import annotations

from torch import nn

from progprune_cli.config import ModelConfig
from progprune_cli.data import DataInfo
from progprune_cli.models import mlp
from progprune_cli.models.base import MODELS


@MODELS.register("lenet300")  # no keys of its own: the widths are what makes it LeNet-300-100
def build(cfg: ModelConfig, info: DataInfo) -> nn.Module:
    return mlp.mlp([300, 100], info)
