"""Dataset registry: `conf/dataset/<name>.yaml` ↔ the dataset registered as `<name>` by `<name>.py`."""

from __future__ import annotations

from progprune_cli.data.base import (
    DATASETS,
    DataInfo,
    DataSplits,
    Batches,
    build_data,
    inputs,
    prepare_data,
    sample_of,
    steps_per_epoch,
)
from progprune_cli.data.splits import TensorSplit
from progprune_cli.registry import import_all

import_all(__name__, __path__)  # importing a module registers its dataset

__all__ = ["DATASETS", "Batches", "DataInfo", "DataSplits", "TensorSplit", "build_data", "inputs", "prepare_data",
           "sample_of", "steps_per_epoch"]
