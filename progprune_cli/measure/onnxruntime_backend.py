"""evaluate.backends onnxruntime: each model exported and checked by measure/onnx_export.py, then run by an onnxruntime
CPU session behind nn.Module's call, so measure/latency.py times it in turns with the torch models."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from progprune_cli.errors import UserError
from progprune_cli.measure import onnx_export
from progprune_cli.measure.onnx_export import INPUT, INSTALL, OUTPUT, export_onnx

NAME = "onnxruntime"
NEEDS = ("onnx", "onnxruntime")  # onnxscript is optional: without it export_onnx uses the TorchScript exporter


def require() -> None:
    """The one-line error (before any run folder exists) when onnxruntime timing cannot run here."""
    missing = [name for name in NEEDS if onnx_export._optional(name) is None]
    if missing:
        raise UserError(f"evaluate.backends: {NAME} needs {' and '.join(missing)}, which "
                        f"{'is' if len(missing) == 1 else 'are'} not installed: {INSTALL}")


class OnnxRuntimeModel(nn.Module):
    """An onnxruntime InferenceSession called like a torch model: float32 CPU tensor in, logits tensor out."""

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.session = session

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Timed as it stands, which is fair beside the torch models: the conversion is inside the timed call, and it
        # is tiny next to inference (x.numpy() shares the CPU tensor's memory; from_numpy wraps the output uncopied).
        return torch.from_numpy(self.session.run([OUTPUT], {INPUT: x.numpy()})[0])


def session(proto: Any, threads: int) -> Any:
    """A CPU session with `threads` intra-op threads, one inter-op thread and sequential execution: the torch
    models' setting (evaluate.threads), so neither side gets more cores."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Pool threads spinning after a call would take cores from the torch model timed next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(proto.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])


def onnxruntime_models(models: dict[str, nn.Module], sample: torch.Tensor, folder: Path,
                       threads: int) -> tuple[dict[str, OnnxRuntimeModel], list[str]]:
    """Each model exported to folder/<name>.onnx (written only once onnxruntime's outputs on `sample` match
    PyTorch's within onnx_export.TOLERANCE) and opened in a session; a model that fails either is left out and a
    note says why, so the torch results of a finished run are never lost to an export problem."""
    sessions, notes = {}, []
    for name, model in models.items():
        try:
            # A copy: export_onnx moves the model to the CPU in float32, and the torch timings need it as it is.
            exported, _ = export_onnx(copy.deepcopy(model), sample, folder / f"{name}.onnx")
        except UserError as error:
            notes.append(f"evaluate.backends: {name} is not timed in {NAME}: {error}")
            continue
        sessions[name] = OnnxRuntimeModel(session(exported.proto, threads))
    return sessions, notes
