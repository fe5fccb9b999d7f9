"""`strategy.target.latency_ms`: the strategy.sparsity whose compacted model runs within a measured per-sample
latency, found before training by timing compacted candidates with the Speed table's method."""

from __future__ import annotations

from typing import Callable

from torch import nn

from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError
from progprune_cli.pruning.budget import LATENCY_RESOLUTION, BudgetFit, Probe, check_budget, compacted_at
from progprune_cli.pruning.budget import first_meeting, plateaus
from progprune_cli.pruning.strategies import Strategy

# A candidate model → its milliseconds per sample: {"median", "p10", "p90"} and the timed passes made ("repeats").
Timer = Callable[[nn.Module], dict[str, float]]


def search_latency(strategy: Strategy, model: nn.Module, info: DataInfo, timer: Timer, setup: str) -> BudgetFit:
    """The least sparsity (to LATENCY_RESOLUTION) whose compacted copy of `model` has a median per-sample latency
    of at most the target, as `timer` measures it (`setup` says how, for the lines). Bisection over the same ratios
    as the MAC budget (one per distinct set of widths): each ratio is timed once and judged by its median, so a noisy
    timing moves the result by a plateau but never sends the search back over ratios already decided. The largest
    ratio is timed first: when even it misses, one line naming the best latency reached."""
    check_budget(strategy)
    wanted = float(strategy.cfg.target.latency_ms)  # type: ignore[arg-type]
    where = f"strategy.target.latency_ms={wanted:g}"
    masks = strategy.initial_masks(model, info)
    ratios = plateaus(strategy, masks)
    probes: dict[float, Probe] = {}  # in the order timed

    def meets(sparsity: float) -> bool:
        if sparsity not in probes:
            timed = timer(compacted_at(strategy, model, info, masks, sparsity))
            probes[sparsity] = Probe(sparsity, timed["median"], timed["p10"], timed["p90"], int(timed["repeats"]),
                                     timed["median"] <= wanted)
        return probes[sparsity].meets

    if not meets(ratios[-1]):
        best = min(probes.values(), key=lambda probe: probe.median_ms)
        raise UserError(f"{where}: the fastest this model runs is {best.median_ms:.4g} ms per sample, at "
                        f"strategy.sparsity {best.sparsity:g} (the most it can prune), timed {setup}")
    chosen = ratios[first_meeting(ratios, meets, LATENCY_RESOLUTION)]
    return BudgetFit("latency_ms", wanted, chosen, probes[chosen].median_ms, True, setup, tuple(probes.values()))
