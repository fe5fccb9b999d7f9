"""Binary masks over named parameters, enforced after every optimizer step (see stages/loop.py)."""

from __future__ import annotations

import torch
from torch import nn

Masks = dict[str, torch.Tensor]  # parameter name → bool tensor of the same shape (True = kept)


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Zero every masked-out weight in place."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask.to(params[name].device, params[name].dtype))
