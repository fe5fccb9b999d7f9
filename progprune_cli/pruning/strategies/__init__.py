"""Strategy registry: `conf/strategy/<name>.yaml` ↔ `STRATEGIES.register("<name>", schema)` in a module of this
package (every module here is imported, so adding a strategy adds no line elsewhere)."""

from progprune_cli.pruning.strategies.base import STRATEGIES, PruneContext, StepReport, Strategy, build_strategy
from progprune_cli.registry import import_all

import_all(__name__, __path__)

__all__ = ["STRATEGIES", "PruneContext", "StepReport", "Strategy", "build_strategy"]
