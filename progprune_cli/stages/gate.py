"""`schedule.max_drop`: hold a pruning step while validation accuracy is too far below the dense model's (§7.1)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from progprune_cli.distributed import World
from progprune_cli.parts import Parts
from progprune_cli.stages.accuracy import evaluate


@dataclass
class AccuracyGate:
    """Admits a step when val accuracy is at most `max_drop` below `reference` (always, when max_drop is null);
    under torchrun (`world`) every rank judges on the same figures, evaluated in shares."""

    parts: Parts
    model: nn.Module
    max_drop: float | None
    world: World
    reference: float | None = None

    def __post_init__(self) -> None:
        if self.max_drop is not None and self.reference is None:
            self.reference = self.accuracy()  # the dense model's, before any pruning step

    def accuracy(self) -> float:
        return evaluate(self.model, self.parts.data.val, self.parts.loss_fn, self.parts.device, world=self.world)[0]

    def admits(self) -> tuple[bool, float | None]:
        """(whether to prune now, the val accuracy it was judged on)."""
        if self.max_drop is None or self.reference is None:
            return True, None
        current = self.accuracy()
        self.model.train()
        return self.reference - current <= self.max_drop + 1e-12, current
