"""LeNet-300-100 (LeCun et al. 1998; the MNIST MLP of Han et al. 2015): flattened pixels → 300 → 100 → classes."""

from __future__ import annotations

from typing import Any

from torch import nn

from progprune_cli.config.strict import NoOptions
from progprune_cli.data import DataInfo
from progprune_cli.models import mlp
from progprune_cli.models.base import MODELS, model_options


@MODELS.register("lenet300")
def build(options: dict[str, Any], info: DataInfo) -> nn.Module:
    model_options(NoOptions, options)  # the widths are what makes it LeNet-300-100: not an option
    return mlp.build({"hidden": [300, 100]}, info)
