"""`strategy.target`: the strategy.sparsity that meets a MAC or parameter budget, found before training (a latency
budget is searched by timing candidates: pruning/latency_budget.py)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from progprune_cli.config import RunConfig
from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError
from progprune_cli.measure.macs import layer_table, macs_summary
from progprune_cli.measure.params import count_params
from progprune_cli.pruning.masks import Masks
from progprune_cli.pruning.select import Selection, select
from progprune_cli.pruning.strategies import Strategy
from progprune_cli.pruning.strategies import channel_graph as cg
from progprune_cli.pruning.strategies.channels import ChannelStrategy, inputs_of

TOLERANCE = 0.02  # a ratio whose value is this close to the target (relative) meets it
# A latency search stops once the sparsity that misses and the one that meets are this close (or adjacent widths):
# the sparsity found prunes at most this much more than the least that meets the measured budget.
LATENCY_RESOLUTION = 0.01
GRID = 10_000  # weight strategies: sparsities searched in steps of 1/GRID (a step moves ≤ 0.01% of the weights)


@dataclass(frozen=True)
class Probe:
    """A latency candidate timed: the model compacted at `sparsity`, its milliseconds per sample (median, p10, p90
    of `repeats` timed passes), and whether the median meets the target."""

    sparsity: float
    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int
    meets: bool

    def line(self, index: int, where: str) -> str:
        """The run.log line of the `index`-th probe (1-based)."""
        return (f"{where}: probe {index}: strategy.sparsity {self.sparsity:g} runs {self.median_ms:.4g} ms per sample "
                f"(p10–p90 {self.p10_ms:.4g}–{self.p90_ms:.4g}, {self.repeats} passes): "
                + ("meets it" if self.meets else "too slow"))


@dataclass(frozen=True)
class BudgetFit:
    """The budget (`key` macs, params or latency_ms, its `target`), the sparsity found and what it gives, counted
    exactly (latency_ms: measured, with every probe and how they were timed, `setup`)."""

    key: str
    target: float
    sparsity: float
    achieved: float
    within: bool  # |achieved − target| ≤ 2% of the target; else the nearest point reachable (latency: ≤ target)
    setup: str | None = None
    probes: tuple[Probe, ...] = ()

    @property
    def where(self) -> str:
        return f"strategy.target.{self.key}={self.target:g}"

    def line(self) -> str:
        """The run.log line and results note: target, achieved, the ratio, and whether it is the nearest only."""
        if self.key == "latency_ms":
            return (f"{self.where}: strategy.sparsity {self.sparsity:g} runs {self.achieved:.4g} ms per sample "
                    f"(median of its probe; measured before training, {self.setup}; {len(self.probes)} probes, the "
                    f"sparsity resolved to {LATENCY_RESOLUTION:g}); it replaces strategy.sparsity")
        shown = {"macs": lambda v: f"{v:.3f}× fewer MACs", "params": lambda v: f"{v:.2%} of the parameters kept"}
        how = "within 2%" if self.within else "not within 2%: the nearest this model reaches"
        return (f"strategy.target.{self.key}={self.target:g}: strategy.sparsity {self.sparsity:g} gives "
                f"{shown[self.key](self.achieved)} ({how}; counted before training"
                f"{', theoretical' if self.key == 'macs' else ''}); it replaces strategy.sparsity")


def budget_key(cfg: RunConfig) -> str:
    """What a MAC or parameter budget's fit depends on (counts only: the data's shape, the model and its weights'
    loading, the strategy), so the fit preflight found is the one a job of the same key would find."""
    parts = [c for c in (cfg.dataset, cfg.model, cfg.strategy) if c is not None]
    return json.dumps([dataclasses.asdict(c) for c in parts] + [cfg.train.epochs], sort_keys=True, default=str)


def find_budget(strategy: Strategy, model: nn.Module, info: DataInfo) -> BudgetFit | None:
    """The sparsity whose final masks meet `strategy.target` on `model` (None: no target, or latency_ms, which is
    only checked here: the run times its candidates once, as it builds its parts). Counts depend only on how many
    entries each unit loses, which layer scope fixes from the sparsity alone, whatever the scores."""
    key = check_budget(strategy)
    if key is None or key == "latency_ms":
        return None
    wanted = float(getattr(strategy.cfg.target, key))
    where = f"strategy.target.{key}={wanted:g}"
    channels = isinstance(strategy, ChannelStrategy)
    masks = strategy.initial_masks(model, info)
    if channels:
        ratios, value = plateaus(strategy, masks), _channel_value(strategy, model, info, masks, key)
    else:
        ratios, value = [i / GRID for i in range(GRID)], _weight_value(strategy, model, masks)
    return _search(ratios, value, key, wanted, where)


_CHANNEL_STRATEGIES = ("a strategy that removes channels (structured, activation, or taylor/random with "
                       "strategy.granularity=channel)")
# What a weight strategy cannot meet, and why: masks leave the dense shapes.
_DENSE_ONLY = {"macs": "zeroes single weights, which dense kernels still multiply; use strategy.target.params, or "
                       + _CHANNEL_STRATEGIES,
               "latency_ms": "zeroes single weights, which leaves the dense model's shapes and so its latency as they "
                             "are; use " + _CHANNEL_STRATEGIES}


def check_budget(strategy: Strategy) -> str | None:
    """The budget's key (None: no target), refusing one the strategy cannot be searched for in one line."""
    target = strategy.cfg.target
    key = target.key
    if key is None:
        return None
    where = f"strategy.target.{key}={getattr(target, key):g}"
    channels = isinstance(strategy, ChannelStrategy)
    if key in _DENSE_ONLY and not channels:
        raise UserError(f"{where}: strategy={strategy.cfg.name} {_DENSE_ONLY[key]}")
    if channels and strategy.cfg.scope != "layer":
        raise UserError(f"{where}: needs strategy.scope=layer (got {strategy.cfg.scope}): a global ranking takes "
                        "each layer's channels by scores known only while pruning, so no ratio is exact before it")
    return key


