"""progprune_cli.pruning.select: exact keep-masks from known score tensors (threshold, sparsity, scope, guard)."""

from __future__ import annotations

import pytest
import torch

from progprune_cli.pruning.select import Selection, select

GUARD_NOTE = "{}: would be pruned to zero; kept its 1 highest-scoring entries"


def full(*shape: int) -> torch.Tensor:
    return torch.ones(*shape, dtype=torch.bool)


def kept(mask: torch.Tensor) -> list[int]:
    """Flat positions a keep-mask keeps."""
    return mask.flatten().nonzero().flatten().tolist()


def bools(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.bool)


# --- threshold ---------------------------------------------------------------------------------------------------

def test_threshold_removes_scores_strictly_below_it() -> None:
    scores = {"a": torch.arange(8.0).view(2, 4)}
    keep, notes = select(scores, {"a": full(2, 4)}, Selection(threshold=3.0))
    assert keep["a"].shape == (2, 4)
    assert keep["a"].dtype == torch.bool
    assert kept(keep["a"]) == [3, 4, 5, 6, 7]  # 3.0 == threshold stays
    assert notes == []


def test_threshold_applies_to_every_tensor_with_the_same_value() -> None:
    scores = {"a": torch.arange(4.0), "b": torch.arange(4.0) + 1.5}  # b = 1.5, 2.5, 3.5, 4.5
    keep, _ = select(scores, {"a": full(4), "b": full(4)}, Selection(threshold=2.0))
    assert kept(keep["a"]) == [2, 3]
    assert kept(keep["b"]) == [1, 2, 3]


def test_threshold_zero_keeps_everything() -> None:
    keep, notes = select({"a": torch.arange(5.0)}, {"a": full(5)}, Selection(threshold=0.0))
    assert kept(keep["a"]) == [0, 1, 2, 3, 4]
    assert notes == []


def test_threshold_wins_over_sparsity() -> None:
    keep, _ = select({"a": torch.arange(8.0)}, {"a": full(8)}, Selection(sparsity=0.75, threshold=1.0))
    assert kept(keep["a"]) == [1, 2, 3, 4, 5, 6, 7]


# --- sparsity ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("sparsity", "expected_kept"), [
    (0.0, list(range(10))),
    (0.3, [3, 4, 5, 6, 7, 8, 9]),      # 0.3 * 10 = 3.0000000000000004 -> 3
    (0.5, [5, 6, 7, 8, 9]),
    (0.26, [3, 4, 5, 6, 7, 8, 9]),     # round(2.6) = 3
    (0.24, [2, 3, 4, 5, 6, 7, 8, 9]),  # round(2.4) = 2
    (0.9, [9]),
])
def test_sparsity_removes_the_lowest_scores_first(sparsity: float, expected_kept: list[int]) -> None:
    scores = {"a": torch.arange(10.0)}
    keep, notes = select(scores, {"a": full(10)}, Selection(sparsity=sparsity))
    assert kept(keep["a"]) == expected_kept
    assert notes == []


def test_sparsity_ranks_by_score_not_by_position() -> None:
    scores = {"a": torch.tensor([5.0, 0.5, 3.0, -1.0, 2.0, 4.0])}
    keep, _ = select(scores, {"a": full(6)}, Selection(sparsity=0.5))
    assert kept(keep["a"]) == [0, 2, 5]  # -1.0, 0.5 and 2.0 go


@pytest.mark.parametrize(("n", "removed"), [(5, 3), (7, 4), (3, 2), (1, 0)])
def test_sparsity_count_rounds_half_up(n: int, removed: int) -> None:
    # Halves round up: 2.5 -> 3, 3.5 -> 4, 1.5 -> 2; 0.5 of 1 entry would be 1, but the zero-width guard keeps it.
    keep, _ = select({"a": torch.arange(float(n))}, {"a": full(n)}, Selection(sparsity=0.5))
    assert int((~keep["a"]).sum()) == removed
    assert kept(keep["a"]) == list(range(removed, n))


def test_equal_scores_are_pruned_in_position_order() -> None:
    keep, _ = select({"a": torch.zeros(2, 3)}, {"a": full(2, 3)}, Selection(sparsity=0.5))
    assert keep["a"].tolist() == [[False, False, False], [True, True, True]]


def test_ties_at_the_cut_are_broken_by_position() -> None:
    scores = {"a": torch.tensor([2.0, 1.0, 2.0, 0.0, 2.0, 1.0])}  # prune 3: 0.0, then the 1.0s (1, 5)
    keep, _ = select(scores, {"a": full(6)}, Selection(sparsity=0.5))
    assert kept(keep["a"]) == [0, 2, 4]
    scores = {"a": torch.tensor([2.0, 1.0, 2.0, 0.0, 2.0, 1.0])}  # prune 4: the first 2.0 goes too
    keep, _ = select(scores, {"a": full(6)}, Selection(sparsity=4 / 6))
    assert kept(keep["a"]) == [2, 4]


