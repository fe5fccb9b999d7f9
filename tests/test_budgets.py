"""strategy.target (issue 19): the sparsity that meets a MAC or parameter budget, found before training from exact
counts, on a toy model whose counts are worked out by hand here; infeasible or unsupported budgets: one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY, component, model_of, refused
from progprune_cli.data import DataInfo
from progprune_cli.measure.macs import layer_table, macs_summary
from progprune_cli.pruning.budget import BudgetFit, find_budget
from progprune_cli.pruning.strategies import PruneContext, build_strategy

# two_conv_cnn (32 channels) on 1×8×8 inputs: conv1 at 8×8, conv2 at 4×4, fc on 32·2·2 features, 4 classes.
INFO = DataInfo(channels=1, height=8, width=8, num_classes=4)
DENSE_MACS = 8 * 8 * 32 * 9 + 4 * 4 * 32 * 32 * 9 + 32 * 4 * 4  # 166,400


def macs(first: int, second: int) -> int:
    """MACs of two_conv_cnn with `first` channels out of conv1 and `second` out of conv2 (per sample)."""
    return 8 * 8 * first * 9 + 4 * 4 * first * second * 9 + second * 4 * 4


def params(second: int) -> int:
    """Parameters with conv1 at full width (keep_first) and `second` channels out of conv2."""
    return (32 * 9 + 32) + (second * 32 * 9 + second) + (second * 4 * 4 + 4)


def fit(name: str, **values: object) -> tuple[BudgetFit | None, object, torch.nn.Module]:
    torch.manual_seed(0)
    model = model_of("two_conv_cnn", {}, INFO)
    strategy = build_strategy(component("strategy", name, **values))
    strategy.check(model, INFO)
    return find_budget(strategy, model, INFO), strategy, model


def test_toy_counts_match_the_models_own() -> None:
    assert DENSE_MACS == 166_400 == macs(32, 32)
    assert macs_summary(layer_table(model_of("two_conv_cnn", {}, INFO), (1, 8, 8)))["dense"] == DENSE_MACS


def test_macs_budget_with_keep_first_prunes_conv2_to_the_nearest_width() -> None:
    # Only conv2 is a unit: 14 channels kept give 2.0008×, 15 give 1.895×; 18 of 32 go at sparsity 0.55.
    found, _, _ = fit("structured", target={"macs": 2.0})
    assert found == BudgetFit("macs", 2.0, 0.55, DENSE_MACS / macs(32, 14), True)


def test_an_excluded_layer_stays_at_full_width_in_the_count() -> None:
    # conv2 excluded, conv1 the only unit: 16 channels give 1.9969× (0.15% off), 15 give 2.1258× (6.3% off).
    found, _, _ = fit("structured", target={"macs": 2.0}, keep_first=False, exclude=["conv2"])
    assert found == BudgetFit("macs", 2.0, 0.5, DENSE_MACS / macs(16, 32), True)


def test_a_unit_with_its_own_layers_value_keeps_it_and_the_rest_moves() -> None:
    # conv1 at strategy.layers' 0.5 (16 kept); conv2 moves: 29 kept (3 of 32 go: 0.1) give 2.1753× (1.1% off), 28
    # give 2.2433× (2.0% off).
    found, _, _ = fit("structured", target={"macs": 2.2}, keep_first=False, layers={"conv1": 0.5})
    assert found == BudgetFit("macs", 2.2, 0.1, DENSE_MACS / macs(16, 29), True)


@pytest.mark.parametrize(("name", "values"), [("activation", {}), ("taylor", {"granularity": "channel"}),
                                               ("random", {"granularity": "channel"})])
def test_every_channel_strategy_finds_the_same_ratio(name: str, values: dict[str, str]) -> None:
    found, _, _ = fit(name, target={"macs": 2.0}, **values)
    assert found == BudgetFit("macs", 2.0, 0.55, DENSE_MACS / macs(32, 14), True)


def test_the_count_at_the_found_sparsity_holds_for_the_strategys_own_scores() -> None:
    """Both convs are units (keep_first=false): 22 channels each give 2.0116× (23 give 1.853×). The strategy's real
    step with its L1 scores at that sparsity, compacted, has exactly the MACs the search counted."""
    found, strategy, model = fit("structured", target={"macs": 2.0}, keep_first=False)
    assert found == BudgetFit("macs", 2.0, 0.3, DENSE_MACS / macs(22, 22), True)
    ctx = PruneContext(loader=[], loss_fn=torch.nn.functional.cross_entropy, device=torch.device("cpu"), seed=0)
    masks, _ = strategy.step(model, strategy.initial_masks(model, INFO), found.sparsity, 1.0, ctx)
    assert {unit: int(mask.sum()) for unit, mask in masks.items()} == {"conv1": 22, "conv2": 22}
    small = strategy.compact(model, masks, INFO)
    assert macs_summary(layer_table(small, (1, 8, 8)))["dense"] == macs(22, 22)


def test_params_budget_out_of_reach_by_2_percent_takes_the_nearest_width_and_says_so() -> None:
    # Each conv2 channel is 305 of 10,084 parameters (3%): 15 kept is 48.58% (2.8% off), 16 kept 51.61% (3.2% off).
    found, _, _ = fit("structured", target={"params": 0.5})
    assert found == BudgetFit("params", 0.5, 0.52, params(15) / params(32), False)
    assert found.line() == ("strategy.target.params=0.5: strategy.sparsity 0.52 gives 48.58% of the parameters kept "
                            "(not within 2%: the nearest this model reaches; counted before training); it replaces "
                            "strategy.sparsity")


def test_params_budget_of_a_weight_strategy_keeps_exactly_that_fraction() -> None:
    # 10,016 prunable weights of 10,084 parameters; 5,042 go at 0.5034 (145 + 4,639 + 258 by layer).
    found, strategy, model = fit("weight", target={"params": 0.5})
    assert found == BudgetFit("params", 0.5, 0.5034, 0.5, True)
    ctx = PruneContext(loader=[], loss_fn=torch.nn.functional.cross_entropy, device=torch.device("cpu"), seed=0)
    masks, _ = strategy.step(model, strategy.initial_masks(model, INFO), found.sparsity, 1.0, ctx)
    assert {unit: int((~mask).sum()) for unit, mask in masks.items()} == \
        {"conv1.weight": 145, "conv2.weight": 4639, "fc.weight": 258}


def test_no_target_searches_nothing() -> None:
    assert fit("structured")[0] is None


RUN = [*TINY, "model=two_conv_cnn"]


@pytest.mark.parametrize(("overrides", "message"), [
    (["+strategy=structured", "strategy.target.macs=1000"],
     "strategy.target.macs=1000: the most this model reaches is 7.22× (at sparsity 0.99)"),
    # The zero-width guard keeps one conv2 channel: 629 of 10,084 parameters.
    (["+strategy=structured", "strategy.target.params=0.01"],
     "strategy.target.params=0.01: the fewest this model keeps is 6.24% of its parameters (at sparsity 0.99)"),
    (["+strategy=weight", "strategy.target.macs=2"],
     "strategy.target.macs=2: strategy=weight zeroes single weights, which dense kernels still multiply; use "
     "strategy.target.params, or a strategy that removes channels (structured, activation, or taylor/random with "
     "strategy.granularity=channel)"),
    (["+strategy=structured", "strategy.scope=global", "strategy.target.macs=2"],
     "strategy.target.macs=2: needs strategy.scope=layer (got global): a global ranking takes each layer's channels "
     "by scores known only while pruning, so no ratio is exact before it"),
    (["+strategy=structured", "strategy.target.macs=1"],
     "strategy.target.macs: got 1; must be > 1 (dense MACs / pruned MACs)"),
    (["+strategy=weight", "strategy.target.params=1.5"],
     "strategy.target.params: got 1.5; must be in (0, 1) (the fraction of parameters kept)"),
    (["+strategy=structured", "strategy.target.flops=2"],
     "strategy.target.flops: unknown key; allowed keys are latency_ms, macs, params"),
    (["+strategy=structured", "strategy.target.macs=2", "strategy.target.params=0.5"],
     "strategy.target: got macs=2 and params=0.5; set one of them"),
    # The schedule is checked against the sparsity found (0.55), not strategy.sparsity's 0.5.
    (["+strategy=structured", "strategy.target.macs=2", "schedule.initial_sparsity=0.6"],
     "schedule.initial_sparsity: got 0.6; must be <= strategy.sparsity (0.55, found for strategy.target.macs)"),
    (["+strategy=weight", "strategy.threshold=0.1", "strategy.target.params=0.5"],
     "strategy.target.params=0.5: a budget sets strategy.sparsity, so it needs sparsity mode; set "
     "strategy.threshold=null"),
])
def test_bad_budgets_are_refused_in_one_line_before_any_folder(
        overrides: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    err = refused("train", *RUN, *overrides, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert err == f"progprune: error: {message}\n"
    assert list(tmp_path.iterdir()) == []


# progprune's own main, with every budget search counted (stderr's last line).
COUNTED = """
import atexit, sys
import progprune_cli.parts as parts, progprune_cli.pruning.budget as budget
searched = []
real = budget.find_budget
def counted(*args):
    fit = real(*args)
    searched.append(fit is not None)
    return fit
