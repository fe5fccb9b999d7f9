"""The one typing pass: a composed config (or one read back from a run folder) becomes a checked RunConfig, each
component as its own schema's object, or a one-line UserError naming the key."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.plugins.config_source import ConfigLoadError
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from progprune_cli.config.checks import check_run_config, check_values
from progprune_cli.config.schema import COMPONENTS, RunConfig
from progprune_cli.errors import UserError, first_line

ConfigStore.instance().store(name="base_config", node=RunConfig)  # conf/config.yaml composes on it
_SCHEMA_PREFIX = "base_"  # registry.schema_name: a component's ConfigStore entry


def load_run_config(data: Mapping[str, Any]) -> RunConfig:
    """Type and check `data` (a plain dict: Hydra's composed config, or .hydra/config.yaml read back). Each
    component's schema is found by its `name` in the ConfigStore, where registering the component put it (import
    progprune_cli.catalog first)."""
    data = {k: v for k, v in data.items() if k != "hydra"}
    try:
        schema, data = _shaped(RunConfig, data, "")
        cfg = OmegaConf.to_object(OmegaConf.merge(schema, data))
    except OmegaConfBaseException as error:
        raise UserError(describe(error)) from None
    assert isinstance(cfg, RunConfig)
    check_run_config(cfg)
    return cfg


def load_component(group: str, data: Mapping[str, Any]) -> Any:
    """One component's typed config from a plain dict (e.g. the model a compacted checkpoint names), checked as
    load_run_config checks it."""
    schema = component_schema(group, data.get("name"), group)
    try:
        node = OmegaConf.merge(OmegaConf.create({group: OmegaConf.structured(schema)}),
                               {group: open_keys_folded(schema, dict(data))})
        typed = OmegaConf.to_object(node[group])
    except OmegaConfBaseException as error:
        raise UserError(describe(error)) from None
    check_values(typed, group)
    return typed


def _shaped(cls: type, data: Any, where: str) -> tuple[DictConfig, Any]:
    """`cls`'s schema, with every component node below it replaced by the schema its `name` chooses, and `data`
    with the keys an open schema does not declare folded into its OPEN_KEYS field (open_keys_folded)."""
    node = OmegaConf.structured(cls)
    if not isinstance(data, Mapping):
        return node, data  # the merge names the key and what it expected
    data = open_keys_folded(cls, data)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint, value = _plain(hints[f.name]), data.get(f.name)
        key = f"{where}.{f.name}" if where else f.name
        entries = typing.get_args(hint)[-1] if typing.get_origin(hint) is dict else None
        if entries in COMPONENTS.values() and isinstance(value, Mapping):
            node[f.name], data[f.name] = _shaped_entries(entries, value, key)
            continue
        if not (isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, Mapping)):
            continue
        group = next((g for g, base in COMPONENTS.items() if hint is base), None)
        schema = hint if group is None else component_schema(group, value.get("name"), key)
        node[f.name], data[f.name] = _shaped(schema, value, key)
    return node, data


def _shaped_entries(base: type, data: Mapping[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A dict of components (`logger`: one entry per chosen tracker), each entry shaped by the schema its `name`
    chooses."""
    group = next(g for g, b in COMPONENTS.items() if b is base)
    shaped = {k: _shaped(component_schema(group, v.get("name") if isinstance(v, Mapping) else None, f"{where}.{k}"),
                         v, f"{where}.{k}") for k, v in data.items()}
    return {k: node for k, (node, _) in shaped.items()}, {k: value for k, (_, value) in shaped.items()}


def open_keys_folded(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` for a schema that takes keys it cannot declare (a user's constructor arguments: `OPEN_KEYS` names
    the dict field that holds them): every undeclared key moved into that field. Any other schema: unchanged, so an
    undeclared key stays the error it is."""
    open_field = getattr(cls, "OPEN_KEYS", None)
    if open_field is None:
        return dict(data)
    declared = {f.name for f in dataclasses.fields(cls)}
    extra = {k: v for k, v in data.items() if k not in declared}
    return {**{k: v for k, v in data.items() if k in declared}, open_field: {**data.get(open_field, {}), **extra}}


def _plain(hint: Any) -> Any:
    """`Optional[X]` → X."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def component_schema(group: str, name: Any, key: str) -> type:
    """The schema registered as `group` `name` (conf/<group>/<name>.yaml's base), or a one-line error listing the
    names registered."""
    store = ConfigStore.instance()
    if isinstance(name, str):
        try:
            return OmegaConf.get_type(store.load(f"{group}/{_SCHEMA_PREFIX}{name}.yaml").node)  # type: ignore
        except (ConfigCompositionException, ConfigLoadError):  # not registered: the list below says what is
            pass
    known = sorted(n[len(_SCHEMA_PREFIX):].removesuffix(".yaml") for n in store.list(group)
                   if n.startswith(_SCHEMA_PREFIX))
    if name is None:
        raise UserError(f"{key}: missing; choose one with {group}=NAME")
    raise UserError(f"{key}={name}: unknown {group}; choose one of {', '.join(known)}")


def describe(error: BaseException) -> str:
    """The one line a user sees for an OmegaConf or Hydra error, built from the exception's type and fields (the
    key, the value, the dataclass that refused it), never from its message text."""
    while isinstance(error, ConfigCompositionException) and isinstance(error.__cause__, OmegaConfBaseException):
        error = error.__cause__
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options:
        group, _, name = error.missing_cfg_file.rpartition("/")
        options = [o for o in error.options if not o.startswith(_SCHEMA_PREFIX)]
        return f"{group}={name}: unknown {group}; choose one of {', '.join(options)}"
    if not isinstance(error, OmegaConfBaseException) or not getattr(error, "full_key", None):
        return first_line(error)
    key = str(error.full_key)
    owner = error.object_type
    if isinstance(error, MissingMandatoryValue):
        group = key.rpartition(".")[2]
        return (f"{key}: missing; choose one with {group}=NAME" if group in COMPONENTS else
                f"{key}: missing; it has no default")
    if isinstance(error, (ConfigKeyError, ConfigAttributeError)):
        if dataclasses.is_dataclass(owner):
            allowed = ", ".join(sorted(f.name for f in dataclasses.fields(owner)))
            return f"{key}: unknown key; allowed keys are {allowed}"
        return f"{key}: unknown key"
    if isinstance(error, ValidationError):
        return f"{key}: got {error.value!r}; expected {expected(_hint(error), key)}"
    return first_line(error)


def _hint(error: ValidationError) -> Any:
    """The type the refused value was to take: its dataclass field's, or a typed dict's or list's item type."""
    owner, name = error.object_type, str(error.key)
    if dataclasses.is_dataclass(owner) and name in {f.name for f in dataclasses.fields(owner)}:
        return typing.get_type_hints(owner)[name]
    args = typing.get_args(error.ref_type)
    return args[-1] if args else Any


_NAMES = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}


def expected(hint: Any, key: str) -> str:
    """How an error names the type of `key`: `a whole number`, `a number or null`, `a list of numbers`, `a mapping
    of train keys`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        named = [expected(a, key) for a in args if a is not type(None)]
        return " or ".join(named) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"a list of {expected(args[0], key).removeprefix('a ')}s" if args else "a list"
    if origin is dict:
        return "a mapping"
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return f"a mapping of {key} keys"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))