def test_layer_scope_gives_each_tensor_the_target() -> None:
    scores = {"a": torch.arange(4.0), "b": torch.arange(8.0).view(2, 4) + 100}
    keep, _ = select(scores, {"a": full(4), "b": full(2, 4)}, Selection(sparsity=0.5))
    assert kept(keep["a"]) == [2, 3]
    assert kept(keep["b"]) == [4, 5, 6, 7]
    assert keep["b"].shape == (2, 4)


# --- global scope ------------------------------------------------------------------------------------------------

def two_tensors() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """a = 0, 1, 2, 3 and b = 1.5, 10, 11, 12: half of all 8 is 0, 1, 1.5, 2; half of each differs."""
    return {"a": torch.arange(4.0), "b": torch.tensor([1.5, 10.0, 11.0, 12.0])}, {"a": full(4), "b": full(4)}


def test_layer_and_global_scope_differ_on_the_same_scores() -> None:
    scores, current = two_tensors()
    layer, _ = select(scores, current, Selection(sparsity=0.5, scope="layer"))
    glob, notes = select(scores, current, Selection(sparsity=0.5, scope="global"))
    assert (kept(layer["a"]), kept(layer["b"])) == ([2, 3], [2, 3])
    assert (kept(glob["a"]), kept(glob["b"])) == ([3], [1, 2, 3])
    assert notes == []


def test_global_scope_ranks_all_tensors_together_with_shapes_kept() -> None:
    scores = {"a": torch.tensor([[9.0, 1.0], [8.0, 2.0]]), "b": torch.tensor([3.0, 7.0, 0.0, 6.0])}
    keep, _ = select(scores, {"a": full(2, 2), "b": full(4)}, Selection(sparsity=0.5, scope="global"))
    assert keep["a"].tolist() == [[True, False], [True, False]]  # 1.0 and 2.0 go
    assert keep["b"].tolist() == [False, True, False, True]      # 0.0 and 3.0 go


def test_global_scope_ties_across_tensors_go_in_tensor_order() -> None:
    scores = {"a": torch.ones(3), "b": torch.ones(3)}
    keep, _ = select(scores, {"a": full(3), "b": full(3)}, Selection(sparsity=0.5, scope="global"))
    # The pool is concatenated in dict order, so every tied entry of `a` goes before any of `b`; `a` is then
    # empty and the zero-width guard gives it back its best (last, by position) entry.
    assert (kept(keep["a"]), kept(keep["b"])) == ([2], [0, 1, 2])


def test_global_threshold_is_the_same_as_layer_threshold() -> None:
    scores, current = two_tensors()
    keep, _ = select(scores, current, Selection(threshold=2.0, scope="global"))
    assert (kept(keep["a"]), kept(keep["b"])) == ([2, 3], [1, 2, 3])


# --- per-layer overrides -----------------------------------------------------------------------------------------

def test_override_matches_the_module_prefix_of_a_parameter_name() -> None:
    scores = {"a.weight": torch.arange(8.0), "b.weight": torch.arange(8.0)}
    current = {"a.weight": full(8), "b.weight": full(8)}
    keep, _ = select(scores, current, Selection(sparsity=0.25, layers={"a": 0.75}))
    assert kept(keep["a.weight"]) == [6, 7]
    assert kept(keep["b.weight"]) == [2, 3, 4, 5, 6, 7]


def test_override_matches_the_full_unit_name() -> None:
    scores = {"a.weight": torch.arange(8.0), "a.bias": torch.arange(4.0)}
    current = {"a.weight": full(8), "a.bias": full(4)}
    keep, _ = select(scores, current, Selection(sparsity=0.0, layers={"a.bias": 0.5}))
    assert kept(keep["a.weight"]) == list(range(8))
    assert kept(keep["a.bias"]) == [2, 3]


def test_override_does_not_match_a_longer_or_deeper_name() -> None:
    scores = {"ab.weight": torch.arange(4.0), "block.0.weight": torch.arange(4.0)}
    current = {"ab.weight": full(4), "block.0.weight": full(4)}
    keep, _ = select(scores, current, Selection(sparsity=0.0, layers={"a": 0.5, "block": 0.5}))
    assert kept(keep["ab.weight"]) == [0, 1, 2, 3]
    assert kept(keep["block.0.weight"]) == [0, 1, 2, 3]


def test_override_in_global_scope_takes_the_unit_out_of_the_global_ranking() -> None:
    scores, current = two_tensors()
    keep, _ = select(scores, current, Selection(sparsity=0.5, scope="global", layers={"b": 0.25}))
    assert kept(keep["b"]) == [1, 2, 3]  # b alone, 1 of 4
    assert kept(keep["a"]) == [2, 3]     # the global pool is a alone: 2 of 4


