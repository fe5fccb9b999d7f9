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
    steps_per_epoch,
)
from progprune_cli.data.splits import TensorSplit

# Importing a module registers its dataset.
from progprune_cli.data import (  # noqa: F401,E402
    cifar10, cifar100, digits, fashion_mnist, imagefolder, kmnist, mnist, svhn, synthetic,
)

__all__ = ["DATASETS", "Batches", "DataInfo", "DataSplits", "TensorSplit", "build_data", "inputs", "prepare_data",
           "steps_per_epoch"]