def first_meeting(ratios: list[float], meets: Callable[[float], bool], resolution: float = 0.0) -> int:
    """The index of the first of `ratios` (ascending) that meets, by bisection, assuming `meets(ratios[-1])` (the
    caller's first probe) and that meeting is monotone; stops once the last miss and the first meet are adjacent or
    at most `resolution` apart, and returns the meet. `meets` is called once per ratio it tries, last first."""
    if meets(ratios[0]):
        return 0
    lo, hi = 0, len(ratios) - 1  # misses at lo, meets at hi
    while hi - lo > 1 and ratios[hi] - ratios[lo] > resolution:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if meets(ratios[mid]) else (mid, hi)
    return hi


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
    hi = first_meeting(ratios, lambda r: meets(at(r)))
    chosen = ratios[hi]
    if hi > 0 and error(at(ratios[hi - 1])) < error(at(chosen)):
        chosen = ratios[hi - 1]
    return BudgetFit(key, wanted, chosen, at(chosen), error(at(chosen)) <= TOLERANCE)


def plateaus(strategy: Strategy, masks: Masks) -> list[float]:
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


def compacted_at(strategy: Strategy, model: nn.Module, info: DataInfo, masks: Masks, sparsity: float) -> nn.Module:
    """A copy of `model` with the channels its final masks at `sparsity` remove taken out (torch-pruning's call)."""
    final = _final_masks(strategy, masks, sparsity)
    return cg.remove_channels(model, inputs_of(info), {u: (~m).nonzero().flatten().tolist() for u, m in final.items()})


def _final_masks(strategy: Strategy, masks: Masks, sparsity: float) -> Masks:
    """The masks the last schedule step leaves at `sparsity` (counts only: scores are the entries' positions)."""
    positions = {unit: torch.arange(m.numel(), dtype=torch.float).view_as(m) for unit, m in masks.items()}
    how = Selection(sparsity=sparsity, scope=strategy.cfg.scope, layers=dict(strategy.cfg.layers))
    return select(positions, masks, how)[0]


def _channel_value(strategy: ChannelStrategy, model: nn.Module, info: DataInfo, masks: Masks,
                   key: str) -> Callable[[float], float]:
    """MAC speedup or parameter fraction of `model` compacted at a sparsity (the same torch-pruning call)."""
    shape = info.example(1) if info.vocab else info.shape  # token ids: one example, which no shape says
    dense_macs = macs_summary(layer_table(model, shape))["dense"]
    dense_params = count_params(model)["physical"]

    def value(sparsity: float) -> float:
        small = compacted_at(strategy, model, info, masks, sparsity)
        if key == "macs":
            return dense_macs / macs_summary(layer_table(small, shape))["dense"]
        return count_params(small)["physical"] / dense_params

    return value


def _weight_value(strategy: Strategy, model: nn.Module, masks: Masks) -> Callable[[float], float]:
    """Fraction of the parameters kept at a sparsity: the masks' pruned entries out of every parameter."""
    total = count_params(model)["physical"]
    return lambda sparsity: 1 - sum(int((~m).sum()) for m in _final_masks(strategy, masks, sparsity).values()) / total
