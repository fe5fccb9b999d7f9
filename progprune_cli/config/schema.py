"""The typed run configuration; field names mirror the YAML keys under conf/."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal, Optional, Union


@dataclass(frozen=True)
class DatasetConfig:
    """`dataset:`; `options` holds the dataset's own keys, checked by the dataset when it is built."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelConfig:
    """`model:`; `options` holds the model's own keys (e.g. hidden sizes), checked when it is built."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimizerConfig:
    """`optimizer:`; `options` holds the torch optimizer's own hyperparameters (momentum, betas, ...)."""

    name: str
    lr: float
    clip_grad_norm: Optional[float] = None
    l1: float = 0.0
    l2: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StrategyConfig:
    """`strategy:` (added with `+strategy=NAME`); no strategy means a dense baseline run."""

    name: str
    sparsity: Optional[float] = 0.5
    threshold: Optional[float] = None
    scope: Literal["layer", "global", "lamp"] = "layer"
    exclude: tuple[str, ...] = ()
    layers: dict[str, float] = field(default_factory=dict)
    layers_from: Optional[str] = None  # a YAML file of unit → sparsity (progprune sensitivity's layers.yaml)
    include_bias: bool = False
    pattern: Optional[str] = None  # "N:M", e.g. "2:4": N of every M consecutive input weights kept (pruning/pattern.py)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        """'threshold' when an absolute threshold is set (it wins over sparsity), else 'sparsity'."""
        return "threshold" if self.threshold is not None else "sparsity"

    @property
    def final_target(self) -> float:
        """What the schedule ramps to: the threshold in threshold mode, else the sparsity."""
        return self.threshold if self.threshold is not None else self.sparsity  # type: ignore[return-value]


@dataclass(frozen=True)
class ScheduleConfig:
    """`schedule:`; when pruning steps happen in the prune stage and what target each one has."""

    name: str
    start: int = 0
    end: Optional[int] = None
    frequency: int = 1
    unit: Literal["epoch", "step"] = "epoch"
    initial_sparsity: float = 0.0
    rewind: Optional[Union[int, str]] = None
    max_drop: Optional[float] = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LRSchedulerConfig:
    """`<stage>.lr_scheduler:` (group conf/lr_scheduler); `options` holds the schedule's own keys."""

    name: str = "constant"
    warmup_epochs: int = 0  # linear warm-up from warmup_factor × lr, then the schedule
    warmup_factor: float = 0.1
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StageConfig:
    """`train:`, `prune:` or `finetune:`: how long a stage trains, at which learning rate and schedule."""

    epochs: int
    batch_size: int = 32
    lr: Optional[float] = None  # null: optimizer.lr
    lr_scheduler: LRSchedulerConfig = field(default_factory=LRSchedulerConfig)


@dataclass(frozen=True)
class TrainConfig(StageConfig):
    """`train:` also chooses the loss (§4.3), threads, whether a cached dense model may be reused, and the
    precision, memory format and compilation every stage trains with."""

    loss: Literal["cross_entropy", "mse"] = "cross_entropy"
    label_smoothing: float = 0.0
    reuse: bool = True
    threads: Optional[int] = None  # null: the cores this process may use (affinity / cgroup quota)
    # How every stage trains (RunContext.loop passes them to each Loop): autocast precision, memory format, compile.
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False
    compile: bool = False


@dataclass(frozen=True)
class CheckpointConfig:
    """`checkpoint:`: a resumable checkpoint after every epoch, and every `every_steps` optimizer steps if set."""

    every_steps: Optional[int] = None


@dataclass(frozen=True)
class EvaluateConfig:
    """`evaluate:`: how the three models are measured, identically for each."""

    batch_size: int = 256
    latency_batch: int = 1
    warmup: int = 3
    repeats: int = 10  # the most timed passes per model
    min_repeats: int = 5  # the fewest (capped by repeats)
    target_spread: Optional[float] = 0.1  # stop once every model's (p90 − p10) / median is this small; null: all
    threads: int = 1
    dense_baseline: bool = True
    sparse_kernels: bool = False
    sparse_min_sparsity: float = 0.9
    timing_samples: Optional[int] = 256  # latency is timed on this many test inputs (null: the whole split)
    backends: tuple[Literal["torch", "onnxruntime"], ...] = ("torch",)  # onnxruntime: also exported and timed there


@dataclass(frozen=True)
class ExpectedFigure:
    """`expected:` entry: a published figure a run aims at, and what makes a run comparable to it."""

    source: str
    metric: Literal["test_accuracy", "val_accuracy", "test_error", "weights_kept", "macs_reduction"]
    value: float
    model: str = "finetuned"
    tolerance: float = 0.0
    dataset: Optional[str] = None  # the dataset the figure was measured on
    train_epochs: Optional[int] = None  # the recipe's dense epochs; fewer is "not comparable"
    train_size: Optional[int] = None  # training samples the figure's run trained on; a run on fewer is "not comparable"
    note: str = ""


@dataclass(frozen=True)
class SensitivityConfig:
    """`sensitivity:` (progprune sensitivity): the levels each unit is pruned to alone, and the overall sparsity
    of the per-unit budget derived from them; `levels` are sorted by the loader."""

    levels: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    target: float = 0.5


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs; built once from the composed Hydra config."""

    seed: int
    device: Literal["auto", "cpu", "cuda"]
    dataset: DatasetConfig
    model: ModelConfig
    optimizer: OptimizerConfig
    strategy: Optional[StrategyConfig]
    schedule: ScheduleConfig
    train: TrainConfig
    prune: StageConfig
    finetune: StageConfig
    evaluate: EvaluateConfig
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    sensitivity: SensitivityConfig = field(default_factory=SensitivityConfig)
    expected: tuple[ExpectedFigure, ...] = ()


def common_keys(cls: type) -> tuple[str, ...]:
    """The keys a group's YAML may hold besides the component's own options (for error messages)."""
    return tuple(f.name for f in fields(cls) if f.name != "options")
