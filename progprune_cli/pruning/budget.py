"""`strategy.target`: the strategy.sparsity that meets a MAC or parameter budget, found before training."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError
from progprune_cli.measure.macs import layer_table, macs_summary
from progprune_cli.measure.params import count_params
from progprune_cli.pruning.masks import Masks
from progprune_cli.pruning.select import Selection, select
from progprune_cli.pruning.strategies import Strategy
from progprune_cli.pruning.strategies import channel_graph as cg
from progprune_cli.pruning.strategies.channels import ChannelStrategy

TOLERANCE = 0.02  # a ratio whose value is this close to the target (relative) meets it
GRID = 10_000  # weight strategies: sparsities searched in steps of 1/GRID (a step moves ≤ 0.01% of the weights)


@dataclass(frozen=True)
class BudgetFit:
    """The budget (`key` macs or params, its `target`), the sparsity found and what it gives, counted exactly."""

    key: str
    target: float
    sparsity: float
    achieved: float
    within: bool  # |achieved − target| ≤ 2% of the target; else the nearest point reachable

    def line(self) -> str:
        """The run.log line and results note: target, achieved, the ratio, and whether it is the nearest only."""
        shown = {"macs": lambda v: f"{v:.3f}× fewer MACs", "params": lambda v: f"{v:.2%} of the parameters kept"}
        how = "within 2%" if self.within else "not within 2%: the nearest this model reaches"
        return (f"strategy.target.{self.key}={self.target:g}: strategy.sparsity {self.sparsity:g} gives "
                f"{shown[self.key](self.achieved)} ({how}; counted before training"
                f"{', theoretical' if self.key == 'macs' else ''}); it replaces strategy.sparsity")


def find_budget(strategy: Strategy, model: nn.Module, info: DataInfo) -> BudgetFit | None:
    """The sparsity whose final masks meet `strategy.target` on `model` (None: no target). Counts depend only on how
    many entries each unit loses, which layer scope fixes from the sparsity alone, whatever the scores."""
    target = strategy.cfg.target
    key = target.key
    if key is None:
        return None
    wanted = float(getattr(target, key))
    where = f"strategy.target.{key}={wanted:g}"
    channels = isinstance(strategy, ChannelStrategy)
    if key == "macs" and not channels:
        raise UserError(f"{where}: strategy={strategy.cfg.name} zeroes single weights, which dense kernels still "
                        "multiply; use strategy.target.params, or a strategy that removes channels (structured, "
                        "activation, or taylor/random with strategy.granularity=channel)")
    if channels and strategy.cfg.scope != "layer":
        raise UserError(f"{where}: needs strategy.scope=layer (got {strategy.cfg.scope}): a global ranking takes "
                        "each layer's channels by scores known only while pruning, so no ratio is exact before it")
    masks = strategy.initial_masks(model, info)
    if channels:
        ratios, value = _plateaus(strategy, masks), _channel_value(strategy, model, info, masks, key)
    else:
        ratios, value = [i / GRID for i in range(GRID)], _weight_value(strategy, model, masks)
    return _search(ratios, value, key, wanted, where)


def _search(ratios: list[float], value: Callable[[float], float], key: str, wanted: float, where: str) -> BudgetFit:
    """Bisection over `ratios` (ascending; `value` monotone in them) for the first that meets the budget, then the
    nearer of it and the one before."""
    seen: dict[float, float] = {}

    def at(r: float) -> float:
        if r not in seen:
            seen[r] = value(r)
        return seen[r]

    def meets(v: float) -> bool:
        return v >= wanted if key == "macs" else v <= wanted

    def error(v: float) -> float:
        return abs(v - wanted) / wanted

    last = ratios[-1]
    if not meets(at(last)):
        if error(at(last)) > TOLERANCE:
            raise UserError(f"{where}: " + (f"the most this model reaches is {at(last):.3g}× " if key == "macs" else
                                            f"the fewest this model keeps is {at(last):.2%} of its parameters ")
                            + f"(at sparsity {last:g})")
        return BudgetFit(key, wanted, last, at(last), True)
    lo, hi = 0, len(ratios) - 1  # meets at hi; the first that meets is in (lo, hi] unless it is ratios[0]
    if meets(at(ratios[0])):
        hi = 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if meets(at(ratios[mid])) else (mid, hi)
    chosen = ratios[hi]
    if hi > 0 and error(at(ratios[hi - 1])) < error(at(chosen)):
        chosen = ratios[hi - 1]
    return BudgetFit(key, wanted, chosen, at(chosen), error(at(chosen)) <= TOLERANCE)


def _plateaus(strategy: Strategy, masks: Masks) -> list[float]:
    """One sparsity per distinct set of per-unit channel counts (layer scope removes floor(r·w + ½) of w), the
    shortest decimal of each range, ascending; units with their own strategy.layers value do not move."""
    moving = [m.numel() for unit, m in masks.items() if not _overridden(unit, strategy.cfg.layers)]
    edges = sorted({(k - 0.5) / w for w in moving for k in range(1, w + 1)} | {0.0, 1.0})
    return [0.0] + [_shortest(a, b) for a, b in zip(edges[1:], edges[2:])]


def _shortest(lo: float, hi: float) -> float:
    """The decimal with fewest digits in (lo, hi) (both sides open: a float at an edge may round either way)."""
    for digits in range(1, 12):
        scale = 10 ** digits
        x = (math.floor(lo * scale) + 1) / scale
        if lo < x < hi:
            return x
    return (lo + hi) / 2


def _overridden(unit: str, layers: dict[str, float]) -> bool:
    return unit in layers or unit.rsplit(".", 1)[0] in layers


def _final_masks(strategy: Strategy, masks: Masks, sparsity: float) -> Masks:
    """The masks the last schedule step leaves at `sparsity` (counts only: scores are the entries' positions)."""
    positions = {unit: torch.arange(m.numel(), dtype=torch.float).view_as(m) for unit, m in masks.items()}
    how = Selection(sparsity=sparsity, scope=strategy.cfg.scope, layers=dict(strategy.cfg.layers))
    return select(positions, masks, how)[0]


def _channel_value(strategy: ChannelStrategy, model: nn.Module, info: DataInfo, masks: Masks,
                   key: str) -> Callable[[float], float]:
    """MAC speedup or parameter fraction of `model` compacted at a sparsity (the same torch-pruning call)."""
    shape = (info.channels, info.height, info.width)
    dense_macs = macs_summary(layer_table(model, shape))["dense"]
    dense_params = count_params(model)["physical"]

    def value(sparsity: float) -> float:
        final = _final_masks(strategy, masks, sparsity)
        small = cg.remove_channels(model, shape, {u: (~m).nonzero().flatten().tolist() for u, m in final.items()})
        if key == "macs":
            return dense_macs / macs_summary(layer_table(small, shape))["dense"]
        return count_params(small)["physical"] / dense_params

    return value


def _weight_value(strategy: Strategy, model: nn.Module, masks: Masks) -> Callable[[float], float]:
    """Fraction of the parameters kept at a sparsity: the masks' pruned entries out of every parameter."""
    total = count_params(model)["physical"]
    return lambda sparsity: 1 - sum(int((~m).sum()) for m in _final_masks(strategy, masks, sparsity).values()) / total
