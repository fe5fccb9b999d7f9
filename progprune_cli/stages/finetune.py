"""Stage 3, finetune: recover accuracy with the masks fixed for `finetune.epochs`; finetuned.pt."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from progprune_cli.config import RunConfig
from progprune_cli.stages.base import STAGES, Produced, RunContext, Stage, resume_loop, stage_seed


@STAGES.register("finetune")
class Finetune(Stage):
    """The pruned model trained on with its masks enforced after every step."""

    name = "finetune"
    after = ("train", "prune")
    mask_only = True

    @classmethod
    def applies(cls, cfg: RunConfig) -> bool:
        return cfg.strategy is not None

    def load(self, run: RunContext, produced: Produced, final: dict[str, Any]) -> nn.Module:
        return run.model_from(final)

    def run(self, run: RunContext, produced: Produced, progress: dict[str, Any] | None) -> nn.Module:
        parts, io = run.parts, run.io
        cfg, pruned = parts.cfg, produced.pruned
        assert pruned is not None
        model = copy.deepcopy(pruned.model)  # the pruned model stays as it was, for evaluation
        loop = run.loop("finetune", model, cfg.finetune,
                        save=lambda: io.save(self.progress_name(), {"loop": loop.state_dict()}))
        if progress is None:
            torch.manual_seed(stage_seed(cfg.seed, "finetune"))
            loop.set_masks(pruned.masks)
            loop.target_sparsity = None if pruned.pruning.mode == "threshold" else pruned.pruning.target
            loop.achieved_sparsity = pruned.pruning.achieved_sparsity
            io.log(f"finetune: {cfg.finetune.epochs} epochs with the masks fixed")
        resume_loop(run, loop, progress)
        loop.run(cfg.finetune.epochs)
        io.write_rows("finetune", loop.rows)
        io.save(self.output, {"model": model.state_dict(), "masks": pruned.masks, "unit_masks": pruned.unit_masks,
                              "stage": "finetune", "rows": loop.rows})
        return model
