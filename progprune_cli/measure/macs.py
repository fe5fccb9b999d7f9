"""Per-layer multiply-accumulate counts (dense and theoretical zero-skipping) of every Conv2d and Linear (transformers'
Conv1D too), and of the weight matrices nn.LSTM/GRU/RNN and nn.MultiheadAttention read themselves
(measure/matrices.py)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from progprune_cli.measure.matrices import HOLDERS, block_macs, direct_matrices, positions
from progprune_cli.measure.modes import evaluating
from progprune_cli.pruning.layout import is_transposed, transposed_layers

Rows = dict[tuple[nn.Module, str], tuple[int, ...]]  # (module, local matrix name) → input rows per row block


def layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    """Dense MACs of one call on one sample (the output is batch 1). Bias adds are not counted: they are
    one add per output element, negligible beside the products and unchanged by weight pruning."""
    if isinstance(module, nn.Conv2d):
        out_h, out_w = output.shape[-2:]
        kh, kw = module.kernel_size
        return out_h * out_w * module.out_channels * (module.in_channels // module.groups) * kh * kw
    # Linear applies to the last dim; every leading non-batch position (e.g. a sequence) is one more matmul row.
    # transformers' Conv1D is a Linear whose weight is stored (in, out): its outputs are the weight's last dim.
    weight = module.weight
    out_features = weight.shape[-1] if is_transposed(module) else weight.shape[0]
    return output.numel() // out_features * weight.numel()


def measured_layers() -> tuple[type[nn.Module], ...]:
    """The layers hooked and listed: Conv2d, Linear, and transformers' Conv1D where a model has loaded it (it is
    never imported here)."""
    return (nn.Conv2d, nn.Linear, *transposed_layers())


def _measure_calls(model: nn.Module, input_shape: tuple[int, ...] | torch.Tensor) -> tuple[dict[nn.Module, int], Rows]:
    """Dense MACs per Conv2d/Linear/Conv1D and input rows per directly-read matrix, from one forward pass on zeros (or
    on the given batch-1 `input_shape` tensor, e.g. token ids), so output sizes are measured, not derived by hand."""
    macs: dict[nn.Module, int] = {}
    rows: Rows = {}

    def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        # A layer called twice (weight sharing) does the work twice.
        macs[module] = macs.get(module, 0) + layer_macs(module, output)

    def holder_hook(module: nn.Module, args: tuple, kwargs: dict[str, Any], _output: Any) -> None:
        for name, counts in positions(module, args, kwargs).items():
            if name == "out_proj":  # read as a tensor by the attention, so its own hook never runs
                macs[module.out_proj] = macs.get(module.out_proj, 0) + counts[0] * module.out_proj.weight.numel()
                continue
            before = rows.get((module, name), (0,) * len(counts))
            rows[(module, name)] = tuple(a + b for a, b in zip(before, counts))

    first = next(model.parameters(), None)
    device = first.device if first is not None else None
    if isinstance(input_shape, torch.Tensor):
        x = input_shape.to(device)
    else:
        x = torch.zeros((1, *input_shape), device=device,
                        dtype=first.dtype if first is not None and first.is_floating_point() else None)
    measured = measured_layers()
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, measured)]
    handles += [m.register_forward_hook(holder_hook, with_kwargs=True) for m in model.modules()
                if isinstance(m, HOLDERS)]
    try:
        # Eval mode: BatchNorm in training mode rejects a batch of one.
        with evaluating(model), torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return macs, rows


def layer_table(model: nn.Module, input_shape: tuple[int, ...] | torch.Tensor) -> list[dict]:
    """One row per Conv2d/Linear (transformers' Conv1D too, its shape as stored: (in, out)), and per weight matrix of
    an LSTM/GRU/RNN or MultiheadAttention (named by its parameter, e.g. `lstm.weight_ih_l0`), in module order (the
    `layers` list of results.json); `input_shape` has no batch dim (or is one batch-1 input, DataInfo.example(1)).
    Counts cover the weight only. A layer the forward pass never reaches reports 0 MACs."""
    macs, uses = _measure_calls(model, input_shape)
    measured = measured_layers()
    rows = []
    for name, module in model.named_modules():
        if isinstance(module, measured):
            weight = module.weight.detach()  # the masked weight under torch.nn.utils.prune
            dense = macs.get(module, 0)
            # Theoretical: what a kernel that skips every zero weight would do. Exact in integers, because
            # dense MACs are a whole multiple of the weight count (each weight is used once per position).
            rows.append(_row(name, type(module).__name__, weight, dense, dense * _nonzero(weight) // weight.numel()))
        for matrix in direct_matrices(module):
            weight = getattr(module, matrix).detach()
            # A fused q/k/v projection's thirds may see different lengths (cross-attention): counted per block.
            dense, effective = block_macs(weight, uses[(module, matrix)]) if (module, matrix) in uses else (0, 0)
            rows.append(_row(f"{name}.{matrix}" if name else matrix, type(module).__name__, weight, dense, effective))
    return rows


def _row(name: str, kind: str, weight: torch.Tensor, dense: int, effective: int) -> dict:
    params, nonzero = weight.numel(), _nonzero(weight)
    return {"name": name, "type": kind, "shape": list(weight.shape), "params": params, "nonzero": nonzero,
            "sparsity": 1.0 - nonzero / params, "macs_dense": dense, "macs_effective": effective}


def _nonzero(weight: torch.Tensor) -> int:
    return int(torch.count_nonzero(weight))


def macs_summary(rows: list[dict]) -> dict:
    """Whole-model `{"dense", "effective", "theoretical_speedup"}`; the speedup is None when nothing is left."""
    dense = sum(row["macs_dense"] for row in rows)
    effective = sum(row["macs_effective"] for row in rows)
    return {"dense": dense, "effective": effective, "theoretical_speedup": dense / effective if effective else None}
