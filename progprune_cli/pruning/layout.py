"""How a unit's stored tensor is seen as `(out, K)` rows, one per output over its K inputs: what N:M groups, Wanda
compares and SparseGPT updates. Most layers store `(out, *inputs)`; transformers' Conv1D (GPT-2's linear layers)
stores its weight transposed, `(in, out)` with y = x @ W + b, so its rows are the columns of what it stores."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Layout:
    """`rows(t)`: a tensor shaped like the unit as `(out, K)`; `back(r, shape)`: such rows in the unit's shape."""

    rows: Callable[[torch.Tensor], torch.Tensor]
    back: Callable[[torch.Tensor, torch.Size], torch.Tensor]


FLAT = Layout(lambda t: t.reshape(t.shape[0], -1), lambda r, shape: r.reshape(shape))
TRANSPOSED = Layout(lambda t: t.T, lambda r, shape: r.T.contiguous().reshape(shape))  # masks stay contiguous


def transposed_layers() -> tuple[type[nn.Module], ...]:
    """Layer classes whose `weight` is stored `(in, out)`. transformers stays optional: a model holding its Conv1D
    has imported it, so it is looked up among the loaded modules and never imported here."""
    pytorch_utils = sys.modules.get("transformers.pytorch_utils")
    conv1d = getattr(pytorch_utils, "Conv1D", None)
    return (conv1d,) if isinstance(conv1d, type) else ()


def is_transposed(layer: nn.Module) -> bool:
    """Whether `layer` is a linear layer with its weight stored `(in, out)` (transformers' Conv1D)."""
    return isinstance(layer, transposed_layers())


def layout_of(model: nn.Module, unit: str) -> Layout:
    """The layout of the parameter `unit` of `model` (a dotted name as named_parameters gives it)."""
    owner, _, kind = unit.rpartition(".")
    layer = model.get_submodule(owner) if owner else model
    return TRANSPOSED if kind == "weight" and is_transposed(layer) else FLAT


def layouts(model: nn.Module, units: list[str]) -> dict[str, Layout]:
    """Each unit's layout."""
    return {unit: layout_of(model, unit) for unit in units}
