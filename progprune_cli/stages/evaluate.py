"""Stage 4, evaluate: every model on the same data with the same timing method; the MODEL records of results.json."""

from __future__ import annotations

import math
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
from progprune_cli.data import inputs, sample_of
from progprune_cli.distributed import World
from progprune_cli.config import RunConfig, StageConfig
from progprune_cli.parts import Parts
from progprune_cli.pruning.compacted import save_compacted
from progprune_cli.results.schema import (
    MODEL_LABELS,
    MODEL_ORDER,
    ROWS,
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
from progprune_cli.stages.base import STAGES, Produced, RunContext, Stage
from progprune_cli.stages.io import StageIO
from progprune_cli.stages.accuracy import evaluate as accuracy_and_loss
from progprune_cli.stages.sparse_rows import sparse_kernel_model

ORT = "onnxruntime"  # the evaluate.backends entry, and its key in each MODEL's `backends`


@STAGES.register("evaluate")
class Evaluate(Stage):
    """The last stage: every model the training stages made (and the compacted one, where the strategy removes
    channels) measured the same way; its result is the results record. It keeps no checkpoint: each attempt
    measures again, on the machine it runs on."""

    name = "evaluate"
    output = "results"  # type: ignore[assignment]  (its key in Produced; it adds no model row of its own)
    checkpointed = False

    def section(self, cfg: RunConfig) -> StageConfig:
        raise NotImplementedError("evaluate trains nothing")

    def run(self, run: RunContext, produced: Produced, progress: dict[str, Any] | None) -> Results:
        cfg = run.parts.cfg
        trained = {}
        for row in ROWS:
            if row.stage is not None and row.model in produced:
                stage = STAGES.get(row.stage)()
                trained[row.model] = TrainedModel(stage.model_of(produced[row.model]), stage.epochs(cfg),
                                                  stage.mask_only, run.io.final_val.get(row.stage))
        pruned, finetuned = produced.pruned, produced.get("finetuned")
        if pruned is not None and finetuned is not None and run.parts.strategy is not None:
            compacted = run.parts.strategy.compact(finetuned, pruned.unit_masks, run.parts.data.info)
            if compacted is not None:
                # Tensors and plain values only (state dict, kept widths, masks): it loads without unpickling code.
                save_compacted(run.io.checkpoint("compacted"), compacted, pruned.unit_masks, cfg.model,
                               run.parts.data.info, granularity=run.parts.strategy.granularity)
                trained["compacted"] = TrainedModel(compacted, trained["finetuned"].epochs, mask_only=False)
        trained = {name: trained[name] for name in MODEL_ORDER if name in trained}
        # Each rank skips the same val passes, or the accuracy passes' all-reduces would pair up wrongly.
        run.world.same(sorted(name for name, t in trained.items() if t.val is not None),
                       "the models whose val figures the training loop measured")
        return evaluate_models(run.parts, run.io, trained, pruned.pruning if pruned is not None else None,
                               produced.original.reused_from if produced.original is not None else None,
                               world=run.world)


@dataclass(frozen=True)
class TrainedModel:
    """A model a stage produced, with how many epochs made it and whether its zeros are only masked."""

    model: nn.Module
    epochs: int
    mask_only: bool
    val: tuple[float, float] | None = None  # (accuracy, loss) on the val split, when its stage's loop measured them



@dataclass(frozen=True)
class Measured:
    """A model's record and its per-layer rows (results.json keeps the final model's rows as its `layers`)."""

    record: ModelRecord
    layers: tuple[LayerRow, ...]


def measure_model(parts: Parts, io: StageIO, name: str, model: nn.Module, epochs: int, dense_total: int,
                  mask_only: bool, same_weights_as: Measured | None = None, *, world: World,
                  val: tuple[float, float] | None = None) -> Measured:
    """The MODEL record (docs/run-folder.md) of `model`, all but its latency (`time_models` times every model
    together), with its layer rows; `same_weights_as` (the same weights in another form) supplies the parameter,
    MAC, size and layer figures instead of counting them again; `val`, the val split's (accuracy, loss) that its
    stage's loop measured on these weights with this same pass, instead of passing over the split again. Under
    torchrun (`world`) the ranks share the accuracy passes."""
    data = parts.data
    model = model.to(parts.device).eval()
    accuracy, loss = {}, {}
    train = sample_of(data.train_eval, parts.cfg.evaluate.train_samples, parts.cfg.seed)
    for split, dataset in (("train", train), ("val", data.val), ("test", data.test)):
        if split == "val" and val is not None:
            accuracy[split], loss[split] = val
            continue
        accuracy[split], loss[split] = accuracy_and_loss(model, dataset, parts.loss_fn, parts.device, world=world)
    # Perplexity is exp of the mean loss per token; only the loss itself is summed, so the two agree exactly.
    perplexity = Splits(**{k: _exp(v) for k, v in loss.items()}) if data.info.vocab else None
    record = ModelRecord(label=MODEL_LABELS[name], epochs=epochs, accuracy=Splits(**accuracy), loss=Splits(**loss),
                         mask_only=mask_only, perplexity=perplexity)
    if same_weights_as is not None:
        same = same_weights_as.record
        return Measured(replace(record, params=same.params, macs=same.macs, size_bytes=same.size_bytes),
                        same_weights_as.layers)
    info = data.info
    rows = layer_table(model, info.example(1))
    sizes = _sizes(io, name, model, compacted=not mask_only and name == "compacted")
    # strict: a key the measuring code adds but the schema lacks is an error here, not silently dropped.
    record = replace(record, params=Params.from_json(count_params(model, dense_total=dense_total), strict=True),
                     macs=Macs.from_json(macs_summary(rows), strict=True), size_bytes=sizes)
    return Measured(record, tuple(LayerRow.from_json(row, strict=True, path=f"layers[{i}]")
                                  for i, row in enumerate(rows)))


def _exp(loss: float) -> float:
    """exp(loss), capped near float's largest value: an untrained model's huge loss is a huge perplexity, not inf
    (results.json holds finite numbers only)."""
    return math.exp(min(loss, 709.0))


def time_models(parts: Parts, models: dict[str, nn.Module], inputs: torch.Tensor,
                sessions: dict[str, nn.Module] | None = None) -> tuple[dict[str, dict[str, Any]], dict[str, dict]]:
    """The latency record of every model, timed in turns under the same settings (evaluate.* in the config), and
    of every onnxruntime session (`sessions`, by model name). On the CPU the sessions take their turns among the
    torch models; a run on a GPU times them apart on the CPU, where interleaving with GPU work would mean nothing."""
    ev = parts.cfg.evaluate
    settings = (ev.batch_size, ev.latency_batch, ev.warmup, ev.repeats, ev.threads)
    stopping = {"min_repeats": ev.min_repeats, "target_spread": ev.target_spread}
    on_device = {name: model.to(parts.device) for name, model in models.items()}
    ort = {f"{name}@{ORT}": session for name, session in (sessions or {}).items()}
    if parts.device.type == "cpu":
        timed = latency_reports({**on_device, **ort}, inputs, *settings, parts.device, **stopping)
    else:
        timed = latency_reports(on_device, inputs, *settings, parts.device, **stopping)
        if ort:
            timed |= latency_reports(ort, inputs.cpu(), *settings, torch.device("cpu"), **stopping)
    return {name: timed[name] for name in on_device}, {name: timed[f"{name}@{ORT}"] for name in sessions or {}}


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
    # Each other backend's speedup is against the original in that backend (None where the original was not timed).
    base_backends = {k: v.eval_runtime_s.median for k, v in (models["original"].backends or {}).items()}
    out = {}
    for name, record in models.items():
        effective, median = record.macs.effective, record.latency.eval_runtime_s.median
        macs = replace(record.macs, theoretical_speedup=base_macs / effective if effective else None)
        latency = replace(record.latency, measured_speedup=base / median if median > 0 else None)
        backends = None if record.backends is None else {
            k: replace(v, measured_speedup=_ratio(base_backends.get(k), v.eval_runtime_s.median))
            for k, v in record.backends.items()}
        out[name] = replace(record, macs=macs, latency=latency, backends=backends)
    return out


def _ratio(base: float | None, median: float | None) -> float | None:
    return base / median if base is not None and median is not None and median > 0 else None


def evaluate_models(parts: Parts, io: StageIO, trained: dict[str, TrainedModel],
                    log: PruningLog | None, reused: str | None, *, world: World) -> Results:
    """Measure every trained model the same way; the results record (the runner adds run info and config), with
    the prune stage's step log; every rank of `world` calls it (the accuracy passes are shared)."""
    # Timing a bounded number of inputs keeps the measurement phase short on big test sets; accuracy uses them all.
    test_inputs = inputs(parts.data.test, parts.cfg.evaluate.timing_samples)
    dense_total = sum(p.numel() for p in trained["original"].model.parameters())
    measured, modules = {}, {}
    for name, t in trained.items():
        io.log(f"evaluate: {name}")
        measured[name] = measure_model(parts, io, name, t.model, t.epochs, dense_total, t.mask_only, world=world,
                                       val=t.val)
        modules[name] = t.model
    notes: list[str] = []
    if parts.cfg.evaluate.sparse_kernels and "finetuned" in trained:
        sparse, note = sparse_kernel_model(parts, io, trained["finetuned"].model, test_inputs)
        notes += [note] if note is not None else []
        if sparse is not None:
            io.log("evaluate: sparse_kernels")
            measured["sparse_kernels"] = measure_model(parts, io, "sparse_kernels", sparse,
                                                       trained["finetuned"].epochs, dense_total, False,
                                                       measured["finetuned"], world=world)
            modules["sparse_kernels"] = sparse
    sessions: dict[str, nn.Module] = {}
    if ORT in parts.cfg.evaluate.backends:
        from progprune_cli.measure.onnxruntime_backend import onnxruntime_models

        # sparse_kernels is left out: its sparse tensors have no ONNX form, and its weights are finetuned's.
        exportable = {name: model for name, model in modules.items() if name != "sparse_kernels"}
        io.log(f"evaluate: exporting {len(exportable)} models to ONNX for {ORT}")
        sessions, failed = onnxruntime_models(exportable, test_inputs[:64], io.run_dir / "checkpoints" / "onnx",
                                              parts.cfg.evaluate.threads)
        for note in failed:
            io.log(note)
        notes += failed
    io.log(f"evaluate: timing {len(modules) + len(sessions)} models in turns on {parts.device}"
           + (f" ({len(sessions)} of them in {ORT})" if sessions else ""))
    latencies, ort = time_models(parts, modules, test_inputs, sessions)
    models = {name: replace(m.record, latency=Latency.from_json(latencies[name], strict=True,
                                                                path=f"models.{name}.latency"),
                            backends={ORT: Latency.from_json(ort[name], strict=True,
                                                             path=f"models.{name}.backends.{ORT}")}
                            if name in ort else None)
              for name, m in measured.items()}
    results = Results(status="complete", run=RunInfo(dense_reused_from=reused), pruning=log,
                      models=with_speedups({name: models[name] for name in MODEL_ORDER if name in models}),
                      notes=tuple(notes))
    final = results.final_model()
    return replace(results, layers=measured[final].layers if final is not None else ())
