"""Typed run configuration: the composed Hydra config becomes these frozen dataclasses once, at the CLI."""

from progprune_cli.config.load import load_run_config
from progprune_cli.config.schema import (
    CheckpointConfig,
    LRSchedulerConfig,
    DatasetConfig,
    EvaluateConfig,
    ModelConfig,
    OptimizerConfig,
    RunConfig,
    ScheduleConfig,
    StageConfig,
    StrategyConfig,
)

__all__ = [
    "CheckpointConfig",
    "LRSchedulerConfig",
    "DatasetConfig",
    "EvaluateConfig",
    "ModelConfig",
    "OptimizerConfig",
    "RunConfig",
    "ScheduleConfig",
    "StageConfig",
    "StrategyConfig",
    "load_run_config",
]
