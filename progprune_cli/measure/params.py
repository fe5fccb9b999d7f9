"""Parameter counts of a model: total, nonzero, physically stored, and the sparsity/compression they imply."""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn


def effective_tensors(model: nn.Module) -> Iterator[torch.Tensor]:
    """Each parameter once, as the forward pass sees it.

    torch.nn.utils.prune keeps the dense weight as `weight_orig` (a parameter) and recomputes `weight`
    = orig * mask; counting `weight_orig`'s nonzeros would hide the pruning, so the masked tensor is used.
    Shared parameters are counted once.
    """
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            masked = getattr(module, name.removesuffix("_orig"), None) if name.endswith("_orig") else None
            yield masked if isinstance(masked, torch.Tensor) else param


def count_params(model: nn.Module, dense_total: int | None = None) -> dict:
    """`{"total", "nonzero", "physical", "sparsity", "compression"}` of a model.

    `physical` is what the tensors really hold. For a compacted model (pruned channels physically removed) pass
    the dense model's count as `dense_total`: then `total` is that dense count and sparsity/compression are
    relative to it, so a compacted model and its mask-only twin report the same sparsity.
    `compression` is None when nothing is nonzero (the ratio is unbounded and JSON has no infinity).
    """
    physical = nonzero = 0
    for tensor in effective_tensors(model):
        physical += tensor.numel()
        nonzero += int(torch.count_nonzero(tensor.detach()))
    total = physical if dense_total is None else dense_total
    if total < physical:
        raise ValueError(f"dense_total={total} is smaller than the model's own {physical} parameters")
    return {
        "total": total,
        "nonzero": nonzero,
        "physical": physical,
        "sparsity": 1.0 - nonzero / total if total else 0.0,
        "compression": total / nonzero if nonzero else None,
    }
