"""`model=custom model._target_=pkg.module.Class +model.KEY=VALUE`: the user's own nn.Module, built with the keys
given as its constructor's keyword arguments (the data's classes and channels filled in where it takes them). Its
module is imported from the folder progprune is started in, or from PYTHONPATH."""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional

from omegaconf import MISSING
from torch import nn

from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError, described
from progprune_cli.models.base import MODELS
from progprune_cli.models.weights import SourcedConfig
from progprune_cli.targets import import_callable

# The keyword names torchvision, timm and most models use for the data's sizes, filled in unless given.
FROM_DATA: dict[str, Callable[[DataInfo], int]] = {
    "num_classes": lambda info: info.num_classes,
    "in_channels": lambda info: info.channels,
    "in_chans": lambda info: info.channels,
}


@dataclass
class CustomConfig(SourcedConfig):
    OPEN_KEYS: ClassVar[str] = "kwargs"  # config/load.py folds every key this schema does not declare into kwargs

    _target_: Optional[str] = MISSING
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return f"custom:{self._target_}"

    def code_identity(self) -> str | None:
        """The SHA-256 of the module file the class comes from: the architecture is whatever that code says."""
        path = inspect.getsourcefile(inspect.getmodule(constructor(self)))  # type: ignore[arg-type]
        if path is None:
            return None
        with open(path, "rb") as handle:
            return f"sha256:{hashlib.sha256(handle.read()).hexdigest()}"


def constructor(cfg: CustomConfig) -> Callable[..., Any]:
    """What `_target_` names (imported from the folder progprune was started in or PYTHONPATH), or a one-line
    error: no such module or name, or not a class or callable."""
    if cfg._target_ is None:
        raise UserError("model._target_: missing; name your model's class, e.g. model._target_=mynet.Net")
    return import_callable(cfg._target_, "model._target_")


def arguments(cfg: CustomConfig, info: DataInfo, make: Callable[..., Any]) -> dict[str, Any]:
    """The constructor's keyword arguments: the keys given, then the data's sizes where it takes them; a key it does
    not take, or an argument it needs and was not given, is a one-line error naming its parameters."""
    try:
        signature = inspect.signature(make)
    except (TypeError, ValueError):
        return dict(cfg.kwargs)  # no signature to check (a builtin): the call below says what is wrong
    params = signature.parameters
    named = [p.name for p in params.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    takes = f"{cfg._target_} takes {', '.join(named) if named else 'no keyword arguments'}"
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for key in cfg.kwargs:
        if key not in named and not takes_any:
            raise UserError(f"model.{key}: unknown key; {takes}")
    values = {**{k: f(info) for k, f in FROM_DATA.items() if k in named and k not in cfg.kwargs}, **cfg.kwargs}
    try:
        signature.bind(**values)
    except TypeError as error:
        raise UserError(f"model._target_: {cfg._target_}: {error}; {takes} (give one with +model.NAME=VALUE)") \
            from None
    return values


@MODELS.register("custom", CustomConfig)
def build(cfg: CustomConfig, info: DataInfo) -> nn.Module:
    make = constructor(cfg)
    values = arguments(cfg, info, make)
    call = f"{cfg._target_}({', '.join(f'{k}={v!r}' for k, v in values.items())})"
    try:
        model = make(**values)
    except Exception as error:  # the user's constructor: whatever it raises is said in one line
        raise UserError(f"model._target_: {call} raised {described(error)}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"model._target_: {call} returned a {type(model).__name__}, not a "
                        "torch.nn.Module")
    return model
