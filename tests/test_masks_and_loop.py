"""Masks stay enforced (masks.py, the training Loop) and `weight` prunes exactly the smallest |w|, on toy models."""

from __future__ import annotations

import io
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from conftest import component
from progprune_cli.optim.losses import cross_entropy
from progprune_cli.pruning.strategies import PruneContext, StepReport, build_strategy
from progprune_cli.pruning.strategies.weight import WeightMagnitude
from progprune_cli.config import OptimizerConfig
from progprune_cli.errors import UserError
from progprune_cli.pruning.masks import apply_masks
from progprune_cli.stages.io import StageIO
from progprune_cli.stages.loop import Loop

CPU = torch.device("cpu")


def bools(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)


# --- masks.py ----------------------------------------------------------------------------------------------------

def linear() -> nn.Linear:
    """Linear(4 -> 3) with weight = arange(1, 13) (no zeros) and bias = [1, 2, 3]."""
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(1.0, 13.0).view(3, 4))
        layer.bias.copy_(torch.tensor([1.0, 2.0, 3.0]))
    return layer


MASK = bools([[1, 0, 1, 0], [0, 0, 1, 1], [1, 1, 1, 0]])  # 5 of 12 pruned


@pytest.mark.parametrize("dtype", [torch.bool, torch.float32])
def test_apply_masks_zeroes_exactly_the_masked_entries(dtype: torch.dtype) -> None:
    layer = linear()
    apply_masks(layer, {"weight": MASK.to(dtype)})
    assert layer.weight.tolist() == [[1, 0, 3, 0], [0, 0, 7, 8], [9, 10, 11, 0]]
    assert layer.bias.tolist() == [1, 2, 3]  # no mask, untouched
    assert layer.weight.requires_grad


def test_momentum_moves_a_pruned_weight_so_masks_are_reapplied_after_the_step() -> None:
    """Why apply_masks runs after every step: zero gradients alone do not stop momentum."""
    layer = linear()
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    x = torch.ones(2, 4)
    layer(x).sum().backward()
    opt.step()  # momentum buffer now holds the dense gradient
    apply_masks(layer, {"weight": MASK})
    opt.zero_grad()
    layer(x).sum().backward()
    layer.weight.grad.mul_(MASK)  # what the Loop does before each step
    assert bool((layer.weight.grad[~MASK] == 0).all())
    opt.step()
    assert bool((layer.weight[~MASK] != 0).all())  # revived by momentum alone
    apply_masks(layer, {"weight": MASK})
    assert bool((layer.weight[~MASK] == 0).all())


# --- Loop --------------------------------------------------------------------------------------------------------

def dataset(n: int = 24) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 4, generator=g), torch.arange(n) % 3)


def loop(tmp_path: Path, optimizer: OptimizerConfig, model: nn.Module) -> Loop:
    io_ = StageIO(tmp_path, Console(file=io.StringIO()))
    return Loop(model, dataset(), dataset(6), optimizer, cross_entropy, CPU, batch_size=8, io=io_,
                stage="prune", seed=0, epochs=3)


OPTIMIZERS = {
    "sgd_momentum": component("optimizer", "sgd", lr=0.1, momentum=0.9),
    "adam": component("optimizer", "adam", lr=0.05),
}


