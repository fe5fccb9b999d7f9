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
    scope: Literal["layer", "global"] = "layer"
    exclude: tuple[str, ...] = ()
    layers: dict[str, float] = field(default_factory=dict)
    include_bias: bool = False
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
class StageConfig:
    """`train:`, `prune:` or `finetune:`: how long a stage trains."""

    epochs: int
    batch_size: int = 32


@dataclass(frozen=True)
class TrainConfig(StageConfig):
    """`train:` also chooses the loss (§4.3) and whether a cached dense model may be reused."""

    loss: Literal["cross_entropy", "mse"] = "cross_entropy"
    reuse: bool = True


@dataclass(frozen=True)
class EvaluateConfig:
    """`evaluate:`: how the three models are measured, identically for each."""

    batch_size: int = 256
    latency_batch: int = 1
    warmup: int = 3
    repeats: int = 10
    threads: int = 1
    dense_baseline: bool = True
    sparse_kernels: bool = False
    sparse_min_sparsity: float = 0.9


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


def common_keys(cls: type) -> tuple[str, ...]:
    """The keys a group's YAML may hold besides the component's own options (for error messages)."""
    return tuple(f.name for f in fields(cls) if f.name != "options")
