"""ONNX export of a model, checked against PyTorch with onnxruntime before a single byte is written."""

from __future__ import annotations

import importlib
import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from progprune_cli.atomic import write_atomic
from progprune_cli.errors import UserError, described

OPSET = 18  # what both exporters write natively in torch 2.x, and every onnxruntime >= 1.14 runs
TOLERANCE = 1e-4  # max |onnxruntime − PyTorch| over the check inputs (float32 logits)
INPUT, OUTPUT, BATCH = "input", "logits", "batch"
INSTALL = "pip install 'progprune[export]' (or: pip install onnx onnxruntime onnxscript)"


@dataclass(frozen=True)
class Exported:
    """The ONNX model in memory and how it was made."""

    proto: Any  # onnx.ModelProto
    exporter: str  # "dynamo" (torch.export + onnxscript) or "torchscript" (the legacy exporter)
    opset: int


@dataclass(frozen=True)
class Checked:
    """What the onnxruntime check measured: inputs compared, the largest gap, and the bound it had to meet."""

    samples: int
    max_abs_diff: float
    tolerance: float = TOLERANCE


def require() -> tuple[ModuleType, ModuleType]:
    """onnx and onnxruntime, or a one-line error saying what to install."""
    modules = {name: _optional(name) for name in ("onnx", "onnxruntime")}
    missing = [name for name, module in modules.items() if module is None]
    if missing:
        raise UserError(f"--format onnx needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                        f"not installed: {INSTALL}")
    return modules["onnx"], modules["onnxruntime"]  # type: ignore[return-value]


def to_onnx(model: nn.Module, example: torch.Tensor) -> Exported:
    """`model` (eval, CPU, float32) as ONNX with a dynamic batch dimension: torch.export + onnxscript where
    onnxscript is installed (torch's default since 2.9), else the legacy TorchScript exporter."""
    onnx, _ = require()
    try:
        if _optional("onnxscript") is not None:
            program = torch.onnx.export(
                model, (example,), dynamo=True, opset_version=OPSET, input_names=[INPUT], output_names=[OUTPUT],
                dynamic_shapes=({0: torch.export.Dim(BATCH)},), verbose=False)
            return Exported(program.model_proto, "dynamo", OPSET)
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter says it is deprecated
            torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=OPSET, input_names=[INPUT],
                              output_names=[OUTPUT], dynamic_axes={INPUT: {0: BATCH}, OUTPUT: {0: BATCH}})
        return Exported(onnx.load_from_string(buffer.getvalue()), "torchscript", OPSET)
    except Exception as error:  # noqa: BLE001 - whatever the exporter raises, the user needs one line
        raise UserError(f"ONNX export of {type(model).__name__} failed: {described(error)}") from None


def check(proto: Any, model: nn.Module, inputs: torch.Tensor) -> Checked:
    """Run the ONNX model in onnxruntime on `inputs`, all at once and one sample alone (the batch dimension is
    dynamic), and compare with PyTorch's outputs."""
    onnx, ort = require()
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    gap = 0.0
    for x in (inputs, inputs[:1]):
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run([OUTPUT], {INPUT: x.numpy()})[0]
        # A shape mismatch or a NaN can only mean the export is wrong: count it as an infinite gap.
        diff = float(abs(got - expected).max()) if got.shape == expected.shape else math.inf
        gap = max(gap, diff if not math.isnan(diff) else math.inf)
    return Checked(len(inputs), gap)


def export_onnx(model: nn.Module, inputs: torch.Tensor, out: Path) -> tuple[Exported, Checked]:
    """Export `model`, check it on `inputs`, then write it to `out` atomically; a model that disagrees with
    PyTorch by more than TOLERANCE is refused and nothing is written."""
    model = model.cpu().float().eval()
    inputs = inputs.cpu().float() if inputs.is_floating_point() else inputs.cpu()  # token ids stay int64
    # Two samples at least: torch.export specializes a dimension it only ever saw as 1.
    example = inputs[:2] if len(inputs) >= 2 else inputs.repeat(2, *([1] * (inputs.dim() - 1)))
    exported = to_onnx(model, example)
    try:
        checked = check(exported.proto, model, inputs)
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - onnx.checker and onnxruntime raise their own types
        raise UserError(f"ONNX model does not run in onnxruntime ({described(error)}); refusing to write {out}") \
            from None
    if not checked.max_abs_diff <= TOLERANCE:
        raise UserError(f"ONNX model disagrees with PyTorch on {checked.samples} test inputs: max |diff| "
                        f"{checked.max_abs_diff:.3g} > {TOLERANCE:g}; refusing to write {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, exported.proto.SerializeToString())
    return exported, checked


def _optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
