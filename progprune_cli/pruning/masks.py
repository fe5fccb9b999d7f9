"""Binary masks over named parameters, enforced after every optimizer step and on every gradient."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

Masks = dict[str, torch.Tensor]  # parameter name → bool tensor of the same shape (True = kept)


def full_masks(model: nn.Module, names: list[str]) -> Masks:
    """All-ones masks for the named parameters."""
    params = dict(model.named_parameters())
    return {name: torch.ones_like(params[name], dtype=torch.bool) for name in names}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Zero every masked-out weight in place."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask.to(params[name].device, params[name].dtype))


@contextmanager
def masked_gradients(model: nn.Module, masks: Masks) -> Iterator[None]:
    """While active, gradients of pruned weights are zero, so the optimizer sees no signal to revive them.

    Momentum and Adam moments accumulated before a weight was pruned can still move it, which is why
    `apply_masks` also runs after every optimizer step; the hook keeps gradient norms (clipping) honest.
    """
    params = dict(model.named_parameters())
    handles = []
    for name, mask in masks.items():
        keep = mask.to(params[name].device, params[name].dtype)
        handles.append(params[name].register_hook(lambda grad, keep=keep: grad * keep))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def mask_sparsity(masks: Masks) -> float:
    """Fraction of masked-out entries over all masked tensors (0.0 when there are none)."""
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    return 0.0 if total == 0 else 1.0 - kept / total
