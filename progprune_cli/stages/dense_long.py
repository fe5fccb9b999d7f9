"""The fair baseline: the dense model trained on for as many epochs as prune + finetune; dense_long.pt."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from progprune_cli.parts import Parts
from progprune_cli.stages.cache import cache_key, cached, store
from progprune_cli.stages.io import StageIO
from progprune_cli.stages.loop import Loop
from progprune_cli.stages.train import dense_settings, load_model


def dense_long(parts: Parts, io: StageIO, start_iteration: int, cache_dir: Path | None) -> nn.Module:
    """Without it "finetuning recovered accuracy" could just mean "trained longer"."""
    if io.done("dense_long"):
        return load_model(parts, io, "dense_long")
    cfg = parts.cfg
    extra = cfg.prune.epochs + cfg.finetune.epochs
    settings = {**dense_settings(parts, cfg.train.epochs), "extra_epochs": extra,
                "batch_size": cfg.finetune.batch_size}
    if cache_dir is None or not cfg.train.reuse:
        return _train(parts, io, start_iteration, extra)
    with cached(cache_dir, cache_key(settings)) as entry:
        if entry.exists():
            shutil.copyfile(entry, io.checkpoint("dense_long"))
            io.write_rows("dense_long", torch.load(entry, weights_only=False)["rows"])
            io.log(f"dense_long: reused from {entry.parent}")
            return load_model(parts, io, "dense_long")
        model = _train(parts, io, start_iteration, extra)
        store(io.checkpoint("dense_long"), entry, settings)
        return model


def _train(parts: Parts, io: StageIO, start_iteration: int, epochs: int) -> nn.Module:
    cfg = parts.cfg
    model = load_model(parts, io, "original")
    torch.manual_seed(cfg.seed + 3)
    loop = Loop(model, parts.data.train, parts.data.val, cfg.optimizer, parts.loss_fn, parts.device,
                cfg.finetune.batch_size, io, "dense_long", cfg.seed + 3, iteration=start_iteration)
    io.log(f"dense_long: the dense model trained {epochs} more epochs (as long as prune + finetune)")
    loop.run(epochs)
    io.write_rows("dense_long", loop.rows)
    io.save("dense_long", {"model": model.state_dict(), "masks": None, "stage": "dense_long", "rows": loop.rows})
    return model
