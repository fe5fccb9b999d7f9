"""Dataset registry: `conf/dataset/<name>.yaml` ↔ `DATASETS.register("<name>")` in `<name>.py`."""

from __future__ import annotations

from progprune_cli.data.base import (
    DATASETS,
    DataInfo,
    DataSplits,
    Batches,
    build_data,
    inputs,
    steps_per_epoch,
)

# Importing a module registers its dataset.
from progprune_cli.data import cifar10, digits, imagefolder, mnist, synthetic  # noqa: F401,E402

__all__ = ["DATASETS", "Batches", "DataInfo", "DataSplits", "build_data", "inputs", "steps_per_epoch"]
