"""Calibration batches for data-driven scores: the first few batches of a seeded shuffle of the training split
(un-augmented; stages/prune.py), on the scoring device."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

import torch
from torch.utils.data import Dataset

from progprune_cli.data import Batches
from progprune_cli.pruning.strategies.base import PruneContext
from progprune_cli.errors import UserError


def check_batches(batches: int, name: str) -> None:
    if batches < 1:
        raise UserError(f"strategy.batches: got {batches}; {name} needs at least 1 calibration batch")


def batches(ctx: PruneContext, count: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Up to `count` (inputs, targets) batches from `ctx.loader`, moved to `ctx.device`."""
    for x, y in islice(ctx.loader, count):
        yield x.to(ctx.device), y.to(ctx.device)


def calibration_loader(split: Dataset, batch_size: int, seed: int, device: torch.device) -> Batches:
    """The calibration batches of `split`: a seeded shuffle, not its first batches (a text's first windows are its
    first pages, and a user's Dataset may be sorted by class); the same batches each time it is read, so every
    schedule step calibrates on the same samples."""
    return Batches(split, batch_size, shuffle=True, seed=seed, device=device)
