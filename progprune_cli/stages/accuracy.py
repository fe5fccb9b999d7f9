"""An accuracy pass: top-1 accuracy and mean loss of a model on a split, without gradients, shared under torchrun."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from progprune_cli.data import Batches
from progprune_cli.distributed import World, sum_over_ranks
from progprune_cli.optim.losses import LossFn

# Accuracy passes' batch: on a CPU a smaller batch keeps a conv net's activations under glibc's 32 MiB mmap
# threshold, so their memory is reused instead of mapped and faulted in anew (allocator.py). bench/eval_batch.py, CPU
# time per sample: two_conv_cnn 1.64× and resnet18 1.18× faster at 128 than at 512 (an MLP is faster wide, by
# microseconds). A GPU wants it wide.
EVAL_BATCH = {"cpu": 128}
EVAL_BATCH_ELSEWHERE = 512


@torch.inference_mode()
def evaluate(model: nn.Module, dataset: Dataset, loss_fn: LossFn, device: torch.device, batch_size: int | None = None,
             *, world: World) -> tuple[float, float]:
    """Top-1 accuracy and mean loss of `model` on `dataset` (per token for a language model). Under torchrun (a
    distributed `world`; World() is one process) each rank evaluates its share of every batch and the sums are
    all-reduced, so every rank returns the figures of the whole dataset; every rank must call it."""
    model.eval()
    correct, loss_sum, count = 0, 0.0, 0
    batch_size = batch_size or EVAL_BATCH.get(device.type, EVAL_BATCH_ELSEWHERE)
    for x, y in Batches(dataset, batch_size, device=device, shard=world.shard):
        logits = model(x)
        # A language model's targets are (batch, block) tokens: every position counts once.
        loss_sum += float(loss_fn(logits, y)) * y.numel()
        correct += int((logits.argmax(-1) == y).sum())
        count += y.numel()
    if world.distributed:
        # The loss sum is added in another order than one process would.
        totals = sum_over_ranks(world, [correct, loss_sum, count], device)
        correct, loss_sum, count = int(totals[0]), float(totals[1]), int(totals[2])
    return correct / max(count, 1), loss_sum / max(count, 1)