def test_override_wins_over_a_threshold() -> None:
    keep, _ = select({"a": torch.arange(8.0)}, {"a": full(8)}, Selection(threshold=1.0, layers={"a": 0.75}))
    assert kept(keep["a"]) == [6, 7]


# --- monotonicity ------------------------------------------------------------------------------------------------

def test_pruned_entries_stay_pruned_and_count_towards_the_target() -> None:
    scores = {"a": torch.arange(8.0)}
    current = {"a": bools(1, 1, 1, 1, 1, 1, 0, 0)}  # the two highest scores are already gone
    keep, notes = select(scores, current, Selection(sparsity=0.5))
    assert kept(keep["a"]) == [2, 3, 4, 5]  # 6, 7 (already pruned) + 0, 1 = 4 of 8
    assert notes == []


def test_a_lower_target_than_already_reached_revives_nothing() -> None:
    current = {"a": bools(0, 0, 0, 0, 0, 1, 1, 1)}
    keep, _ = select({"a": torch.arange(8.0)}, current, Selection(sparsity=0.25))
    assert keep["a"].tolist() == current["a"].tolist()


def test_threshold_never_revives_a_pruned_entry_above_it() -> None:
    current = {"a": bools(1, 1, 1, 1, 0, 1, 1, 0)}
    keep, _ = select({"a": torch.arange(8.0)}, current, Selection(threshold=2.0))
    assert kept(keep["a"]) == [2, 3, 5, 6]


def test_global_scope_counts_pruned_entries_of_every_tensor() -> None:
    scores, _ = two_tensors()
    current = {"a": full(4), "b": bools(1, 0, 0, 1)}  # 10 and 11 already gone: 2 of the 4 to remove
    keep, _ = select(scores, current, Selection(sparsity=0.5, scope="global"))
    assert (kept(keep["a"]), kept(keep["b"])) == ([2, 3], [0, 3])  # then 0 and 1 (not 1.5)


def test_the_result_is_always_a_subset_of_current() -> None:
    torch.manual_seed(0)
    scores = {"a": torch.rand(50), "b": torch.rand(5, 6)}
    current = {"a": torch.rand(50) > 0.3, "b": torch.rand(5, 6) > 0.3}
    for how in (Selection(sparsity=0.6), Selection(sparsity=0.6, scope="global"), Selection(threshold=0.5)):
        keep, _ = select(scores, current, how)
        for k in scores:
            assert not (keep[k] & ~current[k]).any()


# --- zero-width guard --------------------------------------------------------------------------------------------

def test_a_threshold_above_every_score_keeps_exactly_the_highest_entry() -> None:
    scores = {"a": torch.tensor([[0.3, 0.9], [0.1, 0.2]]), "b": torch.arange(4.0)}
    keep, notes = select(scores, {"a": full(2, 2), "b": full(4)}, Selection(threshold=2.5))
    assert keep["a"].tolist() == [[False, True], [False, False]]
    assert kept(keep["b"]) == [3]
    assert notes == [GUARD_NOTE.format("a")]


def test_the_guard_note_names_each_capped_unit_once_in_order() -> None:
    scores = {"a": torch.arange(4.0), "b": torch.arange(4.0) + 10}
    keep, notes = select(scores, {"a": full(4), "b": full(4)}, Selection(threshold=100.0))
    assert (kept(keep["a"]), kept(keep["b"])) == ([3], [3])
    assert notes == [GUARD_NOTE.format("a"), GUARD_NOTE.format("b")]


def test_a_sparsity_that_rounds_to_every_entry_keeps_the_highest() -> None:
    keep, notes = select({"a": torch.tensor([4.0, 7.0, 1.0, 5.0])}, {"a": full(4)}, Selection(sparsity=0.9))
    assert kept(keep["a"]) == [1]
    assert notes == [GUARD_NOTE.format("a")]


def test_the_guard_keeps_the_best_live_entry_not_a_pruned_one() -> None:
    current = {"a": bools(1, 1, 1, 0)}  # 3.0 (the highest score) is already pruned
    keep, notes = select({"a": torch.arange(4.0)}, current, Selection(threshold=10.0))
    assert kept(keep["a"]) == [2]
    assert notes == [GUARD_NOTE.format("a")]


def test_the_guard_applies_to_a_tensor_emptied_by_global_scope() -> None:
    scores = {"a": torch.arange(4.0), "b": torch.arange(4.0) + 10}
    keep, notes = select(scores, {"a": full(4), "b": full(4)}, Selection(sparsity=0.5, scope="global"))
    assert (kept(keep["a"]), kept(keep["b"])) == ([3], [0, 1, 2, 3])
    assert notes == [GUARD_NOTE.format("a")]
