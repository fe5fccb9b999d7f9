"""The fair baseline: the dense model trained on for as many epochs as prune + finetune; dense_long.pt."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from progprune_cli.config import RunConfig, StageConfig
from progprune_cli.stages.base import STAGES, Produced, RunContext, Stage, resume_loop, stage_seed
from progprune_cli.stages.cache import reuse_or_train
from progprune_cli.stages.train import dense_settings


@STAGES.register("dense_long")
class DenseLong(Stage):
    """Without it "finetuning recovered accuracy" could just mean "trained longer"."""

    name = "dense_long"
    after = ("train",)

    @classmethod
    def applies(cls, cfg: RunConfig) -> bool:
        # With no prune or finetune epochs (one-shot, no retraining) it would be the original again.
        return cfg.strategy is not None and cfg.evaluate.dense_baseline and cfg.prune.epochs + cfg.finetune.epochs > 0

    def section(self, cfg: RunConfig) -> StageConfig:
        """prune + finetune epochs at the finetune batch size, with the train stage's lr and schedule."""
        return StageConfig(epochs=cfg.prune.epochs + cfg.finetune.epochs, batch_size=cfg.finetune.batch_size,
                           lr=cfg.train.lr, lr_scheduler=cfg.train.lr_scheduler)

    def load(self, run: RunContext, produced: Produced, final: dict[str, Any]) -> nn.Module:
        return run.model_from(final)

    def run(self, run: RunContext, produced: Produced, progress: dict[str, Any] | None) -> nn.Module:
        section = self.section(run.parts.cfg)
        settings = {**dense_settings(run.parts, run.parts.cfg.train.epochs), "extra_epochs": section.epochs,
                    "batch_size": section.batch_size}
        model, _ = reuse_or_train(run, self.name, self.output, settings,
                                  lambda: self._train(run, produced, progress))
        return model

    def _train(self, run: RunContext, produced: Produced, progress: dict[str, Any] | None) -> nn.Module:
        io, section = run.io, self.section(run.parts.cfg)
        assert produced.original is not None
        model = copy.deepcopy(produced.original.model)  # the original stays as it was, for evaluation
        loop = run.loop("dense_long", model, section,
                        save=lambda: io.save(self.progress_name(), {"loop": loop.state_dict()}))
        if progress is None:
            torch.manual_seed(stage_seed(run.parts.cfg.seed, "dense_long"))
            io.log(f"dense_long: the dense model trained {section.epochs} more epochs (as long as prune + "
                   "finetune)")
        resume_loop(run, loop, progress)
        loop.run(section.epochs)
        io.write_rows("dense_long", loop.rows)
        io.save(self.output, {"model": model.state_dict(), "masks": None, "stage": "dense_long", "rows": loop.rows})
        return model
