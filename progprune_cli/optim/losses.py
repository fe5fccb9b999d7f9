"""Loss registry (§4.3): cross-entropy over logits, or mean squared error against one-hot targets."""

from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F

from progprune_cli.errors import UserError
from progprune_cli.registry import Registry

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES: Registry[LossFn] = Registry("train.loss")


def _rows(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, classes) logits and (N,) targets: a language model's (batch, block, vocab) become one row per token."""
    return logits.reshape(-1, logits.shape[-1]), target.reshape(-1)


@LOSSES.register("cross_entropy")
def cross_entropy(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    return F.cross_entropy(*_rows(logits, target), label_smoothing=label_smoothing)


@LOSSES.register("mse")
def mse(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    logits, target = _rows(logits, target)
    return F.mse_loss(torch.softmax(logits, dim=1), F.one_hot(target, logits.shape[1]).to(logits.dtype))


def build_loss(name: str, label_smoothing: float = 0.0) -> LossFn:
    """The loss `train.loss` names, with cross-entropy's label smoothing when asked."""
    loss = LOSSES.get(name)
    if label_smoothing == 0.0:
        return loss
    if loss is not cross_entropy:
        raise UserError(f"train.label_smoothing: got {label_smoothing}; only train.loss=cross_entropy takes it")
    return functools.partial(cross_entropy, label_smoothing=label_smoothing)