@pytest.mark.parametrize("opt", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_loop_keeps_pruned_weights_at_zero_after_momentum_built_up(tmp_path: Path, opt: OptimizerConfig) -> None:
    torch.manual_seed(0)
    model = linear()
    lp = loop(tmp_path, opt, model)
    lp.run(1)  # dense: 3 steps of momentum / Adam moments on every weight
    assert int((model.weight == 0).sum()) == 0
    lp.set_masks({"weight": MASK})
    lp.achieved_sparsity = 5 / 12  # the stage sets it in the strategy's units
    assert model.weight[~MASK].tolist() == [0.0] * 5  # set_masks zeroes at once
    at_prune = model.weight.detach().clone()
    bias_at_prune = model.bias.detach().clone()
    rows = lp.run(3)  # up to the stage's third epoch
    assert model.weight[~MASK].tolist() == [0.0] * 5
    assert model.weight.grad[~MASK].tolist() == [0.0] * 5
    assert bool((model.weight[MASK] != at_prune[MASK]).all())  # live weights still train
    assert bool((model.bias != bias_at_prune).all())
    assert lp.iteration == 9  # 3 epochs x ceil(24 / 8) steps
    assert [r["epoch"] for r in rows] == [0, 1, 2]  # rows accumulate; epochs count within the stage
    assert [r["achieved_sparsity"] for r in rows] == [0.0, 5 / 12, 5 / 12]
    assert (tmp_path / "run.log").read_text().count("prune epoch") == 3


@pytest.mark.parametrize("opt", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_loop_keeps_masks_at_every_step(tmp_path: Path, opt: OptimizerConfig) -> None:
    model = linear()
    lp = loop(tmp_path, opt, model)
    lp.set_masks({"weight": MASK})
    seen: list[list[float]] = []
    lp.run(2, before_step=lambda i: seen.append(model.weight[~MASK].tolist()))
    assert seen == [[0.0] * 5] * 6
    assert model.weight[~MASK].tolist() == [0.0] * 5


def test_loop_with_clipping_and_weight_decay_keeps_masks(tmp_path: Path) -> None:
    opt = component("optimizer", "sgd", lr=0.5, clip_grad_norm=0.01, momentum=0.9, weight_decay=0.1)
    model = linear()
    lp = loop(tmp_path, opt, model)
    lp.set_masks({"weight": MASK})
    lp.run(1)
    assert model.weight[~MASK].tolist() == [0.0] * 5
    assert model.weight.grad[~MASK].tolist() == [0.0] * 5


# --- WeightMagnitude ---------------------------------------------------------------------------------------------

def toy() -> nn.Sequential:
    """conv: Conv2d(1 -> 2, 2x2), weight = arange(8) - 4 = -4..3 (|w| 4 3 2 1 0 1 2 3), bias = [0.5, -0.1];
    fc: Linear(6 -> 2), weight = ±arange(12) / 20 (|w| 0, 0.05, ..., 0.55, signs alternating), bias = [0, 1]."""
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 2, 2), flat=nn.Flatten(), fc=nn.Linear(6, 2)))
    signs = torch.tensor([1.0, -1.0]).repeat(6)
    with torch.no_grad():
        model.conv.weight.copy_((torch.arange(8.0) - 4).view(2, 1, 2, 2))
        model.conv.bias.copy_(torch.tensor([0.5, -0.1]))
        model.fc.weight.copy_((torch.arange(12.0) / 20 * signs).view(2, 6))
        model.fc.bias.copy_(torch.tensor([0.0, 1.0]))
    return model


def ctx() -> PruneContext:
    return PruneContext(DataLoader(dataset(4), batch_size=4), cross_entropy, CPU, seed=0)


def prune(target: float, **cfg: object) -> tuple[dict[str, list[int]], StepReport]:
    """One step on a fresh toy: pruned flat positions per unit, and the report."""
    strategy = build_strategy(component("strategy", "weight", **cfg))
    model = toy()
    masks, report = strategy.step(model, strategy.initial_masks(model), target, 1.0, ctx())
    return {k: (~m).flatten().nonzero().flatten().tolist() for k, m in masks.items()}, report


def test_build_strategy_gives_weight_magnitude() -> None:
    strategy = build_strategy(component("strategy", "weight"))
    assert type(strategy) is WeightMagnitude
    assert strategy.units(toy()) == ["conv.weight", "fc.weight"]


def test_sparsity_half_prunes_the_lowest_magnitude_half_of_each_weight() -> None:
    pruned, report = prune(0.5, sparsity=0.5)
    # conv |w| = 4 3 2 1 0 1 2 3: 0, the two 1s, then the first 2 (position 2 before 6).
    assert pruned == {"conv.weight": [2, 3, 4, 5], "fc.weight": [0, 1, 2, 3, 4, 5]}
    assert report == StepReport(target=0.5, achieved=0.5, removed=10, layers={
        "conv.weight": {"target": 0.5, "achieved": 0.5, "nonzero": 4},
        "fc.weight": {"target": 0.5, "achieved": 0.5, "nonzero": 6},
    }, notes=[])


def test_step_returns_masks_and_leaves_the_weights_alone() -> None:
    strategy = build_strategy(component("strategy", "weight"))
    model = toy()
    masks, _ = strategy.step(model, strategy.initial_masks(model), 0.5, 1.0, ctx())
    assert model.conv.weight.flatten().tolist() == [-4, -3, -2, -1, 0, 1, 2, 3]
    assert set(masks) == {"conv.weight", "fc.weight"}
    assert masks["conv.weight"].shape == (2, 1, 2, 2) and masks["fc.weight"].shape == (2, 6)


