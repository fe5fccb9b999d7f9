"""`scope: lamp` (Lee et al. 2021): exact LAMP scores on known weights, and the masks it picks against global."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from conftest import component, composed
from progprune_cli.config import load_run_config
from progprune_cli.errors import UserError
from progprune_cli.pruning.select import Selection, lamp, select
from progprune_cli.pruning.strategies import PruneContext, build_strategy

INF = float("-inf")


def ctx() -> PruneContext:
    return PruneContext([], lambda out, y: out.sum(), torch.device("cpu"), seed=0)


def test_lamp_scores_are_w2_over_the_sum_of_w2_at_least_as_large() -> None:
    # Sorted 1 < 2 < 3 < 4: 1/(1+4+9+16), 4/(4+9+16), 9/(9+16), 16/16.
    scores = lamp(torch.arange(1, 5).float(), torch.ones(4, dtype=torch.bool))
    assert scores.dtype == torch.float64
    assert torch.equal(scores, torch.tensor([1 / 30, 4 / 29, 9 / 25, 1.0], dtype=torch.float64))


def test_lamp_scores_keep_the_shape_ignore_the_sign_and_leave_order_free() -> None:
    # The same magnitudes as above, shuffled, some negative, as a 2×2 weight.
    weight = torch.tensor([[-3.0, 1.0], [4.0, -2.0]])
    expected = torch.tensor([[9 / 25, 1 / 30], [1.0, 4 / 29]], dtype=torch.float64)
    assert torch.equal(lamp(weight, torch.ones(2, 2, dtype=torch.bool)), expected)


def test_ties_share_a_denominator_and_pruned_entries_count_nowhere() -> None:
    # 2 and 2 each count the other: 4/(4+4+9).
    ties = lamp(torch.tensor([1.0, 2.0, 2.0, 3.0]), torch.ones(4, dtype=torch.bool))
    assert torch.equal(ties, torch.tensor([1 / 18, 4 / 17, 4 / 17, 1.0], dtype=torch.float64))
    # The pruned 2 is out of every sum: 1/(1+9+16), 9/(9+16), 16/16.
    kept = torch.tensor([True, False, True, True])
    assert torch.equal(lamp(torch.arange(1, 5).float(), kept),
                       torch.tensor([1 / 26, INF, 9 / 25, 1.0], dtype=torch.float64))
    # A unit whose kept weights are all zero scores 0, not NaN.
    assert torch.equal(lamp(torch.zeros(3), torch.ones(3, dtype=torch.bool)), torch.zeros(3, dtype=torch.float64))


def test_lamp_equals_torch_prunings_channel_lamp_normalizer_on_squared_scores() -> None:
    # torch-pruning's LAMPImportance ranks channel groups; its normalizer is the same formula over any vector.
    import torch_pruning as tp

    w = torch.randn(50, generator=torch.Generator().manual_seed(0))
    reference = tp.importance.GroupMagnitudeImportance()._lamp(w.square())
    assert torch.allclose(lamp(w, torch.ones(50, dtype=torch.bool)).float(), reference, rtol=1e-6, atol=0)


class TwoLayers(nn.Module):
    """a: 4 weights 1..4; b: 8 weights 1..8 (bias-free, so the units are exactly these)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(2, 2, bias=False), nn.Linear(2, 4, bias=False)
        with torch.no_grad():
            self.a.weight.copy_(torch.arange(1, 5).float().view(2, 2))
            self.b.weight.copy_(torch.arange(1, 9).float().view(4, 2))


def pruned(scope: str, sparsity: float) -> tuple[dict[str, list[float]], int, list[str]]:
    """The weights each unit keeps after one weight-magnitude step, how many went, and the guard's notes."""
    model = TwoLayers()
    strategy = build_strategy(component("strategy", "weight", sparsity=sparsity, scope=scope))
    masks, report = strategy.step(model, strategy.initial_masks(model), sparsity, 1.0, ctx())
    params = dict(model.named_parameters())
    return {k: params[k][m].tolist() for k, m in masks.items()}, report.removed, report.notes


def test_lamp_masks_spare_the_small_layer_that_global_magnitude_strips() -> None:
    # 50%, 6 of 12: global magnitude removes the six smallest values 1, 1, 2, 2, 3, 3; layer a keeps only its 4.
    assert pruned("global", 0.5) == ({"a.weight": [4.0], "b.weight": [4.0, 5.0, 6.0, 7.0, 8.0]}, 6, [])
    # LAMP's six lowest: b1 1/204, b2 4/203, a1 1/30, b3 9/199, b4 16/190, a2 4/29; a's 3 (9/25) outranks b's 4.
    assert pruned("lamp", 0.5) == ({"a.weight": [3.0, 4.0], "b.weight": [5.0, 6.0, 7.0, 8.0]}, 6, [])
    # 75%, 9 of 12: global empties layer a (the zero-width guard puts its 4 back, so only 8 go) ...
    assert pruned("global", 0.75) == ({"a.weight": [4.0], "b.weight": [6.0, 7.0, 8.0]}, 8,
                                      ["a.weight: would be pruned to zero; kept its 1 highest-scoring entries"])
    # ... LAMP never needs the guard: each layer's largest weight scores 1, above everything else.
    assert pruned("lamp", 0.75) == ({"a.weight": [4.0], "b.weight": [7.0, 8.0]}, 9, [])


def test_lamp_ranks_globally_and_honours_per_layer_overrides() -> None:
    scores = {"a": torch.arange(1, 5).float(), "b": torch.arange(1, 9).float()}
    current = {k: torch.ones_like(v, dtype=torch.bool) for k, v in scores.items()}
    keep, _ = select(scores, current, Selection(sparsity=0.5, scope="lamp", layers={"a": 0.0}))
    # a is pinned dense; b alone is ranked: its 4 lowest (in b, LAMP keeps magnitude order) go.
    assert keep["a"].tolist() == [True] * 4 and keep["b"].tolist() == [False] * 4 + [True] * 4


@pytest.mark.parametrize("name, options, expected", [
    ("structured", {}, "strategy.scope: lamp ranks single weights; strategy=structured prunes whole channels here; "
                       "use scope layer or global"),
    ("random", {"granularity": "channel"}, "strategy.scope: lamp ranks single weights; strategy=random prunes "
                                           "whole channels here; use scope layer or global"),
])
def test_lamp_on_channels_is_refused(name: str, options: dict[str, Any], expected: str) -> None:
    with pytest.raises(UserError) as caught:
        build_strategy(component("strategy", name, scope="lamp", **options))
    assert str(caught.value) == expected


def test_lamp_with_a_threshold_is_refused() -> None:
    with pytest.raises(UserError) as caught:
        build_strategy(component("strategy", "weight", threshold=0.2, scope="lamp"))
    assert str(caught.value) == ("strategy.scope: lamp scores are relative to each layer, so threshold 0.2 means "
                                 "nothing for them; set strategy.threshold=null and a strategy.sparsity")


def test_lamp_is_an_allowed_scope_and_others_are_not() -> None:
    cfg = load_run_config(composed("+strategy=weight", "strategy.scope=lamp"))
    assert cfg.strategy is not None and cfg.strategy.scope == "lamp"
    with pytest.raises(UserError) as caught:
        load_run_config(composed("+strategy=weight", "strategy.scope=lam"))
    assert str(caught.value) == "strategy.scope: got 'lam'; allowed values are layer, global, lamp"
