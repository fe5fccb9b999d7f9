"""Typed run configuration: Hydra structured configs (schema.py), typed and checked once (load.py, checks.py)."""

from progprune_cli.config.load import load_run_config
from progprune_cli.config.schema import (
    CheckpointConfig,
    DatasetConfig,
    EvaluateConfig,
    ExpectedFigure,
    LRSchedulerConfig,
    ModelConfig,
    OptimizerConfig,
    RunConfig,
    ScheduleConfig,
    SearchConfig,
    SensitivityConfig,
    StageConfig,
    StrategyConfig,
    TrackerConfig,
    TrainConfig,
)

__all__ = [
    "CheckpointConfig",
    "DatasetConfig",
    "EvaluateConfig",
    "ExpectedFigure",
    "LRSchedulerConfig",
    "ModelConfig",
    "OptimizerConfig",
    "RunConfig",
    "ScheduleConfig",
    "SearchConfig",
    "SensitivityConfig",
    "StageConfig",
    "StrategyConfig",
    "TrackerConfig",
    "TrainConfig",
    "load_run_config",
]
