"""Stage 4, evaluate: every model on the same data with the same timing method; the MODEL records of results.json."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from progprune_cli.measure import (
    count_params,
    file_size,
    latency_reports,
    layer_table,
    macs_summary,
    save_dense,
    save_sparse,
)
from progprune_cli.data import inputs
from progprune_cli.parts import Parts
from progprune_cli.stages.io import StageIO
from progprune_cli.stages.loop import evaluate as accuracy_and_loss

LABELS = {"original": "original", "pruned": "pruned", "finetuned": "pruned+finetuned",
          "compacted": "pruned+finetuned, compacted", "sparse_kernels": "pruned+finetuned, sparse kernels",
          "dense_long": "dense, same epochs"}


@dataclass(frozen=True)
class TrainedModel:
    """A model a stage produced, with how many epochs made it and whether its zeros are only masked."""

    model: nn.Module
    epochs: int
    mask_only: bool


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


def evaluate_models(parts: Parts, io: StageIO, trained: dict[str, TrainedModel],
                    pruning: dict[str, Any] | None, reused: str | None) -> dict[str, Any]:
    """Measure every trained model the same way; the results.json dict (run info and config are added by the runner)."""
    test_inputs = inputs(parts.data.test)
    dense_total = sum(p.numel() for p in trained["original"].model.parameters())
    models, modules = {}, {}
    for name, t in trained.items():
        io.log(f"evaluate: {name}")
        models[name] = measure_model(parts, io, name, t.model, t.epochs, dense_total, t.mask_only)
        modules[name] = t.model
    if parts.cfg.evaluate.sparse_kernels and "finetuned" in trained:
        sparse = _sparse_kernels(parts, io, trained["finetuned"].model, test_inputs)
        if sparse is not None:
            io.log("evaluate: sparse_kernels")
            models["sparse_kernels"] = measure_model(parts, io, "sparse_kernels", sparse, trained["finetuned"].epochs,
                                                     dense_total, False, models["finetuned"])
            modules["sparse_kernels"] = sparse
    io.log(f"evaluate: timing {len(modules)} models in turns on {parts.device}")
    for name, latency in time_models(parts, modules, test_inputs).items():
        models[name]["latency"] = latency
    order = ("original", "pruned", "finetuned", "compacted", "sparse_kernels", "dense_long")
    models = {name: models[name] for name in order if name in models}
    final = "finetuned" if "finetuned" in models else "original"
    layers = models[final]["_layers"]
    for record in models.values():
        record.pop("_layers")
    return {"schema_version": 1, "status": "complete", "run": {"dense_reused_from": reused}, "config": {},
            "pruning": pruning, "models": with_speedups(models), "layers": layers}


def _sparse_kernels(parts: Parts, io: StageIO, model: Any, sample: torch.Tensor) -> Any:
    """The finetuned model with CSR kernels for its sparse-enough Linear layers, checked against dense."""
    from progprune_cli.measure import max_abs_diff, sparsify_linears

    threshold = parts.cfg.evaluate.sparse_min_sparsity
    model = copy.deepcopy(model).cpu()  # a copy: the dense finetuned model stays where it is
    sparse, names = sparsify_linears(model, threshold)
    if not names:
        io.log(f"sparse_kernels: no Linear layer is at least {threshold:.0%} sparse; no sparse-kernel row")
        return None
    diff = max_abs_diff(model, sparse, sample[:64])
    if diff > 1e-4:
        raise RuntimeError(f"sparse kernels disagree with dense by {diff:.2e} (layers {', '.join(names)})")
    io.log(f"sparse_kernels: CSR kernels for {', '.join(names)} (max |diff| vs dense {diff:.1e})")
    return sparse
