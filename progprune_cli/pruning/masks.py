"""Binary masks over named parameters, enforced after every optimizer step (see stages/loop.py)."""

from __future__ import annotations

import torch
from torch import nn

Masks = dict[str, torch.Tensor]  # parameter name → bool tensor of the same shape (True = kept)


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Set every masked-out weight to exactly zero in place (a fill, not a multiply: NaN × 0 would stay NaN)."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].masked_fill_(~mask.to(params[name].device, torch.bool), 0.0)
