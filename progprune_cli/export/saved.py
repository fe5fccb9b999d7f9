"""`load_model`: a run's model rebuilt from the registry and its tensor-only checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from progprune_cli.checkpoints import CodeRefused, load_checkpoint
from progprune_cli.data import DataInfo, build_data
from progprune_cli.errors import UserError
from progprune_cli.export.run import RunFolder, targets_in
from progprune_cli.pruning.compacted import (FORMAT, VERSION, fresh_model, load_weights, rebuild_compacted,
                                             save_compacted)

__all__ = ["FORMAT", "VERSION", "load_model", "read_checkpoint", "rebuild_compacted", "save_compacted"]


def load_model(run_dir: str | Path, which: str, info: DataInfo | None = None,
               trust_targets: bool = False) -> nn.Module:
    """The run's `which` model (results.schema.SAVED_MODELS: compacted, finetuned, ..., scratch), eval mode, on the
    CPU.

    Reads only RUN_DIR/.hydra/config.yaml (yaml.safe_load) and checkpoints/<which>.pt (weights_only=True), and
    builds the architecture from the model registry. `info` is the data's shape; without it the mask-only models
    build the run's dataset to learn it (a checkpoint in the compacted format, compacted.pt or scratch.pt, carries
    its own). A model of the user's own class (model._target_) is built only with `trust_targets=True`, which
    imports its module (from the current folder or PYTHONPATH, as the run did); without it that is refused in one
    line naming the import.
    """
    run = RunFolder.open(run_dir)
    run.require_trusted(trust_targets)
    path = run.checkpoint(which)
    data = read_checkpoint(path, which)
    if which == "compacted" or data.get("format") == FORMAT:
        run.require_trusted(trust_targets, targets_in(data.get("model")))  # it names its own model config too
        model = rebuild_compacted(data, path)
    else:
        if info is None:
            info = build_data(run.cfg.dataset, run.cfg.seed).info
        model = fresh_model(run.cfg.model, info)
        load_weights(model, data.get("model"), path)
    return model.cpu().eval()


def read_checkpoint(path: Path, which: str = "") -> dict[str, Any]:
    """A checkpoint's dict, read as every stage reads one (weights_only=True); anything else is a one-line error."""
    try:
        data = load_checkpoint(path)
    except CodeRefused as error:  # pickled objects: refused without running them
        if which != "compacted":
            raise
        raise UserError(f"{error} (older progprune saved compacted.pt as a pickled module; the finetuned model "
                        "has the same weights, masked)") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a dict of tensors, found {type(data).__name__}")
    return data
