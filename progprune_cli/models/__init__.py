"""Model registry: `conf/model/<name>.yaml` ↔ `MODELS.register("<name>", schema)` in a module of this package
(a family shares one module; every module here is imported, so adding a model adds no line elsewhere)."""

from progprune_cli.models.base import MODELS, build_model
from progprune_cli.registry import import_all

import_all(__name__, __path__)

__all__ = ["MODELS", "build_model"]
