"""One strategy name, two granularities: the `granularity` key picks the mask-only or the channel class."""

from __future__ import annotations

from typing import Any, Callable

from progprune_cli.pruning.strategies.base import Strategy


def by_granularity(weight: type[Strategy], channel: type[Strategy]) -> Callable[[Any], Strategy]:
    """A registry entry building `weight` (single weights, mask-only) or `channel` (compactable) from the config."""
    classes = {"weight": weight, "channel": channel}

    def build(cfg: Any) -> Strategy:
        return classes[cfg.granularity](cfg)

    return build
