"""Build a dataclass from a plain dict strictly: unknown keys, wrong types and missing keys are user errors."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from progprune_cli.errors import UserError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """A component with no keys of its own: any extra key is an error."""


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str, also: tuple[str, ...] = ()) -> T:
    """`cls(**data)` with every key checked; `where` is the dotted config path used in error messages,
    `also` the group's common keys, listed with the allowed ones when a key is unknown."""
    if data is not None and not isinstance(data, Mapping):
        raise UserError(f"{where or cls.__name__}: got {data!r}; expected a mapping of keys")
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        allowed = ", ".join(sorted(set(fields) | set(also))) or "(none)"
        raise UserError(f"{key}: unknown key; allowed keys are {allowed}")
    values = {}
    for name, field in fields.items():
        key = f"{where}.{name}" if where else name
        if name in data:
            values[name] = _check(data[name], hints[name], key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise UserError(f"{key}: missing; it has no default")
    return cls(**values)


def _check(value: Any, hint: Any, key: str) -> Any:
    """Return `value` converted to `hint` (int→float allowed), or raise a one-line UserError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _check(value, option, key)
            except UserError:
                continue
        raise UserError(f"{key}: got {value!r}; expected {_name(hint)}")
    if hint is Any:
        return value
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise UserError(f"{key}: got {value!r}; allowed values are {', '.join(map(str, allowed))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{key}: got {value!r}; expected a list")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return tuple(_check(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise UserError(f"{key}: got {value!r}; expected a mapping")
        args = typing.get_args(hint)
        vhint = args[1] if len(args) == 2 else Any
        return {str(k): _check(v, vhint, f"{key}.{k}") for k, v in value.items()}
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{key}: got {value!r}; expected a number")
        if not math.isfinite(value):
            raise UserError(f"{key}: got {value}; expected a finite number")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{key}: got {value!r}; expected a whole number")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"{key}: got {value!r}; expected true or false")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"{key}: got {value!r}; expected a string")
        return value
    return value


def _name(hint: Any) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    names = [getattr(a, "__name__", str(a)) for a in args]
    return " or ".join(names) + (" or null" if len(args) < len(typing.get_args(hint)) else "")
