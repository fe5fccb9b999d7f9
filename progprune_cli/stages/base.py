"""The stage interface the runner iterates over, what stages hand each other, and the one training-loop factory."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from progprune_cli.config import StageConfig
from progprune_cli.distributed import World
from progprune_cli.parts import Parts
from progprune_cli.pruning.masks import Masks
from progprune_cli.signals import StopRequest
from progprune_cli.stages.io import StageIO
from progprune_cli.stages.loop import Loop

# Each stage draws from its own seed, derived here only (the offsets keep results equal to earlier versions).
_SEED_OFFSETS = {"train": 0, "prune": 1, "finetune": 2, "dense_long": 3}


def stage_seed(seed: int, stage: str) -> int:
    return seed + _SEED_OFFSETS[stage]


@dataclass
class Dense:
    """The train stage's output: the dense model, and the cache folder it came from when it was reused."""

    model: nn.Module
    reused_from: str | None = None


@dataclass
class Pruned:
    """The prune stage's output: the pruned model, its unit and parameter masks, and the step log."""

    model: nn.Module
    unit_masks: Masks
    masks: Masks
    pruning: dict[str, Any]


@dataclass
class Produced:
    """What the stages made so far; each stage reads what an earlier one produced from here, not from disk."""

    original: Dense | None = None
    pruned: Pruned | None = None
    finetuned: nn.Module | None = None
    dense_long: nn.Module | None = None


@dataclass
class RunContext:
    """What every stage runs with: the parts, the run folder, the stop request, the dense cache and this rank's
    place among torchrun's ranks (World(): one process)."""

    parts: Parts
    io: StageIO
    stop: StopRequest = field(default_factory=StopRequest)
    cache_dir: Path | None = None
    world: World = field(default_factory=World)

    def first_iteration(self, stage: str) -> int:
        """The run-wide optimizer step a stage starts at (prune and dense_long both start after train)."""
        cfg = self.parts.cfg
        after_train = cfg.train.epochs * self.parts.steps_per_epoch(cfg.train.batch_size)
        if stage == "finetune":
            return after_train + cfg.prune.epochs * self.parts.steps_per_epoch(cfg.prune.batch_size)
        return 0 if stage == "train" else after_train

    def loop(self, stage: str, model: nn.Module, section: StageConfig, save: Any = None) -> Loop:
        """The training loop for `stage`, with `section`'s batch size, lr and schedule, saving through `save`;
        train.precision, train.channels_last and train.compile apply to every stage."""
        parts, train = self.parts, self.parts.cfg.train
        return Loop(model, parts.data.train, parts.data.val, parts.cfg.optimizer, parts.loss_fn, parts.device,
                    section.batch_size, self.io, stage, stage_seed(parts.cfg.seed, stage),
                    iteration=self.first_iteration(stage), lr=section.lr, lr_scheduler=section.lr_scheduler,
                    epochs=section.epochs, stop=self.stop, every_steps=parts.cfg.checkpoint.every_steps, save=save,
                    precision=train.precision, channels_last=train.channels_last, compile=train.compile,
                    world=self.world)

    def model_from(self, state: dict[str, Any]) -> nn.Module:
        model = self.parts.make_model()
        model.load_state_dict(state["model"])
        return model.to(self.parts.device)


class Stage(ABC):
    """One resumable step of a run: done when its final checkpoint loads; otherwise it runs (from its progress
    checkpoint when an interrupted attempt left one) and returns what later stages need."""

    name: ClassVar[str]
    output: ClassVar[str]  # checkpoints/<output>.pt marks the stage finished; also its field in Produced

    def progress_name(self) -> str:
        return f"{self.name}.progress"

    def resume_or_run(self, run: RunContext, produced: Produced) -> Any:
        final = run.io.try_load(self.output)
        # Under torchrun every rank reads rank 0's checkpoints; one that could not would train something else.
        run.world.same(final is not None, f"{self.name}: whether checkpoints/{self.output}.pt loads")
        if final is not None:
            run.io.log(f"{self.name}: finished in an earlier attempt (checkpoints/{self.output}.pt); skipped")
            run.io.restore_rows(self.name, self.output, final)
            return self.load(run, produced, final)
        progress = run.io.try_load(self.progress_name())
        run.world.same(progress is not None, f"{self.name}: whether checkpoints/{self.progress_name()}.pt loads")
        result = self.run(run, produced, progress)
        run.io.checkpoint(self.progress_name()).unlink(missing_ok=True)  # the final checkpoint supersedes it
        return result

    @abstractmethod
    def run(self, run: RunContext, produced: Produced, progress: dict[str, Any] | None) -> Any:
        """Run the stage (continuing from `progress`, a checkpoint of an interrupted attempt, when given)."""

    @abstractmethod
    def load(self, run: RunContext, produced: Produced, final: dict[str, Any]) -> Any:
        """The stage's result rebuilt from its final checkpoint."""


def resume_loop(run: RunContext, loop: Loop, progress: dict[str, Any] | None) -> None:
    """Put `loop` where an interrupted attempt's checkpoint left it, and say so in the log."""
    if progress is None:
        return
    loop.load_state_dict(progress["loop"])
    run.world.same((loop.epoch, loop.step_in_epoch), f"{loop.stage}: the (epoch, step) resumed at")
    run.io.log(f"{loop.stage}: resumed from checkpoints/{loop.stage}.progress.pt at epoch {loop.epoch + 1}, "
               f"step {loop.step_in_epoch} of {loop.per_epoch}")
