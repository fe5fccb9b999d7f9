"""The one training loop every stage uses: masks enforced after each step, resumable at any step, per-epoch rows."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.utils.data import Dataset

from progprune_cli.config import LRSchedulerConfig, OptimizerConfig
from progprune_cli.data import Batches, steps_per_epoch
from progprune_cli.errors import UserError
from progprune_cli.optim.losses import LossFn
from progprune_cli.optim.lr_schedulers import Horizon, build_lr_scheduler
from progprune_cli.optim.optimizers import build_optimizer, regularization
from progprune_cli.pruning.masks import Masks, apply_masks
from progprune_cli.stages.io import StageIO
from progprune_cli.stages.rng import capture_rng, restore_rng
from progprune_cli.stages.signals import Interrupted, StopRequest

# On a GPU, reading the loss every step would sync it every step; the finite check reads a flag this often instead.
_CUDA_CHECK_EVERY = 50


class Diverged(UserError):
    """A non-finite loss or weight: the stage stops at that step and the last good checkpoint is kept."""


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
    """Trains `model` up to a stage's epoch count from wherever it stands (so a restored Loop resumes mid-epoch);
    `masks` (if any) stay exactly zero; `before_step(i)` may prune or rewind; `save()` writes a checkpoint."""

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
    iteration: int = 0  # optimizer steps since the start of the run (metrics.csv's x axis)
    lr: float | None = None  # the stage's own lr (None: optimizer.lr)
    lr_scheduler: LRSchedulerConfig = field(default_factory=LRSchedulerConfig)
    epochs: int = 1  # the stage's length: the LR schedule's horizon
    stop: StopRequest | None = None
    every_steps: int | None = None
    save: Callable[[], None] | None = None
    masks: Masks | None = field(default=None, init=False)  # set with set_masks()
    target_sparsity: float | None = None
    # Set by the stage in the strategy's own units (weights, or channels for channel strategies).
    achieved_sparsity: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)
    epoch: int = field(default=0, init=False)  # epochs finished in this stage
    step_in_epoch: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.model.to(self.device)
        self._pruned: list[tuple[nn.Parameter, torch.Tensor]] = []
        self.per_epoch = steps_per_epoch(self.train_set, self.batch_size)
        self._new_optimizer()
        self._reset_sums()

    @property
    def stage_step(self) -> int:
        return self.epoch * self.per_epoch + self.step_in_epoch

    def _new_optimizer(self) -> None:
        cfg = self.optimizer_cfg
        if self.lr is not None:
            cfg = OptimizerConfig(cfg.name, self.lr, cfg.clip_grad_norm, cfg.l1, cfg.l2, cfg.options)
        self.optimizer = build_optimizer(cfg, self.model)
        self.scheduler = build_lr_scheduler(self.lr_scheduler, self.optimizer,
                                            Horizon(self.epochs * self.per_epoch, self.per_epoch),
                                            f"{self.stage}.lr_scheduler")

    def reset_optimizer(self) -> None:
        """A fresh optimizer (after a lottery-ticket rewind the old moments belong to other weights); the LR
        schedule keeps its place."""
        self._new_optimizer()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": intended here
            for _ in range(self.stage_step):
                self.scheduler.step()

    def set_masks(self, masks: Masks | None) -> None:
        """Enforce these masks from now on (kept on the device as booleans: a pruned weight is set to zero, not
        multiplied by it, so it stays exactly zero even if its value had become NaN)."""
        self.masks = None if masks is None else {k: m.to(self.device, torch.bool) for k, m in masks.items()}
        params = dict(self.model.named_parameters())
        # Looked up once here, not in every step of the hot loop.
        self._pruned = [(params[k], ~m) for k, m in (self.masks or {}).items()]
        if self.masks:
            apply_masks(self.model, self.masks)

    def run(self, epochs: int, before_step: Callable[[int], None] | None = None,
            after_epoch: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
        """Train until `epochs` epochs of this stage are done; `before_step(i)` runs before the stage's step i,
        `after_epoch(e)` after epoch e. A stop request ends it after the current step, with a checkpoint."""
        remaining = max(epochs - self.epoch, 0) * self.per_epoch - self.step_in_epoch
        with _progress(self.io, self.stage, max(remaining, 0)) as advance:
            while self.epoch < epochs:
                order = Batches(self.train_set, self.batch_size, shuffle=True, seed=self.seed * 1000 + self.epoch,
                                device=self.device, start=self.step_in_epoch)
                self.model.train()
                for x, y in order:
                    if before_step is not None:
                        before_step(self.stage_step)
                        self.model.train()
                    self._step(x, y)
                    advance()
                    self._after_step()
                self._end_epoch()
                if after_epoch is not None:
                    after_epoch(self.epoch - 1)
                self._checkpoint()
        return self.rows

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(x)
        loss = self.loss_fn(logits, y)
        penalty = regularization(self.model, self.optimizer_cfg)
        (loss if penalty is None else loss + penalty).backward()
        # Pruned weights get no gradient, so clipping and the optimizer see only live weights.
        for param, pruned in self._pruned:
            if param.grad is not None:
                param.grad.masked_fill_(pruned, 0.0)
        if self.optimizer_cfg.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.optimizer_cfg.clip_grad_norm)
        self.optimizer.step()
        # Momentum/Adam moments from before a weight was pruned would move it again; re-zero after each step.
        with torch.no_grad():
            for param, pruned in self._pruned:
                param.masked_fill_(pruned, 0.0)
        self.scheduler.step()
        loss = loss.detach()
        # Summed on the device and read once per epoch: a per-step .item() would sync a GPU every step.
        self._loss_sum += loss * len(y)
        self._correct += (logits.argmax(1) == y).sum()
        self._count += len(y)
        self._finite &= torch.isfinite(loss)
        self.iteration += 1
        self.step_in_epoch += 1

    def _after_step(self) -> None:
        if self.device.type != "cuda" or self.stage_step % _CUDA_CHECK_EVERY == 0:
            self._check_finite()
        if self.stop is not None and self.stop.requested:
            self._checkpoint()
            raise Interrupted(self.stop.signum or 0, self.where())
        if self.every_steps and self.stage_step % self.every_steps == 0 and self.step_in_epoch < self.per_epoch:
            self._checkpoint()

    def where(self) -> str:
        return f"{self.stage} epoch {self.epoch + 1}, step {self.step_in_epoch} of {self.per_epoch}"

    def _check_finite(self, weights: bool = False) -> None:
        problem = None
        if not bool(self._finite):
            problem = "the training loss is not finite"
        elif weights and not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            problem = "a weight is not finite"
        if problem is not None:
            lr = self.optimizer.param_groups[0]["lr"]
            raise Diverged(f"{self.where()}: {problem}; training diverged (lower optimizer.lr, now {lr:g}, or set "
                           "optimizer.clip_grad_norm); the last good checkpoint is kept")

    def _checkpoint(self) -> None:
        self._check_finite(weights=True)  # never save a diverged state over a good one
        if self.save is not None:
            self.save()

    def _reset_sums(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device)
        self._correct = torch.zeros((), device=self.device, dtype=torch.long)
        self._count = 0
        self._finite = torch.ones((), device=self.device, dtype=torch.bool)

    def _end_epoch(self) -> None:
        self._check_finite(weights=True)
        train_loss, train_acc = float(self._loss_sum) / max(self._count, 1), int(self._correct) / max(self._count, 1)
        val_acc, val_loss = evaluate(self.model, self.val_set, self.loss_fn, self.device)
        achieved = self.achieved_sparsity
        self.rows.append({
            "stage": self.stage, "event": "epoch", "epoch": self.epoch, "iteration": self.iteration,
            "lr": self.optimizer.param_groups[0]["lr"], "train_loss": train_loss, "train_acc": train_acc,
            "val_loss": val_loss, "val_acc": val_acc, "target_sparsity": self.target_sparsity,
            "achieved_sparsity": achieved,
        })
        self.io.log(f"{self.stage} epoch {self.epoch + 1}: train loss {train_loss:.4f} acc {train_acc:.2%}, "
                    f"val loss {val_loss:.4f} acc {val_acc:.2%}"
                    + (f", sparsity {achieved:.2%}" if self.masks else ""))
        self.epoch, self.step_in_epoch = self.epoch + 1, 0
        self._reset_sums()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this loop stands: plain tensors and values only."""
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "masks": None if self.masks is None else {k: m.cpu() for k, m in self.masks.items()},
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "iteration": self.iteration, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "sums": {"loss": self._loss_sum.detach().clone(), "correct": self._correct.clone(),
                     "count": self._count, "finite": self._finite.clone()},
            "target_sparsity": self.target_sparsity, "achieved_sparsity": self.achieved_sparsity,
            "rows": list(self.rows), "rng": capture_rng(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.set_masks(state["masks"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.iteration, self.epoch, self.step_in_epoch = state["iteration"], state["epoch"], state["step_in_epoch"]
        sums = state["sums"]
        self._loss_sum, self._correct = sums["loss"].to(self.device), sums["correct"].to(self.device)
        self._count, self._finite = sums["count"], sums["finite"].to(self.device)
        self.target_sparsity, self.achieved_sparsity = state["target_sparsity"], state["achieved_sparsity"]
        self.rows = list(state["rows"])
        restore_rng(state["rng"])


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
