"""Stage 3, finetune: recover accuracy with the masks fixed for `finetune.epochs`; finetuned.pt."""

from __future__ import annotations

import torch
from torch import nn

from progprune_cli.parts import Parts
from progprune_cli.stages.io import StageIO
from progprune_cli.stages.loop import Loop
from progprune_cli.stages.train import load_model


def finetune(parts: Parts, io: StageIO, start_iteration: int) -> nn.Module:
    """The pruned model trained on with its masks enforced after every step."""
    if io.done("finetuned"):
        return load_model(parts, io, "finetuned")
    cfg = parts.cfg
    pruned = io.load("pruned")
    model = load_model(parts, io, "pruned")
    torch.manual_seed(cfg.seed + 2)
    loop = Loop(model, parts.data.train, parts.data.val, cfg.optimizer, parts.loss_fn, parts.device,
                cfg.finetune.batch_size, io, "finetune", cfg.seed + 2, iteration=start_iteration)
    loop.set_masks(pruned["masks"])
    loop.target_sparsity = None if pruned["pruning"]["mode"] == "threshold" else pruned["pruning"]["target"]
    loop.achieved_sparsity = pruned["pruning"]["achieved_sparsity"]
    io.log(f"finetune: {cfg.finetune.epochs} epochs with the masks fixed")
    loop.run(cfg.finetune.epochs)
    io.write_rows("finetune", loop.rows)
    io.save("finetuned", {"model": model.state_dict(), "masks": pruned["masks"],
                          "unit_masks": pruned["unit_masks"], "stage": "finetune"})
    return model
