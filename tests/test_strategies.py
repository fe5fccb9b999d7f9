"""Strategies on toy models with known weights, and compaction checked against the masked model on every model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TINY, component, model_of, progprune
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from progprune_cli.data import DataInfo
from progprune_cli.pruning.strategies import PruneContext, Strategy, build_strategy

from progprune_cli.errors import UserError
from progprune_cli.export import load_model
from progprune_cli.pruning.masks import apply_masks

INFO = DataInfo(channels=1, height=8, width=8, num_classes=10)


# Tracing runs many one-sample forward passes; see the fixture in conftest.py.
pytestmark = pytest.mark.usefixtures("one_thread")


def strategy(name: str, **values: Any) -> Strategy:
    return build_strategy(component("strategy", name, **values))


def ctx(x: torch.Tensor | None = None, batch: int = 4, seed: int = 0, step: int = 0,
        loss=lambda out, y: out.sum()) -> PruneContext:  # type: ignore[no-untyped-def]
    x = torch.zeros(1, 1) if x is None else x
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=batch)
    return PruneContext(loader, loss, torch.device("cpu"), seed, step)


class Toy(nn.Module):
    """conv1 (2 → 4, 1×1) → relu → conv2 (4 → 3, 1×1) → relu → flatten → fc; 2×2 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.fc = nn.Conv2d(2, 4, 1), nn.Conv2d(4, 3, 1), nn.Linear(12, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(torch.flatten(x, 1))


TOY_INFO = DataInfo(channels=2, height=2, width=2, num_classes=2)


def toy(filters: list[list[float]]) -> Toy:
    model = Toy()
    with torch.no_grad():
        model.conv1.weight.copy_(torch.tensor(filters).view(4, 2, 1, 1))
    return model


def pruned(s: Strategy, model: nn.Module, target: float = 0.5, c: PruneContext | None = None,
           info: DataInfo | None = INFO) -> dict[str, torch.Tensor]:
    s.check(model, info)
    masks, _ = s.step(model, s.initial_masks(model, info), target, 1.0, c or ctx())
    return masks


# --- structured -------------------------------------------------------------------------------------------------

def test_structured_l1_removes_the_filters_with_the_smallest_norms() -> None:
    model = toy([[3, 0], [-1, 0], [0, 4], [2, 0]])  # L1 norms 3, 1, 4, 2
    masks = pruned(strategy("structured", keep_first=False), model, info=TOY_INFO)
    assert masks["conv1"].tolist() == [True, False, True, False]


def test_structured_norm_2_ranks_by_euclidean_length() -> None:
    model = toy([[3, 4], [6, 0], [9, 9], [9, 9]])  # L1: 7, 6, ... ; L2: 5, 6, ...
    l1 = pruned(strategy("structured", keep_first=False, norm=1), model, 0.25, info=TOY_INFO)
    l2 = pruned(strategy("structured", keep_first=False, norm=2), model, 0.25, info=TOY_INFO)
    assert l1["conv1"].tolist() == [True, False, True, True]
    assert l2["conv1"].tolist() == [False, True, True, True]


def test_param_masks_cover_the_filter_its_bias_and_the_next_layers_inputs() -> None:
    model = toy([[3, 0], [-1, 0], [0, 4], [2, 0]])
    s = strategy("structured", keep_first=False, layers={"conv2": 0.0})
    masks = s.to_param_masks(model, pruned(s, model, info=TOY_INFO))
    gone = [1, 3]
    assert not masks["conv1.weight"][gone].any() and masks["conv1.weight"][[0, 2]].all()
    assert masks["conv1.bias"].tolist() == [True, False, True, False]
    assert not masks["conv2.weight"][:, gone].any() and masks["conv2.weight"][:, [0, 2]].all()
    assert masks["fc.weight"].all() and masks["conv2.bias"].all()


def test_batchnorm_of_a_removed_channel_is_masked_so_it_outputs_zero() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(),
                          nn.Linear(64, 2))
    s = strategy("structured", keep_first=False)
    masks = s.to_param_masks(model, pruned(s, model))
    removed = ~masks["0.weight"].flatten(1).all(1)
    assert int(removed.sum()) == 2
    assert masks["1.weight"].tolist() == masks["1.bias"].tolist() == (~removed).tolist()


def test_the_classifier_is_never_a_unit_and_keep_first_exclude_remove_more() -> None:
    model = model_of("two_conv_cnn", {}, INFO)
    assert strategy("structured", keep_first=False).units(model) == ["conv1", "conv2"]
    assert strategy("structured").units(model) == ["conv2"]
    assert strategy("structured", keep_first=False, exclude=("conv2",)).units(model) == ["conv1"]


def test_residual_partners_form_one_unit_named_after_their_first_layer() -> None:
    s = strategy("structured", keep_first=False)
    model = model_of("resnet_tiny", {"width": 4}, INFO)
    s.check(model, INFO)
    assert s.graph(model).groups["conv1"] == ("conv1", "layer1.conv2")
    assert s.graph(model).groups["layer2.conv2"] == ("layer2.conv2", "layer2.shortcut.0")
    assert s.units(model) == ["conv1", "layer1.conv1", "layer2.conv1", "layer2.conv2"]


