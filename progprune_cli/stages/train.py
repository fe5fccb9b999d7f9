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
    """Exactly what a dense checkpoint depends on: data, model (with the code that builds it and the weights it
    starts from), optimizer, training settings, seed."""
    cfg = parts.cfg
    train = {k: v for k, v in dataclasses.asdict(cfg.train).items() if k not in ("reuse", "threads")}
    # The weights by their content, not their path (a file replaced in place is another model; a copy elsewhere is
    # the same); a user's class by its module's hash, a library's by its version. Left out when there are none, so
    # the entries of models without them keep their keys.
    by_content = ("weights", *getattr(cfg.model, "KEYED_BY_CONTENT", ()))  # a model folder's path (model=hf)
    model = {k: v for k, v in dataclasses.asdict(cfg.model).items() if k not in by_content}
    origin = parts.origin
    if origin is not None and origin.weights is not None:
        model["weights_sha256"] = origin.weights.sha256
    if origin is not None and origin.code is not None:
        model["code"] = origin.code
    # Device and versions too: a model trained on a GPU, or by other code, must not pass for this one.
    dataset = {k: v for k, v in dataclasses.asdict(cfg.dataset).items()
               if k not in getattr(cfg.dataset, "KEYED_BY_CONTENT", ())}  # the tokenizer folder (tokenizer=hf)
    if parts.data.fingerprint is not None:  # left out otherwise, so other datasets' entries keep their keys
        dataset["content"] = parts.data.fingerprint
    return {"dataset": dataset, "model": model,
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
        io.log(train_line(parts))
        resume_loop(run, loop, progress)

        def after_epoch(epoch: int) -> None:
            if rewind == epoch + 1:
                io.save("rewind", {"model": model.state_dict()})

        loop.run(cfg.train.epochs, after_epoch=after_epoch)
        io.write_rows("train", loop.rows)
        io.save(self.output, {"model": model.state_dict(), "masks": None, "stage": "train",
                              "epochs": cfg.train.epochs, "rows": loop.rows})
        return model


def train_line(parts: Parts) -> str:
    """What the train stage does, for run.log: with train.epochs=0, what the original is instead."""
    cfg, origin = parts.cfg, parts.origin
    source = origin.source.removeprefix("progprune:") if origin is not None else cfg.model.name
    weights = origin.weights if origin is not None else None
    start = f" from {weights.file}" if weights is not None else ""
    if cfg.train.epochs == 0 and weights is not None:
        return (f"train: train.epochs=0: the original is {source} as loaded from {weights.file} (sha256 "
                f"{weights.sha256[:12]}), not trained here")
    if cfg.train.epochs == 0:
        return (f"train: train.epochs=0 and no model.weights: the original is {source} UNTRAINED (initialised at "
                "random); its figures are not those of a trained model")
    return (f"train: {cfg.train.epochs} epochs of the dense {source}{start} on {cfg.dataset.name} "
            f"({len(parts.data.train)} train samples) on {parts.device}")
