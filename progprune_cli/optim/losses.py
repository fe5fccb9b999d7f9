"""Loss registry (§4.3): cross-entropy over logits, or mean squared error against one-hot targets."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from progprune_cli.registry import Registry

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES: Registry[LossFn] = Registry("train.loss")


@LOSSES.register("cross_entropy")
def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, target)


@LOSSES.register("mse")
def mse(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(torch.softmax(logits, dim=1), F.one_hot(target, logits.shape[1]).to(logits.dtype))
