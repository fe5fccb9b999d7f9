"""Weight matrices a module multiplies by itself, not through a Linear: nn.LSTM/GRU/RNN's and nn.MultiheadAttention's.

Both kinds hold their matrices as parameters not named `weight` (`weight_ih_l0`, `in_proj_weight`), so the rules
"a unit is a `weight` with dim > 1" and "MACs are counted by hooks on Conv2d/Linear" miss them; this module names
them and says how many positions (input rows) each block of rows is applied to in one call.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

RECURRENT = (nn.RNNBase, nn.RNNCellBase)  # nn.LSTM, nn.GRU, nn.RNN and their cells
ATTENTION_INPUTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
HOLDERS = (*RECURRENT, nn.MultiheadAttention)


def direct_matrices(module: nn.Module) -> list[str]:
    """Names (local to `module`) of the weight matrices it reads itself, in parameter order; [] for other modules."""
    if isinstance(module, RECURRENT):
        return [name for name, _ in module.named_parameters(recurse=False) if name.startswith("weight_")]
    if isinstance(module, nn.MultiheadAttention):
        return [name for name, _ in module.named_parameters(recurse=False) if name in ATTENTION_INPUTS]
    return []


def direct_biases(module: nn.Module) -> list[str]:
    """The biases that go with those matrices (`bias_ih_l0`, `in_proj_bias`; not an attention's learned `bias_k`
    and `bias_v`, which are extra key/value rows rather than a matrix's bias)."""
    if isinstance(module, RECURRENT):
        return [name for name, _ in module.named_parameters(recurse=False) if name.startswith("bias_")]
    if isinstance(module, nn.MultiheadAttention):
        return [name for name, _ in module.named_parameters(recurse=False) if name == "in_proj_bias"]
    return []


def read_directly(model: nn.Module) -> set[nn.Module]:
    """Linear layers whose owner reads their weight instead of calling them (nn.MultiheadAttention's out_proj):
    replacing such a layer by another module changes nothing the owner computes, or breaks it."""
    return {m.out_proj for m in model.modules() if isinstance(m, nn.MultiheadAttention)}


def positions(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """For one call of an LSTM/GRU/RNN (or cell) or a MultiheadAttention: per matrix, the number of input rows each
    of its row blocks multiplies (one block, or the q, k and v thirds of a fused `in_proj_weight`). Batch included,
    as Linear's count is: the layer table calls with a batch of one. For an attention, `out_proj` is in it too."""
    if isinstance(module, RECURRENT):
        x = _argument(args, kwargs, 0, "input")
        rows = x.data if isinstance(x, PackedSequence) else x
        # Every layer and direction runs each of its matrices once per time step.
        steps = rows.numel() // module.input_size
        return {name: (steps,) for name in direct_matrices(module)}
    query, key, value = (_argument(args, kwargs, i, n) for i, n in enumerate(("query", "key", "value")))
    q, k, v = query.numel() // module.embed_dim, key.numel() // module.kdim, value.numel() // module.vdim
    blocks = {"in_proj_weight": (q, k, v), "q_proj_weight": (q,), "k_proj_weight": (k,), "v_proj_weight": (v,)}
    return {**{name: blocks[name] for name in direct_matrices(module)}, "out_proj": (q,)}


def block_macs(weight: torch.Tensor, rows: tuple[int, ...]) -> tuple[int, int]:
    """Dense and zero-skipping MACs of `weight` split into len(rows) equal row blocks, block i applied to rows[i]
    input rows: each weight is used once per row, so a skipped zero saves exactly that many."""
    dense = effective = 0
    for block, count in zip(weight.detach().chunk(len(rows)), rows):
        dense += count * block.numel()
        effective += count * int(torch.count_nonzero(block))
    return dense, effective


def _argument(args: tuple, kwargs: dict[str, Any], index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs[name]
