"""The JSON beside an exported model: what its input must look like, what its outputs mean, where it came from."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from progprune_cli import __version__
from progprune_cli.data import DataInfo, DataSplits
from progprune_cli.export.run import RunFolder
from progprune_cli.pruning.compacted import component_keys
from progprune_cli.measure.onnx_export import BATCH, INPUT, OUTPUT, Checked, Exported
from progprune_cli.results.status import config_hash

# The label order of the official CIFAR-10 batches.meta (a pickle progprune does not read).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DIGIT_CLASSES = tuple(str(i) for i in range(10))
KNOWN_CLASSES = {"cifar10": CIFAR10_CLASSES, "digits": DIGIT_CLASSES, "mnist": DIGIT_CLASSES}
# Built-in image datasets scale pixels to [0, 1] (digits: value / 16, the others: value / 255), before any
# normalization: what a caller feeds the model is (pixel in [0, 1] − mean) / std.
UNIT_RANGE = ("cifar10", "digits", "imagefolder", "mnist")


def sidecar_path(out: Path) -> Path:
    """model.onnx → model.json (any other name gets .json appended)."""
    return out.with_suffix(".json") if out.suffix == ".onnx" else out.with_name(out.name + ".json")


def describe(run: RunFolder, which: str, data: DataSplits, out: Path, exported: Exported,
             checked: Checked) -> dict[str, Any]:
    info, dataset = data.info, run.cfg.dataset
    normalization = ({"mean": list(dataset.mean), "std": list(dataset.std)}
                     if hasattr(dataset, "mean") and hasattr(dataset, "std") else None)
    return {
        "file": out.name,
        "format": "onnx",
        "opset": exported.opset,
        "exporter": exported.exporter,
        "model": which,
        "architecture": {"name": run.cfg.model.name, "options": component_keys(run.cfg.model)},
        **(_text_io(info) if info.vocab else {
            "input": {"name": INPUT, "shape": [BATCH, *info.shape], "dtype": "float32",
                      "pixel_range": [0.0, 1.0] if dataset.name in UNIT_RANGE else None,
                      "normalization": normalization},
            "output": {"name": OUTPUT, "shape": [BATCH, info.num_classes],
                       "meaning": "class logits (argmax = class)"}}),
        "class_names": class_names(dataset.name, data),
        "dataset": dataset.name,
        "run_id": run.id,
        "config_hash": config_hash(run.config),
        "check": {"runtime": "onnxruntime", "split": "test", "samples": checked.samples,
                  "max_abs_diff": checked.max_abs_diff, "tolerance": checked.tolerance},
        "exported": dt.datetime.now().isoformat(timespec="seconds"),
        "versions": {"progprune": __version__, "torch": torch.__version__, **_runtime_versions()},
    }


def _text_io(info: DataInfo) -> dict[str, Any]:
    """A language model's input and output: token ids (class_names maps an id to its symbol), next-token logits."""
    return {"input": {"name": INPUT, "shape": [BATCH, *info.shape], "dtype": "int64",
                      "meaning": "token ids; class_names[i] is token i"},
            "output": {"name": OUTPUT, "shape": [BATCH, info.width, info.vocab],
                       "meaning": "next-token logits at every position (argmax = the predicted next token)"}}


def class_names(dataset_name: str, data: DataSplits) -> list[str] | None:
    """Label i's name: what the dataset reports (DataInfo.classes, an ImageFolder's sorted class folders), else a
    built-in dataset's known labels, else None."""
    reported = getattr(data.info, "classes", ())
    if reported:
        return [str(c) for c in reported]
    split: Dataset = data.test
    while isinstance(split, Subset):
        split = split.dataset
    classes = getattr(split, "classes", None)
    if classes is not None:
        return [str(c) for c in classes]
    known = KNOWN_CLASSES.get(dataset_name)
    return list(known) if known is not None else None


def _runtime_versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
