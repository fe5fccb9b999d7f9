"""One strategy name, two granularities: the `granularity` option picks the mask-only or the channel class."""

from __future__ import annotations

from typing import Callable

from progprune_cli.pruning.strategies.base import Strategy
from progprune_cli.config import StrategyConfig
from progprune_cli.config.schema import common_keys
from progprune_cli.config.strict import from_dict


def by_granularity(weight: type[Strategy], channel: type[Strategy]) -> Callable[[StrategyConfig], Strategy]:
    """A registry entry building `weight` (single weights, mask-only) or `channel` (compactable) from the config."""
    classes = {"weight": weight, "channel": channel}

    def build(cfg: StrategyConfig) -> Strategy:
        opts = from_dict(weight.Options, cfg.options, "strategy", common_keys(StrategyConfig))
        return classes[opts.granularity](cfg)

    return build
