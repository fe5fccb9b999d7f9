"""Per-layer multiply-accumulate counts (dense and theoretical zero-skipping) of every Conv2d and Linear."""

from __future__ import annotations

import torch
from torch import nn

from progprune_cli.measure.modes import evaluating

MEASURED = (nn.Conv2d, nn.Linear)


def layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    """Dense MACs of one call on one sample (the output is batch 1). Bias adds are not counted: they are
    one add per output element, negligible beside the products and unchanged by weight pruning."""
    if isinstance(module, nn.Conv2d):
        out_h, out_w = output.shape[-2:]
        kh, kw = module.kernel_size
        return out_h * out_w * module.out_channels * (module.in_channels // module.groups) * kh * kw
    # Linear applies to the last dim; every leading non-batch position (e.g. a sequence) is one more matmul row.
    positions = output.numel() // module.out_features
    return positions * module.out_features * module.in_features


def _measure_calls(model: nn.Module, input_shape: tuple[int, ...] | torch.Tensor) -> dict[nn.Module, int]:
    """Dense MACs per layer from one forward pass on zeros (or on the given batch-1 `input_shape` tensor, e.g. token
    ids), so output sizes are measured, not derived by hand."""
    macs: dict[nn.Module, int] = {}

    def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        # A layer called twice (weight sharing) does the work twice.
        macs[module] = macs.get(module, 0) + layer_macs(module, output)

    first = next(model.parameters(), None)
    device = first.device if first is not None else None
    if isinstance(input_shape, torch.Tensor):
        x = input_shape.to(device)
    else:
        x = torch.zeros((1, *input_shape), device=device,
                        dtype=first.dtype if first is not None and first.is_floating_point() else None)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, MEASURED)]
    try:
        # Eval mode: BatchNorm in training mode rejects a batch of one.
        with evaluating(model), torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return macs


def layer_table(model: nn.Module, input_shape: tuple[int, ...] | torch.Tensor) -> list[dict]:
    """One row per Conv2d/Linear in module order (the `layers` list of results.json); `input_shape` has no
    batch dim (or is one batch-1 input, DataInfo.example(1)). Counts cover the weight only. A layer the forward
    pass never reaches reports 0 MACs."""
    macs = _measure_calls(model, input_shape)
    rows = []
    for name, module in model.named_modules():
        if not isinstance(module, MEASURED):
            continue
        weight = module.weight.detach()  # the masked weight under torch.nn.utils.prune
        params, nonzero = weight.numel(), int(torch.count_nonzero(weight))
        dense = macs.get(module, 0)
        rows.append({
            "name": name,
            "type": type(module).__name__,
            "shape": list(weight.shape),
            "params": params,
            "nonzero": nonzero,
            "sparsity": 1.0 - nonzero / params,
            "macs_dense": dense,
            # Theoretical: what a kernel that skips every zero weight would do. Exact in integers, because
            # dense MACs are a whole multiple of the weight count (each weight is used once per position).
            "macs_effective": dense * nonzero // params,
        })
    return rows


def macs_summary(rows: list[dict]) -> dict:
    """Whole-model `{"dense", "effective", "theoretical_speedup"}`; the speedup is None when nothing is left."""
    dense = sum(row["macs_dense"] for row in rows)
    effective = sum(row["macs_effective"] for row in rows)
    return {"dense": dense, "effective": effective, "theoretical_speedup": dense / effective if effective else None}