def test_per_layer_override_and_zero_width_guard() -> None:
    model = model_of("two_conv_cnn", {"channels": 8}, INFO)
    s = strategy("structured", keep_first=False, layers={"conv1": 1.0, "conv2": 0.25})
    s.check(model, INFO)
    masks, report = s.step(model, s.initial_masks(model, INFO), 0.5, 1.0, ctx())
    assert int(masks["conv1"].sum()) == 1  # 100% asked; the guard keeps the best channel
    assert int(masks["conv2"].sum()) == 6
    assert report.notes == ["conv1: would be pruned to zero; kept its 1 highest-scoring entries"]


# --- activation -------------------------------------------------------------------------------------------------

def activation_toy() -> nn.Module:
    """Channel 0 copies the input, channel 1 is always −1 (always zero after ReLU), channel 2 is 0.1 × input."""
    model = nn.Sequential(nn.Linear(1, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0], [0.0], [0.1]]))
        model[0].bias.copy_(torch.tensor([0.0, -1.0, 0.0]))
    return model


def test_activation_apoz_removes_the_channel_that_is_always_off_and_mean_abs_the_weakest() -> None:
    x = torch.rand(16, 1) + 0.5  # positive inputs
    data = ctx(x, batch=4)
    apoz = strategy("activation", keep_first=False, criterion="apoz", batches=2)
    mean_abs = strategy("activation", keep_first=False, criterion="mean_abs", batches=2)
    model = activation_toy()
    info = None  # a model of plain Linear layers takes (batch, features): its shape is read off the first layer
    apoz.check(model, info)
    mean_abs.check(model, info)
    assert apoz.scores(model, apoz.initial_masks(model), data)["0"].tolist() == [1.0, 0.0, 1.0]
    first8 = x[:8, 0]  # two batches of four
    assert torch.allclose(mean_abs.scores(model, mean_abs.initial_masks(model), data)["0"],
                          torch.stack([first8.mean(), torch.tensor(1.0), 0.1 * first8.mean()]))
    assert pruned(apoz, model, 1 / 3, data, info)["0"].tolist() == [True, False, True]
    assert pruned(mean_abs, model, 1 / 3, data, info)["0"].tolist() == [True, True, False]


def test_activation_calibrates_in_eval_mode_and_restores_training() -> None:
    model = nn.Sequential(nn.Linear(1, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2)).train()
    s = strategy("activation", keep_first=False)
    s.check(model)
    s.scores(model, s.initial_masks(model), ctx(torch.randn(8, 1) * 5 + 3))
    assert model.training and model[1].running_mean.tolist() == [0.0, 0.0, 0.0]


# --- taylor -----------------------------------------------------------------------------------------------------

def test_taylor_weight_sums_abs_w_times_grad_over_batches() -> None:
    model = nn.Sequential(nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    # L = sum(W x), so dL/dW = [x, x]. Batch 1, x = (1, −2): |W·g| = [[1, 4], [3, 8]].
    # Batch 2, x = (2, 0): [[2, 0], [6, 0]].
    data = ctx(torch.tensor([[1.0, -2.0], [2.0, 0.0]]), batch=1)
    s = strategy("taylor", granularity="weight", batches=2)
    assert s.granularity == "weight"
    scores = s.scores(model, s.initial_masks(model), data)
    assert scores["0.weight"].tolist() == [[3.0, 4.0], [9.0, 8.0]]
    assert model[0].weight.grad is None  # scoring leaves the optimizer's gradients alone
    assert pruned(s, model, 0.5, data)["0.weight"].tolist() == [[False, False], [True, True]]


def test_taylor_channel_is_abs_of_the_summed_first_order_term() -> None:
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        model[0].bias.copy_(torch.tensor([0.0, 0.0, -1.0]))
        model[1].weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 2.0]]))
    # L = sum(V h): per channel Σ w·g + b·g_b = s_c·h_c, with s = column sums of V = (2, 0, 3)
    # and h = W x + b = (1, 2, 2).
    s = strategy("taylor", granularity="channel", batches=1, keep_first=False)
    assert s.granularity == "channel"
    data = ctx(torch.tensor([[1.0, 2.0]]), batch=1)
    s.check(model)
    assert s.scores(model, s.initial_masks(model), data)["0"].tolist() == [2.0, 0.0, 6.0]


# --- random -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("granularity", ["weight", "channel"])
def test_random_is_reproducible_per_seed_and_step(granularity: str) -> None:
    model = model_of("two_conv_cnn", {}, INFO)

    def masks(seed: int, step: int = 0) -> dict[str, torch.Tensor]:
        s = strategy("random", granularity=granularity, keep_first=False)
        assert s.granularity == granularity
        return pruned(s, model, 0.5, ctx(seed=seed, step=step))

    same, again, other, later = masks(0), masks(0), masks(1), masks(0, step=1)
    assert all(torch.equal(same[k], again[k]) for k in same)
    assert any(not torch.equal(same[k], other[k]) for k in same)
    assert any(not torch.equal(same[k], later[k]) for k in same)
    # Seed and step do not trade off: run seed 1 at step 0 differs from run seed 0 at step 1.
    one_zero, zero_one = masks(1, 0), masks(0, 1)
    assert any(not torch.equal(one_zero[k], zero_one[k]) for k in one_zero)


