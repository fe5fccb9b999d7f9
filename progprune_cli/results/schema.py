"""results.json as typed records, and the one definition of model order, labels, stages, columns and version."""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import dataclass, field, fields, replace
from functools import cache
from typing import Any, TypeVar, Union

# Bump when results.json changes shape (a key renamed, moved or retyped), and say what changed in
# docs/run-folder.md; readers refuse other versions instead of misreading them.
SCHEMA_VERSION = 1

@dataclass(frozen=True)
class Row:
    """One row of every table: a model a run can hold, in the order every reader shows them. `stage` trains it (and
    logs metrics.csv rows under that name); None: the evaluate stage derives it from another model. A training
    stage's own seed is the run's seed + `seed_offset`; on plots/progress.png it is a band of `shade` on the pruned
    model's path, or (`line`) a baseline drawn as its own dashed line. `saved`: checkpoints/<model>.pt is kept."""

    model: str
    label: str  # written as the MODEL record's "label", the row name in every table
    stage: str | None = None
    seed_offset: int = 0
    shade: str | None = None
    line: str | None = None
    saved: bool = True


# The one table of models and stages (docs/run-folder.md). A stage that adds a model row is one module (a Stage
# registered under its name), one row here, and its config section.
ROWS = (
    Row("original", "original", stage="train", seed_offset=0, shade="#dbe9f6"),
    Row("pruned", "pruned", stage="prune", seed_offset=1, shade="#fbe3d6"),
    Row("finetuned", "pruned+finetuned", stage="finetune", seed_offset=2, shade="#e2f0d9"),
    Row("compacted", "compacted"),
    Row("sparse_kernels", "sparse kernels", saved=False),
    Row("dense_long", "dense, same epochs", stage="dense_long", seed_offset=3, line="tab:gray"),
    Row("scratch", "scratch (compacted arch)", stage="scratch", seed_offset=4, line="tab:purple"),
)
MODEL_ORDER = tuple(row.model for row in ROWS)
MODEL_LABELS = {row.model: row.label for row in ROWS}
SAVED_MODELS = tuple(row.model for row in ROWS if row.saved)  # what `load_model` and `progprune export` can read
STAGE_ROWS = {row.stage: row for row in ROWS if row.stage is not None}
# A run is judged by its final model, the first of these it holds; its layers are results.json's `layers`.
FINAL_MODELS = ("finetuned", "pruned", "original")
# Forms of the final model whose latency and physical size show what pruning buys when deployed.
DEPLOYED_MODELS = ("compacted", "sparse_kernels")

# The stages that train and log rows to metrics.csv, in pipeline order (metrics.csv is merged in this order).
TRAINING_STAGES = tuple(STAGE_ROWS)
# status.json's `stage`: the training stages plus the steps around them, in the order a run passes them.
STATUS_STAGES = ("build", *TRAINING_STAGES, "evaluate", "report")
# status.json's `status`.
STATUSES = ("complete", "running", "failed", "interrupted")
METRIC_COLUMNS = ("stage", "event", "epoch", "iteration", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                  "target_sparsity", "achieved_sparsity")


class SchemaError(ValueError):
    """A document (or a record in it) does not hold what the schema says; the message names the key."""


class UnknownVersion(SchemaError):
    """results.json of another schema version (or none): reading it by this schema would misread it."""


R = TypeVar("R", bound="Record")
# A field left out of the JSON while it equals its default: a key only some entries have (held steps).
_OMIT_DEFAULT = {"omit_default": True}


