"""train.precision: the autocast context of forward and loss, and fp16's GradScaler around backward and the step."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from progprune_cli.config.checks import check_precision
from progprune_cli.errors import UserError

_AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check(precision: str, device: torch.device) -> None:
    """Raise UserError unless `precision` is one of fp32, bf16, fp16 and runs on `device`."""
    if precision not in _AMP_DTYPES:
        raise UserError(f"train.precision: got {precision!r}; allowed values are fp32, bf16, fp16")
    if precision != "fp32":
        check_precision(precision, device.type)


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Where forward and loss run: autocast to bf16 or fp16, or nothing for fp32."""
    amp = _AMP_DTYPES[precision]
    return contextlib.nullcontext() if amp is None else torch.autocast(device.type, dtype=amp)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16's narrow range needs loss scaling; bf16 has fp32's range and needs none."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def backward(objective: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    """Backward of `objective` (scaled under fp16), leaving the true gradients: unscaled, so that masking,
    clipping and the step see them as they are."""
    (objective if scaler is None else scaler.scale(objective)).backward()
    if scaler is not None:
        scaler.unscale_(optimizer)


def step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    """The optimizer step; under fp16 it is skipped when the gradients overflowed, and the scale then shrinks."""
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
