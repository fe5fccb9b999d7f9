"""The one training loop every stage uses: masks enforced after each step, per-epoch metric rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.utils.data import Dataset

from progprune_cli.data import Batches, steps_per_epoch
from progprune_cli.optim.losses import LossFn
from progprune_cli.optim.optimizers import build_optimizer, regularization
from progprune_cli.config import OptimizerConfig
from progprune_cli.pruning.masks import Masks, apply_masks
from progprune_cli.stages.io import StageIO


@torch.inference_mode()
def evaluate(model: nn.Module, dataset: Dataset, loss_fn: LossFn, device: torch.device,
             batch_size: int = 512) -> tuple[float, float]:
    """Top-1 accuracy and mean loss of `model` on `dataset`."""
    model.eval()
    correct, loss_sum, count = 0, 0.0, 0
    for x, y in Batches(dataset, batch_size, device=device):
        logits = model(x)
        loss_sum += float(loss_fn(logits, y)) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        count += len(y)
    return correct / max(count, 1), loss_sum / max(count, 1)


@dataclass
class Loop:
    """Trains `model` for whole epochs; `masks` (if any) stay zero; `before_step(i)` may prune or rewind."""

    model: nn.Module
    train_set: Dataset
    val_set: Dataset
    optimizer_cfg: OptimizerConfig
    loss_fn: LossFn
    device: torch.device
    batch_size: int
    io: StageIO
    stage: str
    seed: int
    iteration: int = 0
    masks: Masks | None = field(default=None, init=False)  # set with set_masks()
    target_sparsity: float | None = None
    # Set by the stage in the strategy's own units (weights, or channels for channel strategies).
    achieved_sparsity: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.model.to(self.device)
        self._masked: list[tuple[nn.Parameter, torch.Tensor]] = []
        self.optimizer = build_optimizer(self.optimizer_cfg, self.model)

    def reset_optimizer(self) -> None:
        """A fresh optimizer (after a lottery-ticket rewind the old moments belong to other weights)."""
        self.optimizer = build_optimizer(self.optimizer_cfg, self.model)

    def set_masks(self, masks: Masks | None) -> None:
        """Enforce these masks from now on (kept on the device as floats so each step is one multiply)."""
        self.masks = None if masks is None else {
            k: m.to(self.device, torch.float32) for k, m in masks.items()}
        params = dict(self.model.named_parameters())
        # Looked up once here, not in every step of the hot loop.
        self._masked = [(params[k], m) for k, m in (self.masks or {}).items()]
        if self.masks:
            apply_masks(self.model, self.masks)

    def run(self, epochs: int, before_step: Callable[[int], None] | None = None,
            after_epoch: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
        """Train `epochs` epochs; `before_step(i)` runs before step i of this call, `after_epoch(e)` after each."""
        per_epoch = steps_per_epoch(self.train_set, self.batch_size)
        with _progress(self.io, f"{self.stage}", epochs * per_epoch) as advance:
            for epoch in range(epochs):
                loader = Batches(self.train_set, self.batch_size, shuffle=True, seed=self.seed * 1000 + epoch,
                                 device=self.device)
                # Summed on the device and read once per epoch: a per-step .item() would sync a GPU every step.
                loss_sum = torch.zeros((), device=self.device)
                correct = torch.zeros((), device=self.device, dtype=torch.long)
                count = 0
                self.model.train()
                for i, (x, y) in enumerate(loader):
                    if before_step is not None:
                        before_step(epoch * per_epoch + i)
                        self.model.train()
                    loss, right = self._step(x, y)
                    loss_sum, correct, count = loss_sum + loss * len(y), correct + right, count + len(y)
                    advance()
                self._end_epoch(epoch, float(loss_sum) / count, int(correct) / count)
                if after_epoch is not None:
                    after_epoch(epoch)
        return self.rows

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(x)
        loss = self.loss_fn(logits, y)
        penalty = regularization(self.model, self.optimizer_cfg)
        (loss if penalty is None else loss + penalty).backward()
        # Pruned weights get no gradient, so clipping and the optimizer see only live weights.
        for param, mask in self._masked:
            if param.grad is not None:
                param.grad.mul_(mask)
        if self.optimizer_cfg.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.optimizer_cfg.clip_grad_norm)
        self.optimizer.step()
        # Momentum/Adam moments from before a weight was pruned would move it again; re-zero after each step.
        with torch.no_grad():
            for param, mask in self._masked:
                param.mul_(mask)
        self.iteration += 1
        return loss.detach(), (logits.argmax(1) == y).sum()

    def _end_epoch(self, epoch: int, train_loss: float, train_acc: float) -> None:
        val_acc, val_loss = evaluate(self.model, self.val_set, self.loss_fn, self.device)
        achieved = self.achieved_sparsity
        self.rows.append({
            "stage": self.stage, "event": "epoch", "epoch": epoch, "iteration": self.iteration,
            "lr": self.optimizer.param_groups[0]["lr"], "train_loss": train_loss, "train_acc": train_acc,
            "val_loss": val_loss, "val_acc": val_acc, "target_sparsity": self.target_sparsity,
            "achieved_sparsity": achieved,
        })
        self.io.log(f"{self.stage} epoch {epoch + 1}: train loss {train_loss:.4f} acc {train_acc:.2%}, "
                    f"val loss {val_loss:.4f} acc {val_acc:.2%}"
                    + (f", sparsity {achieved:.2%}" if self.masks else ""))


class _progress:
    """A rich progress bar on a terminal; nothing (the per-epoch log lines suffice) when output is piped."""

    def __init__(self, io: StageIO, label: str, total: int) -> None:
        self.bar = None
        if io.console.is_terminal:
            self.bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                console=io.console, transient=True)
            self.task = self.bar.add_task(label, total=total)

    def __enter__(self) -> Callable[[], None]:
        if self.bar is None:
            return lambda: None
        self.bar.start()
        return lambda: self.bar.advance(self.task)  # type: ignore[union-attr]

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
