"""The model registry and its builder signature: sizes always come from the dataset's DataInfo."""

from __future__ import annotations

from typing import Any, Protocol

from torch import nn

from progprune_cli.build.data import DataInfo
from progprune_cli.config import ModelConfig
from progprune_cli.registry import Registry


class ModelBuilder(Protocol):
    def __call__(self, options: dict[str, Any], info: DataInfo) -> nn.Module: ...


MODELS: Registry[ModelBuilder] = Registry("model")


def build_model(cfg: ModelConfig, info: DataInfo) -> nn.Module:
    """A freshly initialised model for data of shape `info` (seed torch before calling)."""
    return MODELS.get(cfg.name)(dict(cfg.options), info)
