"""results.json as typed records, and the one definition of model order, labels, stages, columns and version."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from progprune_cli.results.record import OMIT_DEFAULT, Record, UnknownVersion, strict_dumps

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
    perplexity: Splits | None = field(default=None, metadata=OMIT_DEFAULT)
    # evaluate.backends beyond torch: backend name → the model timed there (`measured_speedup` is vs the original
    # in the same backend). Left out of the JSON when only torch timed the run, so older files read the same.
    backends: dict[str, Latency] | None = field(default=None, metadata=OMIT_DEFAULT)


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
    held: bool = field(default=False, metadata=OMIT_DEFAULT)
    val_acc: float | None = field(default=None, metadata=OMIT_DEFAULT)
    # Wall time of the step itself (scoring, calibration passes, the weight update), not the training after it;
    # absent in files from before it was recorded and on held steps.
    seconds: float | None = field(default=None, metadata=OMIT_DEFAULT)


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
    setup: str | None = field(default=None, metadata=OMIT_DEFAULT)
    probes: tuple[BudgetProbe, ...] = field(default=(), metadata=OMIT_DEFAULT)


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
    budget: Budget | None = field(default=None, metadata=OMIT_DEFAULT)  # only when strategy.target was set


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
    train_eval_samples: int | None = field(default=None, metadata=OMIT_DEFAULT)
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
    notes: tuple[str, ...] = field(default=(), metadata=OMIT_DEFAULT)

    @classmethod
    def from_json(cls, data: Any, *, strict: bool = False, path: str = "") -> Results:
        """Refuses another schema version (UnknownVersion) before reading anything by this one."""
        if isinstance(data, dict) and data.get("schema_version") != SCHEMA_VERSION:
            found = data.get("schema_version", "missing")
            raise UnknownVersion(f"schema_version {found!r}, this progprune reads {SCHEMA_VERSION}")
        return super().from_json(data, strict=strict, path=path)

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

