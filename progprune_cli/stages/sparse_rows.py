"""The evaluate stage's sparse-kernel row: the finetuned model with CSR or 2:4 semi-structured kernels, checked
against dense, and the note that says what it is (or why there is none)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from progprune_cli.errors import described
from progprune_cli.measure import measure_interleaved
from progprune_cli.parts import Parts
from progprune_cli.pruning.pattern import SEMI_STRUCTURED
from progprune_cli.stages.io import StageIO


def sparse_kernel_model(parts: Parts, io: StageIO, model: Any, sample: torch.Tensor) -> tuple[Any, str | None]:
    """The finetuned model with sparse kernels, checked against dense, and the results' note on it: torch's 2:4
    semi-structured kernels when the strategy used strategy.pattern=2:4, else CSR kernels for its sparse-enough
    Linear layers (None and why when there is no such row)."""
    from progprune_cli.measure import max_abs_diff, sparsify_linears

    strategy = parts.cfg.strategy
    if strategy is not None and strategy.pattern_nm == SEMI_STRUCTURED:
        return _semi_structured(parts, io, model, sample)
    threshold = parts.cfg.evaluate.sparse_min_sparsity
    model = copy.deepcopy(model).cpu()  # a copy: the dense finetuned model stays where it is
    sparse, names = sparsify_linears(model, threshold)
    if not names:
        io.log(f"sparse_kernels: no Linear layer is at least {threshold:.0%} sparse; no sparse-kernel row")
        return None, None
    diff = max_abs_diff(model, sparse, sample[:64])
    if diff > 1e-4:
        raise RuntimeError(f"sparse kernels disagree with dense by {diff:.2e} (layers {', '.join(names)})")
    io.log(f"sparse_kernels: CSR kernels for {', '.join(names)} (max |diff| vs dense {diff:.1e})")
    return sparse, None


def _semi_structured(parts: Parts, io: StageIO, model: nn.Module, sample: torch.Tensor) -> tuple[Any, str | None]:
    """The finetuned model in float16 with torch.sparse's 2:4 kernels for its eligible Linear layers, or None; the
    note says which (or why there is no row) and what the kernels gain over the same model dense in float16.

    UNVERIFIED on a GPU here (written from torch 2.14's torch.sparse.semi_structured): only the CPU path, the
    "absent, because" note, has run."""
    from progprune_cli.measure.sparse_kernels import semi_structured_linears, semi_structured_unavailable

    why = semi_structured_unavailable(parts.device)
    if why is not None:
        return _absent(io, why)
    check = sample[:64].to(parts.device)
    try:
        sparse, dense, names = semi_structured_linears(model.to(parts.device))
        if not names:
            return _absent(io, "no Linear layer is 2:4 with a shape the kernels take")
        with torch.inference_mode():
            expected, got = dense(check), sparse(check)
    except (RuntimeError, NotImplementedError) as error:  # e.g. a torch build without cuSPARSELt or CUTLASS kernels
        # The run's other results are done by now: a kernel that cannot run costs this row, not the run.
        return _absent(io, f"torch.sparse raised {described(error)}")
    diff = float((got - expected).abs().max())
    # fp16 sums in another order differ in the last bits: allow 1% of the output's scale, not float32's 1e-4.
    bound = 1e-2 * (1.0 + float(expected.abs().max()))
    if not diff <= bound:
        return _absent(io, f"the 2:4 kernels disagree with the dense float16 model by {diff:.2e} (> {bound:.2e}; "
                           f"layers {', '.join(names)})")
    ev = parts.cfg.evaluate
    pair = measure_interleaved({"dense": dense, "sparse": sparse}, sample.to(parts.device), ev.batch_size, ev.warmup,
                               ev.repeats, ev.threads, parts.device, min_repeats=ev.min_repeats,
                               target_spread=ev.target_spread)
    gain = pair["dense"]["median"] / pair["sparse"]["median"] if pair["sparse"]["median"] > 0 else None
    note = (f"evaluate.sparse_kernels: 2:4 semi-structured kernels (torch.sparse) for {', '.join(names)}; the row "
            f"runs the whole model in float16 (max |diff| vs dense float16 {diff:.1e}), so its speedup over the "
            "float32 original includes float16's own; vs the same model dense in float16: "
            + ("not measurable" if gain is None else f"{gain:.2f}×"))
    io.log(note)
    return sparse, note


def _absent(io: StageIO, why: str) -> tuple[None, str]:
    note = f"evaluate.sparse_kernels: no sparse-kernel row: {why}"
    io.log(note)
    return None, note
