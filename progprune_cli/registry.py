"""Name → implementation registries; the key is the same word as the YAML file under conf/<group>/, and each entry's
schema (a dataclass) is stored in Hydra's ConfigStore as `<group>/base_<name>`, the base that YAML composes on."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Callable, Generic, TypeVar

from hydra.core.config_store import ConfigStore

from progprune_cli.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """A dict of named builders that fails with the list of known names on a miss; `base` is the schema of the
    keys every entry of a config group shares (config/schema.py), which an entry's own schema extends (None: the
    names are a key's values, e.g. train.loss, and have no keys of their own)."""

    def __init__(self, group: str, base: type | None = None) -> None:
        self.group, self.base = group, base
        self._items: dict[str, T] = {}
        self._schemas: dict[str, type] = {}

    def register(self, name: str, schema: type | None = None) -> Callable[[T], T]:
        """Register under `name` with `schema` (a dataclass extending `base`; default: `base`, no keys of its own)."""
        schema = self.base if schema is None else schema
        if self.base is not None and not (dataclasses.is_dataclass(schema) and issubclass(schema, self.base)):
            raise TypeError(f"{self.group} {name!r}: its schema must be a dataclass extending {self.base.__name__}")

        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.group} {name!r} registered twice")
            self._items[name] = item
            if schema is not None:
                self._schemas[name] = schema
                ConfigStore.instance().store(group=self.group, name=schema_name(name), node=schema)
            return item

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UserError(
                f"{self.group}={name}: unknown {self.group}; choose one of {', '.join(self.names())}"
            ) from None

    def schema(self, name: str) -> type:
        self.get(name)  # an unknown name: the one-line error
        return self._schemas[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


def import_all(package: str, path: list[str]) -> None:
    """Import every module of `package` (its `__path__`): each registers what it defines, so adding a component
    is adding its module (and its YAML), with no list to extend."""
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")


def schema_name(name: str) -> str:
    """What conf/<group>/<name>.yaml names in its defaults list: the ConfigStore entry of its schema."""
    return f"base_{name}"
