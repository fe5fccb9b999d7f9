"""Stage 1, train: the dense model for `train.epochs` (or reused from the dense cache), saved as original.pt."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import torch
from torch import nn

from progprune_cli import __version__
from progprune_cli.parts import Parts
from progprune_cli.stages.cache import cache_key, cached, store
from progprune_cli.stages.io import StageIO
from progprune_cli.stages.loop import Loop


def dense_settings(parts: Parts, epochs: int) -> dict:
    """Exactly what a dense checkpoint depends on: data, model, optimizer, training settings, seed."""
    cfg = parts.cfg
    train = {k: v for k, v in dataclasses.asdict(cfg.train).items() if k != "reuse"}
    # Device and versions too: a model trained on a GPU, or by other code, must not pass for this one.
    return {"dataset": dataclasses.asdict(cfg.dataset), "model": dataclasses.asdict(cfg.model),
            "optimizer": dataclasses.asdict(cfg.optimizer), "train": train, "epochs": epochs,
            "seed": cfg.seed, "rewind": cfg.schedule.rewind if cfg.strategy else None,
            "device": parts.device.type, "torch": torch.__version__, "progprune": __version__}


def train(parts: Parts, io: StageIO, cache_dir: Path | None) -> tuple[nn.Module, str | None]:
    """The dense model and, when it came from the cache, the cache folder it came from."""
    if io.done("original"):
        return load_model(parts, io, "original"), None
    settings = dense_settings(parts, parts.cfg.train.epochs)
    if cache_dir is None or not parts.cfg.train.reuse:
        return _train(parts, io), None
    key = cache_key(settings)
    with cached(cache_dir, key) as entry:
        if entry.exists():
            shutil.copyfile(entry, io.checkpoint("original"))
            if (entry.parent / "rewind.pt").exists():
                shutil.copyfile(entry.parent / "rewind.pt", io.checkpoint("rewind"))
            io.log(f"train: reused the dense model from {entry.parent} (same data, model, optimizer, train, seed)")
            io.write_rows("train", torch.load(entry, weights_only=False)["rows"])
            return load_model(parts, io, "original"), str(entry.parent)
        model = _train(parts, io)
        if io.checkpoint("rewind").exists():  # before the checkpoint: an entry is complete once that exists
            shutil.copyfile(io.checkpoint("rewind"), entry.parent / "rewind.pt")
        store(io.checkpoint("original"), entry, settings)
        return model, None


def _train(parts: Parts, io: StageIO) -> nn.Module:
    cfg = parts.cfg
    model = parts.make_model()
    rewind = cfg.schedule.rewind if cfg.strategy is not None else None
    if rewind in ("init", 0):
        # Lottery-ticket rewinding needs the weights as they were at init (or after epoch k) later on.
        io.save("rewind", {"model": model.state_dict()})
    loop = Loop(model, parts.data.train, parts.data.val, cfg.optimizer, parts.loss_fn, parts.device,
                cfg.train.batch_size, io, "train", cfg.seed)
    io.log(f"train: {cfg.train.epochs} epochs of the dense {cfg.model.name} on {cfg.dataset.name} "
           f"({len(parts.data.train)} train samples) on {parts.device}")

    def after_epoch(epoch: int) -> None:
        if rewind == epoch + 1:
            io.save("rewind", {"model": model.state_dict()})

    loop.run(cfg.train.epochs, after_epoch=after_epoch)
    io.write_rows("train", loop.rows)
    io.save("original", {"model": model.state_dict(), "masks": None, "stage": "train",
                         "epochs": cfg.train.epochs, "rows": loop.rows})
    return model


def load_model(parts: Parts, io: StageIO, name: str) -> nn.Module:
    model = parts.make_model()
    model.load_state_dict(io.load(name)["model"])
    return model.to(parts.device)
