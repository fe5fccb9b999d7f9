"""Strategy registry: `conf/strategy/<name>.yaml` ↔ `STRATEGIES.register("<name>")` in `<name>.py`."""

from progprune_cli.pruning.strategies.base import STRATEGIES, PruneContext, StepReport, Strategy, build_strategy

from progprune_cli.pruning.strategies import (  # noqa: F401,E402  (registers)
    activation, random, structured, taylor, weight)

__all__ = ["STRATEGIES", "PruneContext", "StepReport", "Strategy", "build_strategy"]
