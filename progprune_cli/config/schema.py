"""The typed run configuration: Hydra structured configs, the schema conf/config.yaml and every component YAML
compose on, and the objects the run reads. Torch-free.

Where a default lives (each in one place): a value the YAML beside it documents is set in that YAML (conf/config.yaml
for the top-level sections, conf/<group>/<name>.yaml for a component's own keys) and is MISSING here; the keys every
component of a group shares (a strategy's sparsity, scope, ...) have their defaults here, on the group's base class.
`choice(...)` marks a string with a fixed set of values (OmegaConf has no Literal type): the typed pass checks it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING


def choice(*values: Any, default: Any = MISSING) -> Any:
    """A field whose value must be one of `values` (checked by the typed pass, config/load.py)."""
    return field(default=default, metadata={"choices": values})


def items(*values: Any) -> Any:
    """A list field each of whose items must be one of `values`."""
    return field(default=MISSING, metadata={"item_choices": values})


# --- the bases of the component groups (conf/<group>/<name>.yaml composes on base_<name>, a subclass) -----------

@dataclass
class DatasetConfig:
    """`dataset:`; a dataset's own keys are fields of its subclass (data/<name>.py)."""

    name: str = MISSING


@dataclass
class ModelConfig:
    """`model:`; a model's own keys (sizes, switches) are fields of its subclass (models/<name>.py)."""

    name: str = MISSING
    # A state dict to start from (.safetensors, or a torch file of tensors); torchvision and timm models also take
    # DEFAULT or a weights name, read from the local cache. null: initialised at random (seeded).
    weights: Optional[str] = None


@dataclass
class OptimizerConfig:
    """`optimizer:`; the torch optimizer's own hyperparameters (momentum, betas, ...) are fields of its subclass."""

    name: str = MISSING
    lr: float = MISSING
    clip_grad_norm: Optional[float] = None  # clip the gradient norm to this (§4.2); null: no clipping
    l1: float = 0.0  # L1 weight penalty (§4.2)
    l2: float = 0.0  # L2 weight penalty (§4.2; weight_decay is the optimizer's own)


@dataclass
class TargetConfig:
    """`strategy.target:` a budget instead of a sparsity: the runner finds the strategy.sparsity that meets it before
    training (pruning/budget.py), and that ratio replaces strategy.sparsity. At most one of them."""

    macs: Optional[float] = None  # theoretical MAC speedup, dense MACs / compacted MACs (> 1; channel strategies)
    params: Optional[float] = None  # fraction of the model's parameters kept (0 < params < 1)
    # measured milliseconds per sample at evaluate.latency_batch on the run's device (> 0; channel strategies)
    latency_ms: Optional[float] = None

    @property
    def keys(self) -> list[str]:
        """The budgets set, in field order."""
        return [key for key in ("macs", "params", "latency_ms") if getattr(self, key) is not None]

    @property
    def key(self) -> str | None:
        """The budget set ('macs', 'params' or 'latency_ms'; the first when several are), None when none is."""
        return next(iter(self.keys), None)


@dataclass
class StrategyConfig:
    """`strategy:` (added with `+strategy=NAME`); no strategy means a dense baseline run."""

    name: str = MISSING
    sparsity: Optional[float] = 0.5  # the fraction pruned (of each unit, or of all with scope global/lamp)
    threshold: Optional[float] = None  # |score| < threshold is pruned; set, it wins over sparsity
    scope: str = choice("layer", "global", "lamp", default="layer")
    exclude: list[str] = field(default_factory=list)  # layer or parameter names (glob patterns) kept dense
    layers: dict[str, float] = field(default_factory=dict)  # per-layer sparsity, e.g. {conv1: 0.3}
    layers_from: Optional[str] = None  # a YAML file of unit → sparsity (progprune sensitivity's layers.yaml)
    include_bias: bool = False  # biases of layers with weights are pruned too
    pattern: Optional[str] = None  # "N:M", e.g. "2:4": N of every M consecutive input weights kept
    target: TargetConfig = field(default_factory=TargetConfig)  # a budget; its ratio replaces sparsity

    @property
    def mode(self) -> str:
        """'threshold' when an absolute threshold is set (it wins over sparsity), else 'sparsity'."""
        return "threshold" if self.threshold is not None else "sparsity"

    @property
    def pattern_nm(self) -> tuple[int, int] | None:
        """`pattern` as (N, M), or None when unset or not of the form N:M with 1 <= N < M (the typed pass refuses
        that in one line, so past it None means unset)."""
        match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", self.pattern or "")
        n, m = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
        return (n, m) if 1 <= n < m else None

    @property
    def final_target(self) -> float:
        """What the schedule ramps to: the threshold in threshold mode, else the sparsity."""
        return self.threshold if self.threshold is not None else self.sparsity  # type: ignore[return-value]


@dataclass
class ScheduleConfig:
    """`schedule:`; when pruning steps happen in the prune stage and what target each one has."""

    name: str = MISSING
    start: int = 0  # the first step, in `unit`s of the prune stage
    end: Optional[int] = None  # the last step (null: the last epoch or step of the prune stage)
    frequency: int = 1  # a step every this many units
    unit: str = choice("epoch", "step", default="epoch")
    initial_sparsity: float = 0.0  # where the ramp starts
    rewind: Any = None  # null | init | an epoch k of dense training (lottery tickets); checked by the typed pass
    max_drop: Optional[float] = None  # e.g. 0.01: hold a step while val accuracy is > 1 point below dense (§7.1)


