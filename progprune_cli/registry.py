"""Name → implementation registries; the key is the same word as the YAML file under conf/<group>/."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from progprune_cli.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """A dict of named builders that fails with the list of known names on a miss."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.group} {name!r} registered twice")
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UserError(
                f"{self.group}={name}: unknown {self.group}; choose one of {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
