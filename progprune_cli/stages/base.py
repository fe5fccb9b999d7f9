"""The stage interface the runner iterates over, what stages hand each other, and the one training-loop factory.
Each stage is a class registered under its name, whose row in results.schema.ROWS gives its model, seed and plot."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from progprune_cli.config import RunConfig, StageConfig
from progprune_cli.distributed import World
from progprune_cli.parts import Parts
from progprune_cli.pruning.masks import Masks
from progprune_cli.registry import Registry
from progprune_cli.results.schema import STAGE_ROWS, PruningLog
from progprune_cli.signals import StopRequest
from progprune_cli.stages.io import StageIO
from progprune_cli.stages.loop import Loop

def stage_seed(seed: int, stage: str) -> int:
    """Each stage draws from its own seed: the run's + its row's offset (they keep results equal to earlier
    versions)."""
    return seed + STAGE_ROWS[stage].seed_offset


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
    pruning: PruningLog


class Produced(dict[str, Any]):
    """What the stages made so far, by model name (results.schema.ROWS); each stage reads what an earlier one
    produced from here, not from disk."""

    @property
    def original(self) -> Dense | None:
        return self.get("original")

    @property
    def pruned(self) -> Pruned | None:
        return self.get("pruned")


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
        """The run-wide optimizer step a stage starts at: after the steps of the stages its model continues."""
        sections = [STAGES.get(name)().section(self.parts.cfg) for name in STAGES.get(stage).after]
        return sum(s.epochs * self.parts.steps_per_epoch(s.batch_size) for s in sections)

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

    name: ClassVar[str]  # its key in STAGES and its row's `stage` in results.schema.ROWS
    after: ClassVar[tuple[str, ...]] = ()  # the stages whose training its model continues (in run order)
    mask_only: ClassVar[bool] = False  # its model's zeros are only masked
    checkpointed: ClassVar[bool] = True  # False: it keeps no checkpoint, and runs again in every attempt

    @property
    def output(self) -> str:
        """Its model's name: checkpoints/<output>.pt marks the stage finished; its key in Produced."""
        return STAGE_ROWS[self.name].model

    @classmethod
    def applies(cls, cfg: RunConfig) -> bool:
        """Whether a run of `cfg` runs this stage."""
        return True

    @classmethod
    def refuse(cls, cfg: RunConfig) -> None:
        """Raise the one-line UserError for a config that asks for this stage where it cannot run (checked before
        any folder exists); nothing by default."""

    def section(self, cfg: RunConfig) -> StageConfig:
        """How long it trains, at which batch size, lr and schedule: its config section by default."""
        return getattr(cfg, self.name)

    def epochs(self, cfg: RunConfig) -> int:
        """The epochs its model has trained in all: the stages it continues, then its own."""
        return sum(STAGES.get(name)().section(cfg).epochs for name in self.after) + self.section(cfg).epochs

    def model_of(self, result: Any) -> nn.Module:
        """The trained model in what `run` returns (a plain module unless the stage returns more)."""
        return result

    def progress_name(self) -> str:
        return f"{self.name}.progress"

    def resume_or_run(self, run: RunContext, produced: Produced) -> Any:
        if not self.checkpointed:
            return self.run(run, produced, None)
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

    def load(self, run: RunContext, produced: Produced, final: dict[str, Any]) -> Any:
        """The stage's result rebuilt from its final checkpoint (a checkpointed stage's own)."""
        raise NotImplementedError(f"stage {self.name} keeps no checkpoint")


# The stages by name: the training ones the runner runs in results.schema.ROWS's order where `applies` holds, then
# evaluate.
STAGES: Registry[type[Stage]] = Registry("stage")


def resume_loop(run: RunContext, loop: Loop, progress: dict[str, Any] | None) -> None:
    """Put `loop` where an interrupted attempt's checkpoint left it, and say so in the log."""
    if progress is None:
        return
    loop.load_state_dict(progress["loop"])
    run.world.same((loop.epoch, loop.step_in_epoch), f"{loop.stage}: the (epoch, step) resumed at")
    run.io.log(f"{loop.stage}: resumed from checkpoints/{loop.stage}.progress.pt at epoch {loop.epoch + 1}, "
               f"step {loop.step_in_epoch} of {loop.per_epoch}")
