"""The one training loop every stage uses: masks enforced after each step, resumable at any step, per-epoch rows;
autocast precision, channels_last, torch.compile and DistributedDataParallel (torchrun) are options of it."""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import Dataset

from progprune_cli.config import LRSchedulerConfig, OptimizerConfig
from progprune_cli.data import Batches, steps_per_epoch
from progprune_cli.distributed import (World, agree_on_masks, agree_on_weights, by_rank, check_shards, loss_share,
                                       max_over_ranks, sum_over_ranks, wrap_ddp)
from progprune_cli.errors import UserError
from progprune_cli.optim import precision as amp
from progprune_cli.optim.losses import LossFn
from progprune_cli.optim.lr_schedulers import LRHorizon, build_lr_scheduler
from progprune_cli.optim.optimizers import build_optimizer, regularization
from progprune_cli.pruning.masks import Masks, apply_masks
from progprune_cli.signals import Interrupted, StopRequest
from progprune_cli.stages.accuracy import evaluate
from progprune_cli.stages.io import StageIO
from progprune_cli.stages.rng import capture_rng, restore_rng

# On a GPU, reading the loss every step would sync it every step; the finite check reads a flag this often instead.
# Under torchrun the ranks agree on that flag and on a stop request in one all-reduce, as often.
_CUDA_CHECK_EVERY = 50


class Diverged(UserError):
    """A non-finite loss or weight: the stage stops at that step and the last good checkpoint is kept."""


