"""The model registry and its builder signature: sizes always come from the dataset's DataInfo."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, TypeVar

from torch import nn

from progprune_cli.data import DataInfo
from progprune_cli.config import ModelConfig
from progprune_cli.config.strict import from_dict
from progprune_cli.errors import UserError
from progprune_cli.registry import Registry

T = TypeVar("T")


class ModelBuilder(Protocol):
    def __call__(self, options: dict[str, Any], info: DataInfo) -> nn.Module: ...


MODELS: Registry[ModelBuilder] = Registry("model")


def build_model(cfg: ModelConfig, info: DataInfo) -> nn.Module:
    """A freshly initialised model for data of shape `info` (seed torch before calling)."""
    return MODELS.get(cfg.name)(dict(cfg.options), info)


def model_options(cls: type[T], options: dict[str, Any]) -> T:
    """A model's own options, checked once for every model: unknown keys fail, and every size must be >= 1."""
    opts = from_dict(cls, options, "model", ("name",))
    for field in dataclasses.fields(opts):  # type: ignore[arg-type]
        value = getattr(opts, field.name)
        sizes = value if isinstance(value, tuple) else (value,)
        # bool is an int subclass: `small_input: false` is a switch, not a size of 0.
        if any(isinstance(size, int) and not isinstance(size, bool) and size < 1 for size in sizes):
            shown = list(value) if isinstance(value, tuple) else value
            raise UserError(f"model.{field.name}: got {shown}; every size must be >= 1")
    return opts


def with_default(options: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """`options` with `key` set to `value` where it is missing or null: a default that depends on the data."""
    return {**options, key: value} if options.get(key) is None else options


def too_small(name: str, info: DataInfo, side: int) -> None:
    """Fail in one line when the input is smaller than `side`×`side` pixels (the model's pooling needs that much)."""
    if info.height < side or info.width < side:
        raise UserError(f"model={name}: input {info.height}x{info.width} is too small (needs >= {side}x{side})")
