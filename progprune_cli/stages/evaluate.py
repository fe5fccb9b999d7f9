"""Stage 4, evaluate: every model on the same data with the same timing method; the MODEL records of results.json."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from progprune_cli.measure import (
    count_params,
    file_size,
    latency_reports,
    layer_table,
    macs_summary,
    save_dense,
    save_sparse,
)
from progprune_cli.parts import Parts
from progprune_cli.stages.io import StageIO
from progprune_cli.stages.loop import evaluate as accuracy_and_loss

LABELS = {"original": "original", "pruned": "pruned", "finetuned": "pruned+finetuned",
          "compacted": "pruned+finetuned, compacted", "sparse_kernels": "pruned+finetuned, sparse kernels",
          "dense_long": "dense, same epochs"}


def stack(dataset: Dataset) -> torch.Tensor:
    """The dataset's inputs as one tensor, so timing excludes data loading."""
    return torch.stack([dataset[i][0] for i in range(len(dataset))])  # type: ignore[arg-type]


def measure_model(parts: Parts, io: StageIO, name: str, model: nn.Module, epochs: int, dense_total: int,
                  mask_only: bool,
                  same_weights_as: dict[str, Any] | None = None) -> dict[str, Any]:
    """One MODEL record (docs/run-folder.md) for `model`, all but its latency (`time_models` times every model
    together); `same_weights_as` (a record of the same weights in another form) supplies the parameter, MAC and
    size figures instead of counting them again."""
    data = parts.data
    model = model.to(parts.device).eval()
    accuracy, loss = {}, {}
    for split, dataset in (("train", data.train_eval), ("val", data.val), ("test", data.test)):
        accuracy[split], loss[split] = accuracy_and_loss(model, dataset, parts.loss_fn, parts.device)
    record = {"label": LABELS[name], "epochs": epochs, "accuracy": accuracy, "loss": loss, "mask_only": mask_only}
    if same_weights_as is not None:
        return {**record, **{k: same_weights_as[k] for k in ("params", "macs", "size_bytes", "_layers")}}
    info = data.info
    layers = layer_table(model, (info.channels, info.height, info.width))
    sizes = _sizes(io, name, model, compacted=not mask_only and name == "compacted")
    return {**record, "params": count_params(model, dense_total=dense_total), "macs": macs_summary(layers),
            "size_bytes": sizes, "_layers": layers}


def time_models(parts: Parts, models: dict[str, nn.Module], inputs: torch.Tensor) -> dict[str, dict[str, Any]]:
    """The latency record of every model, timed in turns under the same settings (evaluate.* in the config)."""
    ev = parts.cfg.evaluate
    on_device = {name: model.to(parts.device) for name, model in models.items()}
    return latency_reports(on_device, inputs, ev.batch_size, ev.latency_batch, ev.warmup, ev.repeats, ev.threads,
                           parts.device)


def _sizes(io: StageIO, name: str, model: nn.Module, compacted: bool) -> dict[str, int | None]:
    """Bytes on disk of the model saved dense, sparse-encoded and (where there is one) compacted."""
    folder = io.run_dir / "checkpoints" / "encoded"
    folder.mkdir(exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    dense, sparse = folder / f"{name}.dense.pt", folder / f"{name}.sparse.zlib"
    save_dense(state, dense)
    save_sparse(state, sparse)
    return {"dense": None if compacted else file_size(dense), "sparse": file_size(sparse),
            "compacted": file_size(dense) if compacted else None}


def with_speedups(models: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Measured speedup = the original's median eval runtime / the model's; theoretical = the original's dense
    MACs / the model's effective MACs (so a compacted model is compared with the original, not with itself)."""
    base = models["original"]["latency"]["eval_runtime_s"]["median"]
    base_macs = models["original"]["macs"]["dense"]
    for record in models.values():
        effective = record["macs"]["effective"]
        record["macs"]["theoretical_speedup"] = base_macs / effective if effective else None
        median = record["latency"]["eval_runtime_s"]["median"]
        record["latency"]["measured_speedup"] = base / median if median > 0 else None
    return models
