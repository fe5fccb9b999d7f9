"""The Scratch baseline (Liu et al. 2019): the compacted architecture initialised at random and trained from
scratch for train + prune + finetune epochs; scratch.pt, in the compacted checkpoint's format."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from progprune_cli.config import RunConfig, StageConfig
from progprune_cli.errors import UserError
from progprune_cli.models import build_model
from progprune_cli.pruning.compacted import rebuild_compacted, save_compacted
from progprune_cli.pruning.strategies import build_strategy
from progprune_cli.stages.base import STAGES, Produced, RunContext, Stage, resume_loop, stage_seed

CHANNEL_ONLY = ("only channel and head strategies compact (structured, activation, heads, or "
                "granularity=channel); set evaluate.scratch_baseline=false")


@STAGES.register("scratch")
class Scratch(Stage):
    """Without it "pruning found a good model" could just mean "this smaller architecture trains well"."""

    name = "scratch"

    @classmethod
    def applies(cls, cfg: RunConfig) -> bool:
        return cfg.strategy is not None and cfg.evaluate.scratch_baseline

    @classmethod
    def refuse(cls, cfg: RunConfig) -> None:
        if not cfg.evaluate.scratch_baseline:
            return
        if cfg.strategy is None:
            raise UserError(f"evaluate.scratch_baseline: a dense run has no compacted architecture; {CHANNEL_ONLY}")
        strategy = build_strategy(cfg.strategy)
        if strategy.granularity == "weight":
            raise UserError(f"evaluate.scratch_baseline: strategy {cfg.strategy.name} prunes single weights "
                            f"(mask-only), so there is no compacted architecture; {CHANNEL_ONLY}")

    def section(self, cfg: RunConfig) -> StageConfig:
        """Epoch-matched: train + prune + finetune epochs, at the train stage's batch size, lr and schedule."""
        return StageConfig(epochs=cfg.train.epochs + cfg.prune.epochs + cfg.finetune.epochs,
                           batch_size=cfg.train.batch_size, lr=cfg.train.lr, lr_scheduler=cfg.train.lr_scheduler)

    def load(self, run: RunContext, produced: Produced, final: dict[str, Any]) -> nn.Module:
        return rebuild_compacted(final, run.io.checkpoint(self.output)).to(run.parts.device)

    def run(self, run: RunContext, produced: Produced, progress: dict[str, Any] | None) -> nn.Module:
        parts, io, section = run.parts, run.io, self.section(run.parts.cfg)
        pruned, strategy = produced.pruned, parts.strategy
        assert pruned is not None and strategy is not None
        # A fresh model of the run's own code (its initialisation, no model.weights), seeded by this row, with the
        # channels the strategy removed taken out the way compaction takes them out: the compacted architecture.
        torch.manual_seed(stage_seed(parts.cfg.seed, self.name))
        model = strategy.compact(build_model(parts.cfg.model, parts.data.info), pruned.unit_masks,
                                 parts.data.info)
        assert model is not None
        model = model.to(parts.device)
        loop = run.loop(self.name, model, section,
                        save=lambda: io.save(self.progress_name(), {"loop": loop.state_dict()}))
        if progress is None:
            physical = sum(p.numel() for p in model.parameters())
            io.log(f"scratch: the compacted architecture ({physical} parameters) initialised at random and "
                   f"trained {section.epochs} epochs (as long as train + prune + finetune)")
        resume_loop(run, loop, progress)
        loop.run(section.epochs)
        io.write_rows(self.name, loop.rows)
        save_compacted(io.checkpoint(self.output), model, pruned.unit_masks, parts.cfg.model, parts.data.info,
                       extra={"stage": self.name, "rows": loop.rows}, granularity=parts.strategy.granularity)
        return model