budget.find_budget = parts.find_budget = counted
atexit.register(lambda: print(f"budget searches: {sum(searched)}", file=sys.stderr))
from progprune_cli.cli import main
main(sys.argv[1:])
"""


def test_a_macs_target_run_compacts_to_that_speedup(tmp_path: Path) -> None:
    # initial_sparsity 0.52 is above strategy.sparsity's 0.5 but below the 0.55 found: the schedule ramps to 0.55.
    done = subprocess.run([sys.executable, "-c", COUNTED, "train", *RUN, "+strategy=structured",
                           "strategy.target.macs=2", "schedule.initial_sparsity=0.52",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # Searched once, before any folder (preflight); the run takes that fit rather than search again.
    assert done.stderr.splitlines()[-1] == "budget searches: 1"
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    compacted = results["models"]["compacted"]["macs"]
    assert compacted["dense"] == macs(32, 14)
    assert abs(compacted["theoretical_speedup"] / 2.0 - 1) <= 0.02
    assert results["pruning"]["budget"] == {"key": "macs", "target": 2.0, "sparsity": 0.55,
                                            "achieved": DENSE_MACS / macs(32, 14), "within": True}
    assert results["pruning"]["target"] == 0.55
    assert [step["target"] for step in results["pruning"]["steps"]] == [0.52, 0.55]
    line = ("strategy.target.macs=2: strategy.sparsity 0.55 gives 2.001× fewer MACs (within 2%; counted before "
            "training, theoretical); it replaces strategy.sparsity")
    assert line in (tmp_path / "run" / "run.log").read_text().splitlines()
    assert line in (tmp_path / "run" / "results.md").read_text()
