"""What a pruning strategy is: units it can prune, a score per entry, and one pruning step shared by all."""

from __future__ import annotations

import fnmatch
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from collections.abc import Iterable
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from progprune_cli.data import DataInfo
from progprune_cli.config import StrategyConfig
from progprune_cli.errors import UserError
from progprune_cli.measure.matrices import direct_biases, direct_matrices
from progprune_cli.pruning.layout import layouts
from progprune_cli.pruning.masks import Masks
from progprune_cli.pruning.pattern import select_pattern
from progprune_cli.pruning.select import Selection, select
from progprune_cli.registry import Registry


@dataclass
class PruneContext:
    """What a score may need besides the model: calibration batches, the loss, the device, a seed."""

    loader: Iterable[tuple[torch.Tensor, torch.Tensor]]  # re-iterable calibration batches (data.Batches)
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    device: torch.device
    seed: int
    step: int = 0


@dataclass
class StepReport:
    """One pruning step: per-unit target and achieved sparsity, entries removed, guard notes."""

    target: float
    achieved: float
    removed: int
    layers: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Strategy(ABC):
    """Scores entries of prunable units; `step` turns scores into masks the same way for every strategy."""

    granularity: ClassVar[str] = "weight"
    # True where `step` also writes the kept weights of the model it is given (sparsegpt): the prune stage's model
    # then trains, is checkpointed and evaluated from those weights.
    updates_weights: ClassVar[bool] = False

    def __init__(self, cfg: StrategyConfig) -> None:
        self.cfg: Any = cfg  # its registered schema's object: the common keys and the strategy's own
        self._check_scope()
        self.pattern = self._check_pattern()

    def units(self, model: nn.Module) -> list[str]:
        """Parameter names this strategy may prune: weights with dim > 1, the matrices nn.LSTM/GRU/RNN and
        nn.MultiheadAttention read themselves (`lstm.weight_ih_l0`, `attn.in_proj_weight`), and the biases of
        both if asked; minus `exclude`."""
        modules = dict(model.named_modules())
        names = []
        for name, param in model.named_parameters():
            owner, _, kind = name.rpartition(".")
            module = modules[owner]
            wanted = (kind == "weight" and param.dim() > 1) or (
                kind == "bias" and self.cfg.include_bias and module.weight.dim() > 1) or (
                kind in direct_matrices(module)) or (self.cfg.include_bias and kind in direct_biases(module))
            if wanted and not self._excluded(name):
                names.append(name)
        return names

    def initial_masks(self, model: nn.Module, info: DataInfo | None = None) -> Masks:
        """All-kept masks over the units, shaped like the scores (`info`: the data's shape, for those that trace)."""
        params = dict(model.named_parameters())
        # On the CPU like the scores: select() combines the two, and the loop moves enforced masks to the device.
        return {u: torch.ones_like(params[u], dtype=torch.bool, device="cpu") for u in self.units(model)}

    def to_param_masks(self, model: nn.Module, unit_masks: Masks) -> Masks:
        """Masks over parameters to enforce; unit masks already are that for unstructured strategies."""
        return unit_masks

    def compact(self, model: nn.Module, unit_masks: Masks, info: Any) -> nn.Module | None:
        """A physically smaller copy of the pruned model where the granularity allows one (None: mask-only)."""
        return None

    def dense_notes(self, model: nn.Module) -> list[str]:
        """One line per unit the strategy leaves at full width and why (none: every unit can be pruned)."""
        return []

    @abstractmethod
    def scores(self, model: nn.Module, masks: Masks, ctx: PruneContext) -> dict[str, torch.Tensor]:
        """Importance of every entry of every unit (higher = keep)."""

    def check(self, model: nn.Module, info: DataInfo | None = None) -> None:
        """Fail before training when the model offers nothing to prune or `layers` names an unknown layer."""
        units = self.units(model)
        if not units:
            raise UserError(f"strategy={self.cfg.name}: model has no prunable layers after strategy.exclude")
        known = {u.rsplit(".", 1)[0] for u in units} | set(units)
        for layer in self.cfg.layers:
            if layer not in known:
                raise UserError(
                    f"strategy.layers.{layer}: no such prunable layer; choose from {', '.join(sorted(known))}")

    def step(self, model: nn.Module, masks: Masks, target: float, progress: float,
             ctx: PruneContext) -> tuple[Masks, StepReport]:
        """Prune to `target` (a sparsity, or a threshold in threshold mode); `progress` scales per-layer targets."""
        if self.pattern is not None:
            return self._pattern_step(model, masks, target, progress, ctx)
        before = sum(int(m.sum()) for m in masks.values())
        threshold_mode = self.cfg.mode == "threshold"
        how = Selection(
            sparsity=None if threshold_mode else target,
            threshold=target if threshold_mode else None,
            scope=self.cfg.scope,
            layers={k: v * progress for k, v in self.cfg.layers.items()},
        )
        new, notes = select(self.scores(model, masks, ctx), masks, how)
        after = sum(int(m.sum()) for m in new.values())
        total = sum(m.numel() for m in new.values())
        layers = {
            k: {"target": _unit_target(k, how, target), "achieved": 1.0 - int(m.sum()) / m.numel(),
                "nonzero": int(m.sum())}
            for k, m in new.items()
        }
        report = StepReport(target=target, achieved=1.0 - after / total, removed=before - after,
                            layers=layers, notes=notes)
        return new, report

    def _pattern_step(self, model: nn.Module, masks: Masks, target: float, progress: float,
                      ctx: PruneContext) -> tuple[Masks, StepReport]:
        """strategy.pattern: a `progress` share of the units converted to N:M, largest first (pruning/pattern.py);
        groups run along each output's inputs, however the layer stores its weight (pruning/layout.py)."""
        assert self.pattern is not None
        n, m = self.pattern
        scores = self.scores(model, masks, ctx)
        lay = layouts(model, list(masks))
        rows, kept = ({u: lay[u].rows(t) for u, t in ts.items()} for ts in (scores, masks))
        new, targets, notes = select_pattern(rows, kept, n, m, progress)
        new = {u: lay[u].back(k, masks[u].shape) for u, k in new.items()}
        before, after = (sum(int(k.sum()) for k in ms.values()) for ms in (masks, new))
        total = sum(k.numel() for k in new.values())
        layers = {unit: {"target": targets[unit], "achieved": 1.0 - int(k.sum()) / k.numel(), "nonzero": int(k.sum())}
                  for unit, k in new.items()}
        return new, StepReport(target=target, achieved=1.0 - after / total, removed=before - after, layers=layers,
                               notes=notes)

    def _check_pattern(self) -> tuple[int, int] | None:
        """An N:M pattern groups single weights: channel strategies have none to group."""
        pattern = self.cfg.pattern_nm
        if pattern is not None and self.granularity != "weight":
            raise UserError(f"strategy.pattern: {pattern[0]}:{pattern[1]} groups single weights; strategy="
                            f"{self.cfg.name} prunes whole {self.granularity}s here; set strategy.pattern=null")
        return pattern

    def _check_scope(self) -> None:
        """LAMP normalizes squared magnitudes of single weights against a sparsity target: nothing else fits."""
        if self.cfg.scope != "lamp":
            return
        if self.granularity != "weight":
            raise UserError(f"strategy.scope: lamp ranks single weights; strategy={self.cfg.name} prunes whole "
                            f"{self.granularity}s here; use scope layer or global")
        if self.cfg.threshold is not None:
            raise UserError(f"strategy.scope: lamp scores are relative to each layer, so threshold "
                            f"{self.cfg.threshold} means nothing for them; set strategy.threshold=null and a "
                            "strategy.sparsity")

    def _excluded(self, name: str) -> bool:
        module = name.rsplit(".", 1)[0]
        return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(module, p) for p in self.cfg.exclude)


def _unit_target(unit: str, how: Selection, target: float) -> float | None:
    """The sparsity a unit was asked for (None in threshold mode, where only the threshold is known)."""
    module = unit.rsplit(".", 1)[0]
    for name in (unit, module):
        if name in how.layers:
            return how.layers[name]
    return None if how.threshold is not None else target


# A strategy class, or a function choosing one from the config (e.g. by its `granularity` key).
STRATEGIES: Registry[Callable[[Any], Strategy]] = Registry("strategy", StrategyConfig)


def build_strategy(cfg: StrategyConfig) -> Strategy:
    """Instantiate the strategy named in the config (what its keys allow together is checked here)."""
    return STRATEGIES.get(cfg.name)(cfg)
