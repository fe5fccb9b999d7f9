"""Stage 1, train: the dense model for `train.epochs` (or reused from the dense cache), saved as original.pt."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from progprune_cli import __version__
from progprune_cli.parts import Parts
from progprune_cli.stages.base import STAGES, Dense, Produced, RunContext, Stage, resume_loop
from progprune_cli.stages.cache import reuse_or_train


def dense_settings(parts: Parts, epochs: int) -> dict[str, Any]:
    """Exactly what a dense checkpoint depends on: data, model, optimizer, training settings, seed."""
    cfg = parts.cfg
    train = {k: v for k, v in dataclasses.asdict(cfg.train).items() if k not in ("reuse", "threads")}
    # Device and versions too: a model trained on a GPU, or by other code, must not pass for this one.
    return {"dataset": dataclasses.asdict(cfg.dataset), "model": dataclasses.asdict(cfg.model),
            "optimizer": dataclasses.asdict(cfg.optimizer), "train": train, "epochs": epochs,
            "seed": cfg.seed, "rewind": cfg.schedule.rewind if cfg.strategy else None,
            "device": parts.device.type, "torch": torch.__version__, "progprune": __version__}


@STAGES.register("train")
class Train(Stage):
    """Dense training; with `train.reuse` the result is shared through runs/.cache by every run that would
    train exactly the same model."""

    name = "train"

    def model_of(self, result: Dense) -> torch.nn.Module:
        return result.model

    def load(self, run: RunContext, produced: Produced, final: dict[str, Any]) -> Dense:
        return Dense(run.model_from(final))

    def run(self, run: RunContext, produced: Produced, progress: dict[str, Any] | None) -> Dense:
        settings = dense_settings(run.parts, run.parts.cfg.train.epochs)
        model, source = reuse_or_train(run, self.name, self.output, settings, lambda: self._train(run, progress),
                                       companions=("rewind",))
        return Dense(model, source)

    def _train(self, run: RunContext, progress: dict[str, Any] | None) -> torch.nn.Module:
        parts, io = run.parts, run.io
        cfg = parts.cfg
        model = parts.make_model()
        rewind = cfg.schedule.rewind if cfg.strategy is not None else None
        if rewind in ("init", 0) and progress is None:
            # Lottery-ticket rewinding needs the weights as they were at init (or after epoch k) later on.
            io.save("rewind", {"model": model.state_dict()})
        loop = run.loop("train", model, cfg.train, save=lambda: io.save(self.progress_name(),
                                                                        {"loop": loop.state_dict()}))
        io.log(f"train: {cfg.train.epochs} epochs of the dense {cfg.model.name} on {cfg.dataset.name} "
               f"({len(parts.data.train)} train samples) on {parts.device}")
        resume_loop(run, loop, progress)

        def after_epoch(epoch: int) -> None:
            if rewind == epoch + 1:
                io.save("rewind", {"model": model.state_dict()})

        loop.run(cfg.train.epochs, after_epoch=after_epoch)
        io.write_rows("train", loop.rows)
        io.save(self.output, {"model": model.state_dict(), "masks": None, "stage": "train",
                              "epochs": cfg.train.epochs, "rows": loop.rows})
        return model