class Record:
    """Base of the records: to_json()/from_json() follow each field's type hint, so no field is listed twice."""

    def to_json(self) -> dict[str, Any]:
        """Plain dicts, lists and scalars, keys in field order (what json.dumps writes)."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.metadata.get("omit_default") and value == f.default:
                continue
            out[f.name] = _dump(value)
        return out

    @classmethod
    def from_json(cls: type[R], data: Any, *, strict: bool = False, path: str = "") -> R:
        """Read a plain dict. A missing key (an older or partial file) keeps the field's default, as does a null
        record or list; a value of the wrong type is a SchemaError. `strict` (the writer's own dicts) also
        refuses keys the schema does not know, so nothing a stage records is silently dropped."""
        return _read(cls, data, strict, path)


def _read(cls: type[R], data: Any, strict: bool, path: str) -> R:
    where = path or cls.__name__
    if not isinstance(data, dict):
        raise SchemaError(f"{where}: expected an object, found {_kind(data)}")
    hints = _hints(cls)
    if strict:
        unknown = [key for key in data if key not in hints]
        if unknown:
            raise SchemaError(f"{where}: unknown key {unknown[0]!r} (add it to progprune_cli/results/schema.py)")
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            continue
        hint, value = hints[f.name], data[f.name]
        if value is None and not _optional(hint):
            continue  # e.g. "layers": null reads as the default (empty), as the readers always took it
        values[f.name] = _load(hint, value, f"{path}.{f.name}" if path else f.name, strict)
    return cls(**values)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType) and type(None) in typing.get_args(hint)


def _kind(value: Any) -> str:
    """How an error message names a value it did not expect: its JSON type, and the value when it is short."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    return f"{'a string' if isinstance(value, str) else 'a number'} {value!r}"


def _load(hint: Any, value: Any, path: str, strict: bool) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _load(inner, value, path, strict)
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_json(value, strict=strict, path=path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SchemaError(f"{path}: expected a list, found {_kind(value)}")
        return tuple(_load(args[0], item, f"{path}[{i}]", strict) for i, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise SchemaError(f"{path}: expected an object, found {_kind(value)}")
        return {k: _load(args[1], v, f"{path}.{k}", strict) for k, v in value.items()}
    # bool is an int in Python but never a count or a figure here; an int is a fine float (JSON writes 0.0 as 0.0,
    # but hand-written files say 0), kept as it is so a file reads back exactly.
    ok = {bool: isinstance(value, bool), str: isinstance(value, str),
          int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool)}[hint]
    if not ok:
        expected = {bool: "a boolean", str: "a string", int: "an integer", float: "a number"}[hint]
        raise SchemaError(f"{path}: expected {expected}, found {_kind(value)}")
    return value


def _dump(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, (tuple, list)):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


def strict_dumps(tree: Any) -> str:
    """JSON text (indent 1, trailing newline) that never holds NaN or Infinity: a non-finite number is a
    SchemaError naming its key, since strict JSON readers (jq, JavaScript, pandas' default) reject those."""
    _check_finite(tree, "")
    return json.dumps(tree, indent=1, allow_nan=False) + "\n"


def _check_finite(value: Any, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise SchemaError(f"{path or 'value'} is {value}: results.json is strict JSON, which has no NaN or "
                          "Infinity (a non-finite loss usually means training diverged)")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_finite(item, f"{path}[{i}]")


# --- MODEL -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Splits(Record):
    """A figure (accuracy or loss) on each data split."""

    train: float | None = None
    val: float | None = None
    test: float | None = None


@dataclass(frozen=True)
class Params(Record):
    """Parameter counts; `compression` is None when nothing is nonzero (the ratio is unbounded)."""

    total: int | None = None
    nonzero: int | None = None
    physical: int | None = None
    sparsity: float | None = None
    compression: float | None = None


@dataclass(frozen=True)
class Macs(Record):
    """Multiply-accumulates of one forward pass of one sample; the speedup is theoretical."""

    dense: int | None = None
    effective: int | None = None
    theoretical_speedup: float | None = None


@dataclass(frozen=True)
class Spread(Record):
    """A timing's median and its p10–p90 spread over the repeats."""

    median: float | None = None
    p10: float | None = None
    p90: float | None = None


@dataclass(frozen=True)
class Latency(Record):
    """How a model was timed and what was measured (Latency() when a file has no timing)."""

    device: str | None = None
    threads: int | None = None
    warmup: int | None = None
    repeats: int | None = None  # timed passes of the eval runtime made (evaluate.* bounds them)
    batch1_repeats: int | None = None  # and of batch1_ms
    min_repeats: int | None = None
    max_repeats: int | None = None
    target_spread: float | None = None  # the stopping rule's (p90 − p10) / median; null: always max_repeats
    eval_batch_size: int | None = None
    eval_samples: int | None = None
    latency_batch: int | None = None
    timing: str | None = None
    eval_runtime_s: Spread = field(default_factory=Spread)
    batch1_ms: Spread = field(default_factory=Spread)
    throughput_sps: float | None = None
    measured_speedup: float | None = None
    # Peak bytes torch allocated on the GPU during one eval pass of the model (CUDA only; null on the CPU).
    peak_memory_bytes: int | None = None


@dataclass(frozen=True)
class Sizes(Record):
    """Bytes on disk saved dense, sparse-encoded and compacted (None where that form does not apply)."""

    dense: int | None = None
    sparse: int | None = None
    compacted: int | None = None


@dataclass(frozen=True)
class ModelRecord(Record):
    """One entry of results.json's `models` (the MODEL record of docs/run-folder.md)."""

    label: str | None = None
    epochs: int | None = None
    accuracy: Splits = field(default_factory=Splits)
    loss: Splits = field(default_factory=Splits)
    params: Params = field(default_factory=Params)
    macs: Macs = field(default_factory=Macs)
    latency: Latency = field(default_factory=Latency)
    size_bytes: Sizes = field(default_factory=Sizes)
    mask_only: bool | None = None
    # A language model's exp(mean loss per token) on each split (its `accuracy` is next-token accuracy). Left out of
    # the JSON for classifiers, so their files read the same.
    perplexity: Splits | None = field(default=None, metadata=_OMIT_DEFAULT)
    # evaluate.backends beyond torch: backend name → the model timed there (`measured_speedup` is vs the original
    # in the same backend). Left out of the JSON when only torch timed the run, so older files read the same.
    backends: dict[str, Latency] | None = field(default=None, metadata=_OMIT_DEFAULT)


@dataclass(frozen=True)
class LayerRow(Record):
    """One Conv2d/Linear layer of the final model: its weight's counts and its MACs."""

    name: str | None = None
    type: str | None = None
    shape: tuple[int, ...] = ()
    params: int | None = None
    nonzero: int | None = None
    sparsity: float | None = None
    macs_dense: int | None = None
    macs_effective: int | None = None


# --- pruning log -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StepLayer(Record):
    """One prunable unit after a step; `target` is None in threshold mode (only the threshold is known)."""

    target: float | None = None
    achieved: float | None = None
    nonzero: int | None = None


@dataclass(frozen=True)
class PruningStep(Record):
    """One step of the schedule. A held step (schedule.max_drop) removed nothing and records the val accuracy
    that held it; `held` and `val_acc` appear in the JSON only on held steps."""

    index: int | None = None
    epoch: int | None = None
    iteration: int | None = None
    target: float | None = None
    achieved: float | None = None
    removed: int | None = None
    layers: dict[str, StepLayer] = field(default_factory=dict)
    held: bool = field(default=False, metadata=_OMIT_DEFAULT)
    val_acc: float | None = field(default=None, metadata=_OMIT_DEFAULT)
    # Wall time of the step itself (scoring, calibration passes, the weight update), not the training after it;
    # absent in files from before it was recorded and on held steps.
    seconds: float | None = field(default=None, metadata=_OMIT_DEFAULT)


@dataclass(frozen=True)
class BudgetProbe(Record):
    """One candidate the latency budget's search timed: the model compacted at `sparsity`, its measured
    milliseconds per sample (median, p10, p90 of `repeats` timed passes) and whether the median meets the target."""

    sparsity: float | None = None
    median_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    repeats: int | None = None
    meets: bool | None = None


@dataclass(frozen=True)
class Budget(Record):
    """`pruning.budget`: strategy.target (`key` macs, params or latency_ms, its `target`), the sparsity found for it
    and what that sparsity gives (`achieved`: counted before training, theoretical for macs; latency_ms: the
    measured median of its probe); `within` 2% of the target, or the nearest the model reaches (latency_ms: the
    median is at most the target). A latency budget also keeps how it was timed (`setup`) and every probe, in the
    order timed; the run folder's budget.json holds the same record, so a resumed run reuses it."""

    key: str | None = None
    target: float | None = None
    sparsity: float | None = None
    achieved: float | None = None
    within: bool | None = None
    setup: str | None = field(default=None, metadata=_OMIT_DEFAULT)
    probes: tuple[BudgetProbe, ...] = field(default=(), metadata=_OMIT_DEFAULT)


@dataclass(frozen=True)
class PruningLog(Record):
    """results.json's `pruning` (None for a dense run); targets are thresholds when mode is "threshold"."""

    strategy: str | None = None
    granularity: str | None = None
    mode: str | None = None
    target: float | None = None
    scope: str | None = None
    schedule: str | None = None
    achieved_sparsity: float | None = None
    notes: tuple[str, ...] = ()
    steps: tuple[PruningStep, ...] = ()
    budget: Budget | None = field(default=None, metadata=_OMIT_DEFAULT)  # only when strategy.target was set


# --- the document ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Weights(Record):
    """The weights a run's model started from (`model.weights`): the file, its SHA-256, and what was changed to fit
    the data (a classifier of other classes replaced, a first conv of other input channels adapted)."""

    file: str | None = None
    sha256: str | None = None
    head_replaced: bool | None = None
    adapted: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunInfo(Record):
    """What was run where: results.json's `run`."""

    id: str | None = None
    started: str | None = None
    finished: str | None = None
    duration_s: float | None = None
    overrides: tuple[str, ...] = ()
    seed: int | None = None
    device: str | None = None
    torch: str | None = None
    python: str | None = None
    threads: int | None = None
    train_threads: int | None = None
    git_commit: str | None = None
    dense_reused_from: str | None = None
    train_samples: int | None = None  # samples the run trained on (the training split, after val was carved out)
    # How many of them the train accuracy/loss figures were measured on (evaluate.train_samples); absent in older files.
    train_eval_samples: int | None = field(default=None, metadata=_OMIT_DEFAULT)
    # What built the model (progprune:NAME, torchvision:ARCH, timm:ARCH, custom:MODULE.CLASS), the weights it
    # started from (null: initialised at random), and what the original is: trained, loaded (model.weights with
    # train.epochs=0) or untrained (train.epochs=0 without weights).
    model_source: str | None = None
    weights: Weights | None = None
    original: str | None = None


@dataclass(frozen=True)
class Results(Record):
    """The whole results.json; `config` is the resolved config as a nested dict (the same keys as conf/)."""

    schema_version: int = SCHEMA_VERSION
    status: str | None = None
    run: RunInfo = field(default_factory=RunInfo)
    config: dict[str, Any] = field(default_factory=dict)
    pruning: PruningLog | None = None
    models: dict[str, ModelRecord] = field(default_factory=dict)
    layers: tuple[LayerRow, ...] = ()
    # The evaluate stage's one-line notes (a row it could not build, a backend that could not time a model, and
    # why); left out of the JSON when there are none.
    notes: tuple[str, ...] = field(default=(), metadata=_OMIT_DEFAULT)

    @classmethod
    def from_json(cls: type[R], data: Any, *, strict: bool = False, path: str = "") -> R:
        """Refuses another schema version (UnknownVersion) before reading anything by this one."""
        if isinstance(data, dict) and data.get("schema_version") != SCHEMA_VERSION:
            found = data.get("schema_version", "missing")
            raise UnknownVersion(f"schema_version {found!r}, this progprune reads {SCHEMA_VERSION}")
        return _read(cls, data, strict, path)

    def with_run(self, run: RunInfo, config: dict[str, Any]) -> Results:
        """This record with what the runner adds once every stage is done: the run info and the config."""
        return replace(self, run=run, config=config)

    def ordered_models(self) -> list[tuple[str, ModelRecord]]:
        """The models present in MODEL_ORDER; unknown extra entries follow, so nothing is hidden."""
        keys = [k for k in MODEL_ORDER if k in self.models] + [k for k in self.models if k not in MODEL_ORDER]
        return [(k, self.models[k]) for k in keys]

    def final_model(self) -> str | None:
        """The key of the model the run is judged by (see FINAL_MODELS); None when it has no model."""
        return next((k for k in FINAL_MODELS if k in self.models), None)

    def dumps(self) -> str:
        """The text of results.json: strict JSON (a non-finite number is a SchemaError naming its key)."""
        return strict_dumps(self.to_json())


def model_label(key: str, model: ModelRecord | None = None) -> str:
    """A model's row name: the schema's label for a known key, else the record's own label, else the key."""
    return MODEL_LABELS.get(key) or (model.label if model is not None and model.label else key)

