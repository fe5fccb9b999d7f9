"""Stage 4, evaluate: every model on the same data with the same timing method; the MODEL records of results.json."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
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
from progprune_cli.results.schema import (
    MODEL_LABELS,
    MODEL_ORDER,
    LayerRow,
    Latency,
    Macs,
    ModelRecord,
    Params,
    PruningLog,
    Results,
    RunInfo,
    Sizes,
    Splits,
)
from progprune_cli.stages.io import StageIO
from progprune_cli.stages.loop import evaluate as accuracy_and_loss


@dataclass(frozen=True)
class TrainedModel:
    """A model a stage produced, with how many epochs made it and whether its zeros are only masked."""

    model: nn.Module
    epochs: int
    mask_only: bool


@dataclass(frozen=True)
class Measured:
    """A model's record and its per-layer rows (results.json keeps the final model's rows as its `layers`)."""

    record: ModelRecord
    layers: tuple[LayerRow, ...]


def measure_model(parts: Parts, io: StageIO, name: str, model: nn.Module, epochs: int, dense_total: int,
                  mask_only: bool, same_weights_as: Measured | None = None) -> Measured:
    """The MODEL record (docs/run-folder.md) of `model`, all but its latency (`time_models` times every model
    together), with its layer rows; `same_weights_as` (the same weights in another form) supplies the parameter,
    MAC, size and layer figures instead of counting them again."""
    data = parts.data
    model = model.to(parts.device).eval()
    accuracy, loss = {}, {}
    for split, dataset in (("train", data.train_eval), ("val", data.val), ("test", data.test)):
        accuracy[split], loss[split] = accuracy_and_loss(model, dataset, parts.loss_fn, parts.device)
    record = ModelRecord(label=MODEL_LABELS[name], epochs=epochs, accuracy=Splits(**accuracy), loss=Splits(**loss),
                         mask_only=mask_only)
    if same_weights_as is not None:
        same = same_weights_as.record
        return Measured(replace(record, params=same.params, macs=same.macs, size_bytes=same.size_bytes),
                        same_weights_as.layers)
    info = data.info
    rows = layer_table(model, (info.channels, info.height, info.width))
    sizes = _sizes(io, name, model, compacted=not mask_only and name == "compacted")
    # strict: a key the measuring code adds but the schema lacks is an error here, not silently dropped.
    record = replace(record, params=Params.from_json(count_params(model, dense_total=dense_total), strict=True),
                     macs=Macs.from_json(macs_summary(rows), strict=True), size_bytes=sizes)
    return Measured(record, tuple(LayerRow.from_json(row, strict=True, path=f"layers[{i}]")
                                  for i, row in enumerate(rows)))


def time_models(parts: Parts, models: dict[str, nn.Module], inputs: torch.Tensor) -> dict[str, dict[str, Any]]:
    """The latency record of every model, timed in turns under the same settings (evaluate.* in the config)."""
    ev = parts.cfg.evaluate
    on_device = {name: model.to(parts.device) for name, model in models.items()}
    return latency_reports(on_device, inputs, ev.batch_size, ev.latency_batch, ev.warmup, ev.repeats, ev.threads,
                           parts.device)


def _sizes(io: StageIO, name: str, model: nn.Module, compacted: bool) -> Sizes:
    """Bytes on disk of the model saved dense, sparse-encoded and (where there is one) compacted."""
    folder = io.run_dir / "checkpoints" / "encoded"
    folder.mkdir(exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    dense, sparse = folder / f"{name}.dense.pt", folder / f"{name}.sparse.zlib"
    save_dense(state, dense)
    save_sparse(state, sparse)
    return Sizes(dense=None if compacted else file_size(dense), sparse=file_size(sparse),
                 compacted=file_size(dense) if compacted else None)


def with_speedups(models: dict[str, ModelRecord]) -> dict[str, ModelRecord]:
    """Measured speedup = the original's median eval runtime / the model's; theoretical = the original's dense
    MACs / the model's effective MACs (so a compacted model is compared with the original, not with itself)."""
    base = models["original"].latency.eval_runtime_s.median
    base_macs = models["original"].macs.dense
    out = {}
    for name, record in models.items():
        effective, median = record.macs.effective, record.latency.eval_runtime_s.median
        macs = replace(record.macs, theoretical_speedup=base_macs / effective if effective else None)
        latency = replace(record.latency, measured_speedup=base / median if median > 0 else None)
        out[name] = replace(record, macs=macs, latency=latency)
    return out


def evaluate_models(parts: Parts, io: StageIO, trained: dict[str, TrainedModel],
                    pruning: dict[str, Any] | None, reused: str | None) -> Results:
    """Measure every trained model the same way; the results record (the runner adds run info and config).
    `pruning` is the prune stage's step log as a plain dict (also its pruning.json)."""
    # First, so a log the schema does not know fails before minutes of measuring rather than after.
    log = None if pruning is None else PruningLog.from_json(pruning, strict=True, path="pruning")
    test_inputs = inputs(parts.data.test)
    dense_total = sum(p.numel() for p in trained["original"].model.parameters())
    measured, modules = {}, {}
    for name, t in trained.items():
        io.log(f"evaluate: {name}")
        measured[name] = measure_model(parts, io, name, t.model, t.epochs, dense_total, t.mask_only)
        modules[name] = t.model
    if parts.cfg.evaluate.sparse_kernels and "finetuned" in trained:
        sparse = _sparse_kernels(parts, io, trained["finetuned"].model, test_inputs)
        if sparse is not None:
            io.log("evaluate: sparse_kernels")
            measured["sparse_kernels"] = measure_model(parts, io, "sparse_kernels", sparse,
                                                       trained["finetuned"].epochs, dense_total, False,
                                                       measured["finetuned"])
            modules["sparse_kernels"] = sparse
    io.log(f"evaluate: timing {len(modules)} models in turns on {parts.device}")
    latencies = time_models(parts, modules, test_inputs)
    models = {name: replace(m.record, latency=Latency.from_json(latencies[name], strict=True,
                                                                path=f"models.{name}.latency"))
              for name, m in measured.items()}
    results = Results(status="complete", run=RunInfo(dense_reused_from=reused), pruning=log,
                      models=with_speedups({name: models[name] for name in MODEL_ORDER if name in models}))
    final = results.final_model()
    return replace(results, layers=measured[final].layers if final is not None else ())


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