def test_biases_are_pruned_only_with_include_bias() -> None:
    pruned, report = prune(0.5, include_bias=True)
    assert pruned == {"conv.weight": [2, 3, 4, 5], "conv.bias": [1], "fc.weight": [0, 1, 2, 3, 4, 5],
                      "fc.bias": [0]}
    assert (report.removed, report.achieved) == (12, 0.5)


def test_exclude_keeps_a_layer_dense() -> None:
    pruned, report = prune(0.5, exclude=("fc",))
    assert pruned == {"conv.weight": [2, 3, 4, 5]}
    assert (report.removed, report.achieved) == (4, 0.5)
    pruned, _ = prune(0.5, exclude=("conv.w*",), include_bias=True)
    assert pruned == {"conv.bias": [1], "fc.weight": [0, 1, 2, 3, 4, 5], "fc.bias": [0]}


def test_threshold_prunes_exactly_magnitudes_below_it() -> None:
    pruned, report = prune(0.2, threshold=0.2)
    # conv: only |w| = 0; fc: 0, 0.05, 0.1, 0.15 (0.2 itself stays).
    assert pruned == {"conv.weight": [4], "fc.weight": [0, 1, 2, 3]}
    assert report == StepReport(target=0.2, achieved=0.25, removed=5, layers={
        "conv.weight": {"target": None, "achieved": 1 / 8, "nonzero": 7},
        "fc.weight": {"target": None, "achieved": pytest.approx(4 / 12, abs=1e-7), "nonzero": 8},
    }, notes=[])  # per-layer "achieved" is a float32 mean: 0.33333331


def test_threshold_with_biases() -> None:
    pruned, report = prune(0.2, threshold=0.2, include_bias=True)
    assert pruned == {"conv.weight": [4], "conv.bias": [1], "fc.weight": [0, 1, 2, 3], "fc.bias": [0]}
    assert (report.removed, report.achieved) == (7, pytest.approx(7 / 24, abs=1e-12))


def test_global_scope_ranks_all_weights_together() -> None:
    pruned, report = prune(0.5, scope="global")
    # The 10 smallest of 20: conv's 0 (first in the pool, tied with fc's 0), then fc 0 .. 0.4.
    assert pruned == {"conv.weight": [4], "fc.weight": [0, 1, 2, 3, 4, 5, 6, 7, 8]}
    assert (report.removed, report.achieved) == (10, 0.5)
    assert report.layers["fc.weight"] == {"target": 0.5, "achieved": 9 / 12, "nonzero": 3}


def test_layer_override_by_module_name() -> None:
    pruned, report = prune(0.5, layers={"conv": 0.25})
    assert pruned == {"conv.weight": [3, 4], "fc.weight": [0, 1, 2, 3, 4, 5]}
    assert report.layers["conv.weight"]["target"] == 0.25
    assert (report.removed, report.achieved) == (8, 0.4)


def test_progressive_steps_report_only_the_new_removals() -> None:
    strategy = build_strategy(component("strategy", "weight"))
    model = toy()
    masks, first = strategy.step(model, strategy.initial_masks(model), 0.25, 0.5, ctx())
    masks, second = strategy.step(model, masks, 0.5, 1.0, ctx())
    assert (first.removed, first.achieved) == (5, 0.25)
    assert (second.removed, second.achieved) == (5, 0.5)
    assert (~masks["conv.weight"]).flatten().nonzero().flatten().tolist() == [2, 3, 4, 5]


def test_check_rejects_unknown_layers_and_nothing_to_prune() -> None:
    with pytest.raises(UserError) as error:
        build_strategy(component("strategy", "weight", layers={"conv2": 0.5})).check(toy())
    assert str(error.value) == ("strategy.layers.conv2: no such prunable layer; "
                                "choose from conv, conv.weight, fc, fc.weight")
    with pytest.raises(UserError) as error:
        build_strategy(component("strategy", "weight", exclude=["*"])).check(toy())
    assert str(error.value) == "strategy=weight: model has no prunable layers after strategy.exclude"


def test_weight_takes_no_options_of_its_own() -> None:
    with pytest.raises(UserError) as error:
        build_strategy(component("strategy", "weight", thresh=0.3))
    assert str(error.value) == ("strategy.thresh: unknown key; allowed keys are exclude, include_bias, layers, "
                                "layers_from, name, pattern, scope, sparsity, target, threshold")