@dataclass
class Loop:
    """Trains `model` up to a stage's epoch count from wherever it stands (so a restored Loop resumes mid-epoch);
    `masks` (if any) stay exactly zero; `before_step(i)` may prune or rewind; `save()` writes a checkpoint.

    `precision` autocasts forward and loss (fp16 with a GradScaler), `channels_last` sets the memory format of the
    model and its batches, `compile` trains a torch.compile'd module, and a distributed `world` (torchrun) trains a
    DistributedDataParallel one on this rank's share of every global batch. `model` itself stays the plain module:
    masks, the optimizer, evaluation and state_dict() use its parameters and names, which the wrappers share.
    """

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
    lr_scheduler: LRSchedulerConfig = field(default_factory=lambda: LRSchedulerConfig(name="constant"))
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
    precision: str = "fp32"  # train.precision: fp32 | bf16 | fp16
    channels_last: bool = False
    compile: bool = False
    world: World = field(default_factory=World)

    def __post_init__(self) -> None:
        amp.check(self.precision, self.device)
        self.model.to(self.device)
        if self.channels_last:
            # Before DDP and the optimizer see the parameters: DDP's gradient buckets follow their layout.
            self.model.to(memory_format=torch.channels_last)
        self._scaler = amp.grad_scaler(self.precision, self.device)
        self._pruned: list[tuple[nn.Parameter, torch.Tensor]] = []
        self.per_epoch = steps_per_epoch(self.train_set, self.batch_size)
        key = "finetune" if self.stage == "dense_long" else self.stage  # dense_long trains at finetune's size
        check_shards(self.world, len(self.train_set), self.batch_size, key)  # type: ignore[arg-type]
        self._trainer = self._training_module()
        self._rank_rng: list[Any] | None = None
        self._new_optimizer()
        self._reset_sums()

    def _training_module(self) -> nn.Module:
        """What the training step calls: the model, wrapped in DDP under torchrun, compiled when asked."""
        module: nn.Module = self.model
        if self.world.distributed:
            # Buffers (BatchNorm statistics) are broadcast after each step instead of before each forward
            # (_sync_buffers), so evaluation and pruning scores between steps see the same model on every rank.
            module = wrap_ddp(module, self.device)
            self._sync_buffers()  # rank 0's from the start, whichever torch
        if self.compile:
            module = torch.compile(module)  # compiling the DDP module lets dynamo split graphs at DDP's buckets
        return module

    @property
    def stage_step(self) -> int:
        return self.epoch * self.per_epoch + self.step_in_epoch

    def _new_optimizer(self) -> None:
        self.optimizer = build_optimizer(self.optimizer_cfg, self.model, self.lr)
        self.scheduler = build_lr_scheduler(self.lr_scheduler, self.optimizer,
                                            LRHorizon(self.epochs * self.per_epoch, self.per_epoch),
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
        if self.masks and self.world.distributed:
            self._agree_on_masks()
        params = dict(self.model.named_parameters())
        # Looked up once here, not in every step of the hot loop.
        self._pruned = [(params[k], ~m) for k, m in (self.masks or {}).items()]
        if self.masks:
            apply_masks(self.model, self.masks)

    def _agree_on_masks(self) -> None:
        """Every rank computed these masks itself, from identical weights and the same (unsharded) scoring data;
        each rank's checksum goes to run.log, and rank 0's masks are used on every rank."""
        assert self.masks is not None
        self.masks, sums = agree_on_masks(self.world, self.masks)
        self.io.detail(f"{self.stage}: mask checksums (crc32): {by_rank(sums)}")
        if len(set(sums)) > 1:
            self.io.log(f"{self.stage}: the ranks computed different masks ({by_rank(sums)}); rank 0's are "
                        "used on every rank")

    def _agree_on_weights(self) -> None:
        """The ranks' weights must be bitwise equal after an epoch; run.log says so (or that rank 0's now rule)."""
        sums = agree_on_weights(self.world, self.model)
        self.io.detail(f"{self.stage}: weight checksums (crc32) after epoch {self.epoch}: {by_rank(sums)}")
        if len(set(sums)) > 1:
            self.io.log(f"{self.stage}: the ranks' weights differ ({by_rank(sums)}); rank 0's are now used on "
                        "every rank")

    def run(self, epochs: int, before_step: Callable[[int], None] | None = None,
            after_epoch: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
        """Train until `epochs` epochs of this stage are done; `before_step(i)` runs before the stage's step i,
        `after_epoch(e)` after epoch e. A stop request ends it after the current step, with a checkpoint."""
        remaining = max(epochs - self.epoch, 0) * self.per_epoch - self.step_in_epoch
        # A signal inside the loop waits for the step to end and its checkpoint (_after_step); outside, it stops
        # at once (StopRequest), so a request that comes as the loop ends is the stage's to carry out.
        deferred = self.stop.deferred() if self.stop is not None else contextlib.nullcontext()
        with deferred, self.io.progress(self.stage, max(remaining, 0)) as advance:
            while self.epoch < epochs:
                order = Batches(self.train_set, self.batch_size, shuffle=True, seed=self.seed * 1000 + self.epoch,
                                device=self.device, start=self.step_in_epoch, shard=self.world.shard)
                self._trainer.train()
                self._started = time.perf_counter()
                for x, y in order:
                    if before_step is not None:
                        before_step(self.stage_step)
                        self._trainer.train()
                    self._step(x, y)
                    advance()
                    self._after_step()
                self._end_epoch()
                if after_epoch is not None:
                    after_epoch(self.epoch - 1)
                self._checkpoint()
                if self.world.distributed:
                    self._agree_on_weights()
        return self.rows

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with amp.autocast(self.precision, self.device):
            logits = self._trainer(x)
            loss = self.loss_fn(logits, y)
        size = min(self.batch_size, len(self.train_set) - self.step_in_epoch * self.batch_size)  # type: ignore
        share = loss_share(self.world, len(y), size)
        objective = loss if share == 1.0 else loss * share
        penalty = regularization(self.model, self.optimizer_cfg)  # outside autocast: of the fp32 weights
        objective = objective if penalty is None else objective + penalty
        amp.backward(objective, self.optimizer, self._scaler)
        # Pruned weights get no gradient, so clipping and the optimizer see only live weights.
        for param, pruned in self._pruned:
            if param.grad is not None:
                param.grad.masked_fill_(pruned, 0.0)
        if self.optimizer_cfg.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.optimizer_cfg.clip_grad_norm)
        amp.step(self.optimizer, self._scaler)
        # Momentum/Adam moments from before a weight was pruned would move it again; re-zero after each step.
        with torch.no_grad():
            for param, pruned in self._pruned:
                param.masked_fill_(pruned, 0.0)
        if self.world.distributed:
            self._sync_buffers()
        self.scheduler.step()
        loss = loss.detach()
        # Summed on the device and read once per epoch: a per-step .item() would sync a GPU every step.
        self._loss_sum += loss * y.numel()
        self._correct += (logits.argmax(-1) == y).sum()
        self._count += y.numel()
        self._finite &= torch.isfinite(loss)
        self.iteration += 1
        self.step_in_epoch += 1

    def _sync_buffers(self) -> None:
        """Rank 0's buffers on every rank: each rank's forward updated its BatchNorm statistics from its own share
        of the batch."""
        self.world.broadcast_tensors(list(self.model.buffers()))

    def _after_step(self) -> None:
        due = self.device.type != "cuda" or self.stage_step % _CUDA_CHECK_EVERY == 0
        if self.world.distributed:
            # A stop request (SIGTERM reaches the ranks at different steps) and a non-finite loss on any rank must
            # stop every rank at the same step, or the others would wait in DDP's all-reduce for ever.
            signum = self._check_finite(stop=True) if due else 0
        else:
            if due:
                self._check_finite()
            signum = (self.stop.signum or 0) if self.stop is not None and self.stop.requested else 0
        if signum:
            self._checkpoint()
            raise Interrupted(signum, self.where())
        if self.every_steps and self.stage_step % self.every_steps == 0 and self.step_in_epoch < self.per_epoch:
            self._checkpoint()

    def where(self) -> str:
        return f"{self.stage} epoch {self.epoch + 1}, step {self.step_in_epoch} of {self.per_epoch}"

    def lr_key(self) -> str:
        """The config key that set this loop's lr: the stage's own `lr` when it has one (dense_long trains at
        train's), else optimizer.lr."""
        if self.lr is None:
            return "optimizer.lr"
        return f"{'train' if self.stage == 'dense_long' else self.stage}.lr"

    def _check_finite(self, weights: bool = False, stop: bool = False) -> int:
        """Raise Diverged on a non-finite loss (or weight); returns the stop request's signal (0: none) when
        `stop`. Under torchrun every rank calls it at the same step and the ranks agree in one all-reduce."""
        bad_loss = not bool(self._finite)
        bad_weights = weights and not all(bool(torch.isfinite(p).all()) for p in self.model.parameters())
        signum = (self.stop.signum or 0) if stop and self.stop is not None else 0
        if self.world.distributed:
            flags = [int(bad_loss), int(bad_weights), int(signum)]
            bad_loss, bad_weights, signum = max_over_ranks(self.world, flags, self.device)
            if bad_loss:
                self._finite = torch.zeros((), device=self.device, dtype=torch.bool)
        problem = None
        if bad_loss:
            problem = "the training loss is not finite"
        elif bad_weights:
            problem = "a weight is not finite"
        if problem is not None:
            lr = self.optimizer.param_groups[0]["lr"]
            raise Diverged(f"{self.where()}: {problem}; training diverged (lower {self.lr_key()}, now {lr:g}, or "
                           "set optimizer.clip_grad_norm); the last good checkpoint is kept")
        return signum

    def _checkpoint(self) -> None:
        self._check_finite(weights=True)  # never save a diverged state over a good one
        if self.world.distributed:
            self._fold_for_checkpoint()
        if self.save is not None:
            self.save()

    def _fold_for_checkpoint(self) -> None:
        """Rank 0 saves the checkpoint, so it must hold what every rank holds: the epoch's partial sums move to
        rank 0 (the others go on from zero, so the epoch's all-reduce still counts each sample once), and every
        rank's RNG state is gathered (each rank restores its own on resume)."""
        sums = sum_over_ranks(self.world, [self._loss_sum, self._correct, self._count], self.device)
        if self.world.is_main:
            self._loss_sum = sums[0].to(self._loss_sum.dtype)
            self._correct, self._count = sums[1].long(), int(sums[2])
        else:
            self._reset_sums(keep_finite=True)
        self._rank_rng = self.world.gather(capture_rng())

    def _reset_sums(self, keep_finite: bool = False) -> None:
        self._loss_sum = torch.zeros((), device=self.device)
        self._correct = torch.zeros((), device=self.device, dtype=torch.long)
        self._count = 0
        if not keep_finite:
            self._finite = torch.ones((), device=self.device, dtype=torch.bool)

    def _epoch_sums(self) -> tuple[float, int, int]:
        """The epoch's training loss sum, correct count and sample count over every rank."""
        if not self.world.distributed:
            return float(self._loss_sum), int(self._correct), self._count
        sums = sum_over_ranks(self.world, [self._loss_sum, self._correct, self._count], self.device)
        return float(sums[0]), int(sums[1]), int(sums[2])

    def _end_epoch(self) -> None:
        self._check_finite(weights=True)
        seconds = time.perf_counter() - self._started
        loss_sum, correct, count = self._epoch_sums()
        train_loss, train_acc = loss_sum / max(count, 1), correct / max(count, 1)
        val_acc, val_loss = evaluate(self.model, self.val_set, self.loss_fn, self.device, world=self.world)
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
        # run.log only: wall time makes the log differ between runs, and the console shows the time already.
        self.io.detail(f"{self.stage}: epoch {self.epoch + 1} took {seconds:.3f} s")
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
            "scaler": None if self._scaler is None else self._scaler.state_dict(),  # fp16's loss scale and its growth
            **({"rank_rng": self._rank_rng} if self.world.distributed and self._rank_rng is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.set_masks(state["masks"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self._scaler is not None and state.get("scaler"):
            self._scaler.load_state_dict(state["scaler"])
        self.iteration, self.epoch, self.step_in_epoch = state["iteration"], state["epoch"], state["step_in_epoch"]
        sums = state["sums"]
        self._loss_sum, self._correct = sums["loss"].to(self.device), sums["correct"].to(self.device)
        self._count, self._finite = sums["count"], sums["finite"].to(self.device)
        if not self.world.is_main:
            self._reset_sums(keep_finite=True)  # the saved sums are every rank's, and rank 0 holds them
        self.target_sparsity, self.achieved_sparsity = state["target_sparsity"], state["achieved_sparsity"]
        self.rows = list(state["rows"])
        rank_rng = state.get("rank_rng")
        same_world = rank_rng is not None and len(rank_rng) == self.world.world_size
        restore_rng(rank_rng[self.world.rank] if same_world else state["rng"])