def test_bad_granularity_is_a_one_line_user_error() -> None:
    with pytest.raises(UserError, match="^strategy.granularity: got 'filter'; allowed values are weight, channel$"):
        strategy("random", granularity="filter")


# --- compaction -------------------------------------------------------------------------------------------------

def randomize_batchnorm(model: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters, so a zeroed channel would not read 0 by accident."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-1, 1)


@pytest.mark.parametrize("name", ["simple_cnn", "two_conv_cnn", "mlp", "resnet_tiny"])
def test_compacted_model_computes_what_the_masked_model_does(name: str) -> None:
    torch.manual_seed(0)
    model = model_of(name, {}, INFO)
    randomize_batchnorm(model)
    s = strategy("structured", keep_first=False)
    unit_masks = pruned(s, model, 0.5)
    apply_masks(model, s.to_param_masks(model, unit_masks))
    small = s.compact(model, unit_masks, INFO)
    model.eval(), small.eval()
    x = torch.randn(16, 1, 8, 8)
    with torch.no_grad():
        assert float((small(x) - model(x)).abs().max()) < 1e-5
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


def test_compacting_removes_half_the_channels_of_every_unit() -> None:
    model = model_of("resnet_tiny", {"width": 8}, INFO)
    s = strategy("structured", keep_first=False)
    small = s.compact(model, pruned(s, model, 0.5), INFO)
    assert (small.conv1.out_channels, small.layer1.conv1.out_channels, small.layer1.conv2.out_channels) == (4, 4, 4)
    assert (small.layer2.conv2.out_channels, small.layer2.shortcut[0].out_channels, small.fc.in_features) == (8, 8, 8)
    assert small.fc.out_features == 10


class HardCodedView(nn.Module):
    """Flattens with a fixed size: removing channels from conv2 cannot be followed by the classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(256, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).view(-1, 256))


def test_a_model_that_cannot_be_compacted_fails_check_naming_the_layer() -> None:
    with pytest.raises(UserError, match="^strategy=structured: cannot compact layer conv2: "):
        strategy("structured").check(HardCodedView(), INFO)


def test_compact_raises_naming_the_layer_when_outputs_would_change() -> None:
    s = strategy("structured", keep_first=False)
    model = HardCodedView()
    masks = {"conv1": torch.ones(4, dtype=torch.bool), "conv2": torch.tensor([True, False, True, True])}
    with pytest.raises(RuntimeError, match="^strategy=structured: cannot compact layer conv2: "):
        s.compact(model, masks, INFO)


def test_check_errors_are_one_line_and_say_what_to_change() -> None:
    with pytest.raises(UserError, match="^strategy=structured: no layer left to prune: the classifier \\(fc\\) .*"
                                        "set strategy.keep_first=false"):
        strategy("structured").check(model_of("simple_cnn", {}, INFO), INFO)
    with pytest.raises(UserError, match="^strategy.layers.layer1.conv2: its channels are tied to conv1"):
        strategy("structured", keep_first=False, layers={"layer1.conv2": 0.3}).check(
            model_of("resnet_tiny", {}, INFO), INFO)
    with pytest.raises(UserError, match="^strategy.layers.fc: no such prunable layer; choose from conv2$"):
        strategy("structured", layers={"fc": 0.3}).check(model_of("two_conv_cnn", {}, INFO), INFO)


def test_without_data_info_the_input_shape_is_found_from_the_model() -> None:
    s = strategy("structured")
    s.check(model_of("two_conv_cnn", {}, INFO))
    assert s.shape == (1, 8, 8)


def test_unit_masks_start_on_the_cpu_whatever_the_model_device() -> None:
    # Scores are CPU tensors and select() combines them with the masks; a CUDA model used to crash there.
    model = nn.Sequential(nn.Linear(2, 3)).to("meta")
    assert strategy("weight").initial_masks(model)["0.weight"].device.type == "cpu"
    assert strategy("taylor").initial_masks(model)["0.weight"].device.type == "cpu"


# --- the installed command --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_structured_run_saves_a_smaller_compacted_model(workdir: Path) -> None:
    result = progprune("train", "+strategy=structured", *TINY, f"hydra.run.dir={workdir / 'run'}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    results = json.loads((workdir / "run" / "results.json").read_text())
    compacted = results["models"]["compacted"]
    assert compacted["params"]["physical"] < compacted["params"]["total"]
    assert compacted["mask_only"] is False
    assert results["pruning"]["granularity"] == "channel"
    loaded = load_model(workdir / "run", which="compacted")  # tensors only: no pickled module
    assert sum(p.numel() for p in loaded.parameters()) == compacted["params"]["physical"]
