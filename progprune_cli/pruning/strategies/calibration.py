"""Calibration batches for data-driven scores: the first few training batches, on the scoring device."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

import torch

from progprune_cli.pruning.strategies.base import PruneContext
from progprune_cli.errors import UserError


def check_batches(batches: int, name: str) -> None:
    if batches < 1:
        raise UserError(f"strategy.batches: got {batches}; {name} needs at least 1 calibration batch")


def batches(ctx: PruneContext, count: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Up to `count` (inputs, targets) batches from `ctx.loader`, moved to `ctx.device`."""
    for x, y in islice(ctx.loader, count):
        yield x.to(ctx.device), y.to(ctx.device)
