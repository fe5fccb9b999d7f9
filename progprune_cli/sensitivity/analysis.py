"""Prune one unit at a time to each level with the strategy's own scores, and measure it without retraining."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from progprune_cli.data import DataInfo
from progprune_cli.distributed import World
from progprune_cli.measure.macs import layer_table
from progprune_cli.optim.losses import LossFn
from progprune_cli.pruning.masks import Masks, apply_masks
from progprune_cli.pruning.select import Selection, select
from progprune_cli.pruning.strategies import PruneContext, Strategy
from progprune_cli.stages.accuracy import evaluate


@dataclass(frozen=True)
class Point:
    """One unit pruned alone to one level: a row of sensitivity.csv."""

    unit: str
    level: float
    val_accuracy: float
    val_loss: float
    params_removed: int  # parameter entries zeroed (for channels: the rows, the next layers' inputs, batch norm)
    macs_removed: int  # theoretical zero-skipping MACs saved, as results.json counts them


@dataclass(frozen=True)
class Analysis:
    """The dense reference, each unit's size in its own entries (weights, or channels) and every point."""

    dense_accuracy: float
    dense_loss: float
    sizes: dict[str, int]
    points: tuple[Point, ...]
    notes: tuple[str, ...] = ()

    def curve(self, unit: str) -> list[Point]:
        return [p for p in self.points if p.unit == unit]


@dataclass(frozen=True)
class Evaluation:
    """How a model is measured: on which split, with which loss, on which device, in which batch size, by which
    ranks (World(): one process, as `progprune sensitivity` always runs)."""

    dataset: Dataset
    loss_fn: LossFn
    device: torch.device
    batch_size: int = 256
    world: World = World()

    def __call__(self, model: nn.Module) -> tuple[float, float]:
        return evaluate(model, self.dataset, self.loss_fn, self.device, self.batch_size, world=self.world)


def analyse(model: nn.Module, strategy: Strategy, levels: tuple[float, ...], measure: Evaluation,
            ctx: PruneContext, info: DataInfo, log: Callable[[str], None] = lambda _: None) -> Analysis:
    """Every unit of `strategy` pruned alone to every level (its lowest-scoring entries, as `select` picks them
    in layer scope), measured, and put back; `model` is left exactly as it came."""
    masks = strategy.initial_masks(model, info)
    # Scored once, on the dense model: every unit is judged against the same network.
    scores = strategy.scores(model, masks, ctx)
    example = info.example(1)  # token ids for a language model
    dense_macs = _effective_macs(model, example)
    dense_accuracy, dense_loss = measure(model)
    points: list[Point] = []
    # Units left dense are not in `masks`; their notes say why they are missing from the table.
    notes: list[str] = strategy.dense_notes(model)
    for unit in masks:
        for level in levels:
            keep, guarded = select({unit: scores[unit]}, {unit: masks[unit]}, Selection(sparsity=level))
            notes += [f"level {level:g}: {note}" for note in guarded]
            with masked(model, strategy.to_param_masks(model, {**masks, unit: keep[unit]})) as removed:
                accuracy, loss = measure(model)
                macs = dense_macs - _effective_macs(model, example)
            points.append(Point(unit, level, accuracy, loss, removed, macs))
        log(f"sensitivity: {unit} ({masks[unit].numel()} {strategy.granularity}s): val accuracy "
            + ", ".join(f"{p.val_accuracy:.2%} at {p.level:g}" for p in points[-len(levels):])
            + f" (dense {dense_accuracy:.2%})")
    return Analysis(dense_accuracy, dense_loss, {u: m.numel() for u, m in masks.items()}, tuple(points),
                    tuple(notes))


def ranking(analysis: Analysis) -> list[str]:
    """Units, most sensitive first: the lowest mean val accuracy over the levels (ties: the model's order)."""
    units = list(analysis.sizes)
    mean = {u: sum(p.val_accuracy for p in analysis.curve(u)) / max(len(analysis.curve(u)), 1) for u in units}
    return sorted(units, key=lambda u: (mean[u], units.index(u)))


@contextmanager
def masked(model: nn.Module, masks: Masks) -> Iterator[int]:
    """`model` with `masks` applied in place, restored on exit; yields how many parameter entries were zeroed."""
    params = dict(model.named_parameters())
    touched = {name: mask for name, mask in masks.items() if not bool(mask.all())}
    saved = {name: params[name].detach().clone() for name in touched}
    apply_masks(model, touched)
    try:
        yield sum(int((~mask).sum()) for mask in touched.values())
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                params[name].copy_(value)


def _effective_macs(model: nn.Module, example: torch.Tensor) -> int:
    return sum(row["macs_effective"] for row in layer_table(model, example))
