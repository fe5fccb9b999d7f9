"""The typed-record machinery under results.json: to_json/from_json by each field's type hint, strict JSON out."""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import fields
from functools import cache
from typing import Any, TypeVar, Union


class SchemaError(ValueError):
    """A document (or a record in it) does not hold what the schema says; the message names the key."""


class UnknownVersion(SchemaError):
    """results.json of another schema version (or none): reading it by this schema would misread it."""


R = TypeVar("R", bound="Record")
# A field left out of the JSON while it equals its default: a key only some entries have (held steps).
OMIT_DEFAULT = {"omit_default": True}


class Record:
    """Base of the records: to_json()/from_json() follow each field's type hint, so no field is listed twice."""

    def to_json(self) -> dict[str, Any]:
        """Plain dicts, lists and scalars, keys in field order (what json.dumps writes)."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.metadata.get("omit_default") and value == f.default:
                continue
            out[f.name] = _dump(value)
        return out

    @classmethod
    def from_json(cls: type[R], data: Any, *, strict: bool = False, path: str = "") -> R:
        """Read a plain dict. A missing key (an older or partial file) keeps the field's default, as does a null
        record or list; a value of the wrong type is a SchemaError. `strict` (the writer's own dicts) also
        refuses keys the schema does not know, so nothing a stage records is silently dropped."""
        return _read(cls, data, strict, path)


def _read(cls: type[R], data: Any, strict: bool, path: str) -> R:
    where = path or cls.__name__
    if not isinstance(data, dict):
        raise SchemaError(f"{where}: expected an object, found {_kind(data)}")
    hints = _hints(cls)
    if strict:
        unknown = [key for key in data if key not in hints]
        if unknown:
            raise SchemaError(f"{where}: unknown key {unknown[0]!r} (add it to progprune_cli/results/schema.py)")
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            continue
        hint, value = hints[f.name], data[f.name]
        if value is None and not _optional(hint):
            continue  # e.g. "layers": null reads as the default (empty), as the readers always took it
        values[f.name] = _load(hint, value, f"{path}.{f.name}" if path else f.name, strict)
    return cls(**values)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType) and type(None) in typing.get_args(hint)


def _kind(value: Any) -> str:
    """How an error message names a value it did not expect: its JSON type, and the value when it is short."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    return f"{'a string' if isinstance(value, str) else 'a number'} {value!r}"


def _load(hint: Any, value: Any, path: str, strict: bool) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _load(inner, value, path, strict)
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_json(value, strict=strict, path=path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SchemaError(f"{path}: expected a list, found {_kind(value)}")
        return tuple(_load(args[0], item, f"{path}[{i}]", strict) for i, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise SchemaError(f"{path}: expected an object, found {_kind(value)}")
        return {k: _load(args[1], v, f"{path}.{k}", strict) for k, v in value.items()}
    # bool is an int in Python but never a count or a figure here; an int is a fine float (JSON writes 0.0 as 0.0,
    # but hand-written files say 0), kept as it is so a file reads back exactly.
    ok = {bool: isinstance(value, bool), str: isinstance(value, str),
          int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool)}[hint]
    if not ok:
        expected = {bool: "a boolean", str: "a string", int: "an integer", float: "a number"}[hint]
        raise SchemaError(f"{path}: expected {expected}, found {_kind(value)}")
    return value


def _dump(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, (tuple, list)):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


def strict_dumps(tree: Any) -> str:
    """JSON text (indent 1, trailing newline) that never holds NaN or Infinity: a non-finite number is a
    SchemaError naming its key, since strict JSON readers (jq, JavaScript, pandas' default) reject those."""
    _check_finite(tree, "")
    return json.dumps(tree, indent=1, allow_nan=False) + "\n"


def _check_finite(value: Any, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise SchemaError(f"{path or 'value'} is {value}: results.json is strict JSON, which has no NaN or "
                          "Infinity (a non-finite loss usually means training diverged)")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_finite(item, f"{path}[{i}]")
