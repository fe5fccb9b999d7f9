"""The model registry and its builder signature: sizes always come from the dataset's DataInfo."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, TypeVar

from torch import nn

from progprune_cli.config import ModelConfig
from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError
from progprune_cli.registry import Registry

T = TypeVar("T", bound=ModelConfig)


class ModelBuilder(Protocol):
    def __call__(self, cfg: Any, info: DataInfo) -> nn.Module: ...


MODELS: Registry[ModelBuilder] = Registry("model", ModelConfig)


def build_model(cfg: ModelConfig, info: DataInfo) -> nn.Module:
    """A freshly initialised model for data of shape `info` (seed torch before calling); every size among the
    model's own keys must be >= 1."""
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        sizes = value if isinstance(value, (list, tuple)) else (value,)
        # bool is an int subclass: `small_input: false` is a switch, not a size of 0.
        if any(isinstance(size, int) and not isinstance(size, bool) and size < 1 for size in sizes):
            raise UserError(f"model.{field.name}: got {value}; every size must be >= 1")
    return MODELS.get(cfg.name)(cfg, info)


def too_small(name: str, info: DataInfo, side: int) -> None:
    """Fail in one line when the input is smaller than `side`×`side` pixels (the model's pooling needs that much)."""
    if info.height < side or info.width < side:
        raise UserError(f"model={name}: input {info.height}x{info.width} is too small (needs >= {side}x{side})")