@dataclass
class LRSchedulerConfig:
    """`<stage>.lr_scheduler:` (group conf/lr_scheduler); a schedule's own keys are fields of its subclass."""

    name: str = MISSING
    warmup_epochs: int = 0  # linear warm-up from warmup_factor × lr over this many epochs, then the schedule
    warmup_factor: float = 0.1


@dataclass
class TrackerConfig:
    """`logger.<name>:` (group conf/logger; any number of them: logger=[tensorboard,mlflow]); a tracker's own keys
    are fields of its subclass (trackers/<name>.py)."""

    name: str = MISSING


# --- the top-level sections (their values live in conf/config.yaml) ----------------------------------------------

@dataclass
class StageConfig:
    """`train:`, `prune:` or `finetune:`: how long a stage trains, at which learning rate and schedule."""

    epochs: int = MISSING
    batch_size: int = MISSING
    lr: Optional[float] = MISSING  # null: optimizer.lr
    lr_scheduler: LRSchedulerConfig = MISSING


@dataclass
class TrainConfig(StageConfig):
    """`train:` also chooses the loss (§4.3), threads, whether a cached dense model may be reused, and the
    precision, memory format and compilation every stage trains with."""

    loss: str = choice("cross_entropy", "mse")
    label_smoothing: float = MISSING
    reuse: bool = MISSING
    threads: Optional[int] = MISSING  # null: the cores this process may use (affinity / cgroup quota)
    precision: str = choice("fp32", "bf16", "fp16")
    channels_last: bool = MISSING
    compile: bool = MISSING


@dataclass
class CheckpointConfig:
    """`checkpoint:`: a resumable checkpoint after every epoch, and every `every_steps` optimizer steps if set."""

    every_steps: Optional[int] = MISSING


@dataclass
class EvaluateConfig:
    """`evaluate:`: how the models are measured, identically for each."""

    batch_size: int = MISSING
    latency_batch: int = MISSING
    warmup: int = MISSING
    repeats: int = MISSING  # the most timed passes per model
    min_repeats: int = MISSING  # the fewest (capped by repeats)
    target_spread: Optional[float] = MISSING  # stop once every model's (p90 − p10) / median is this small
    threads: int = MISSING
    dense_baseline: bool = MISSING
    scratch_baseline: bool = MISSING
    sparse_kernels: bool = MISSING
    sparse_min_sparsity: float = MISSING
    timing_samples: Optional[int] = MISSING  # latency is timed on this many test inputs (null: the whole split)
    train_samples: Optional[int] = MISSING  # train accuracy/loss on this many training samples, seeded (null: all)
    backends: list[str] = items("torch", "onnxruntime")  # onnxruntime: also exported and timed there


@dataclass
class ExpectedFigure:
    """`expected:` entry: a published figure a run aims at, and what makes a run comparable to it."""

    source: str = MISSING
    metric: str = choice("test_accuracy", "val_accuracy", "test_error", "weights_kept", "macs_reduction")
    value: float = MISSING
    model: str = choice("original", "pruned", "finetuned", "compacted", default="finetuned")
    tolerance: float = 0.0
    dataset: Optional[str] = None  # the dataset the figure was measured on
    train_epochs: Optional[int] = None  # the recipe's dense epochs; fewer is "not comparable"
    train_size: Optional[int] = None  # training samples the figure's run trained on; a run on fewer is "not comparable"
    note: str = ""


@dataclass
class SensitivityConfig:
    """`sensitivity:` (progprune sensitivity): the levels each unit is pruned to alone, and the overall sparsity
    of the per-unit budget derived from them; the typed pass sorts `levels`."""

    levels: list[float] = MISSING
    target: float = MISSING


@dataclass
class SearchConfig:
    """`search:`: what a run returns to a sampling sweeper (hydra/sweeper=progprune_optuna): each objective as
    `NAME:max|min` (results/objectives.py names them), one value per entry."""

    objectives: list[str] = MISSING


@dataclass
class RunConfig:
    """Everything one run needs: conf/config.yaml's schema (base_config), and the typed config below the CLI."""

    seed: int = MISSING
    device: str = choice("auto", "cpu", "cuda")
    dataset: DatasetConfig = MISSING
    model: ModelConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    strategy: Optional[StrategyConfig] = None
    schedule: ScheduleConfig = MISSING
    train: TrainConfig = MISSING
    prune: StageConfig = MISSING
    finetune: StageConfig = MISSING
    evaluate: EvaluateConfig = MISSING
    checkpoint: CheckpointConfig = MISSING
    sensitivity: SensitivityConfig = MISSING
    search: SearchConfig = MISSING
    expected: list[ExpectedFigure] = field(default_factory=list)
    logger: dict[str, TrackerConfig] = field(default_factory=dict)  # by name: the trackers a run reports to


# The component groups: a RunConfig field (or a stage's `lr_scheduler`, or each entry of `logger`) whose node is a
# subclass chosen by `name`.
COMPONENTS = {"dataset": DatasetConfig, "model": ModelConfig, "optimizer": OptimizerConfig,
              "strategy": StrategyConfig, "schedule": ScheduleConfig, "lr_scheduler": LRSchedulerConfig,
              "logger": TrackerConfig}
