"""Channel strategies on architectures users bring (torchvision and timm): the classifier and the first layer found
from the traced graph, a 50% step compacting to what the masked model computes, `strategy.exclude` respected, and
what torch-pruning cannot remove exactly left dense and named."""

from __future__ import annotations

import copy
import fnmatch
import functools
from collections.abc import Callable
from typing import Any

import pytest
import timm
import torch
import torchvision
from conftest import component
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError
from progprune_cli.pruning.masks import apply_masks
from progprune_cli.pruning.strategies import PruneContext, Strategy, build_strategy
from progprune_cli.pruning.strategies import channel_graph as cg
from progprune_cli.pruning.strategies.channels import TOLERANCE
from progprune_cli.sensitivity.analysis import analyse

# Tracing runs many one-sample forward passes; see the fixture in conftest.py.
pytestmark = pytest.mark.usefixtures("one_thread")

INFO = DataInfo(channels=3, height=32, width=32, num_classes=10)
SHAPE = (INFO.channels, INFO.height, INFO.width)
tv = torchvision.models


def small_vit() -> nn.Module:
    return tv.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                                num_classes=10)


# name → (builder, the classifier, the first layer that sees the input)
ARCHITECTURES: dict[str, tuple[Callable[[], nn.Module], str, str]] = {
    "efficientnet_b0": (lambda: tv.efficientnet_b0(num_classes=10), "classifier.1", "features.0.0"),
    "regnet_x_400mf": (lambda: tv.regnet_x_400mf(num_classes=10), "fc", "stem.0"),
    "vit": (small_vit, "heads.head", "conv_proj"),
    "timm_resnet10t": (lambda: timm.create_model("resnet10t", num_classes=10), "fc", "conv1.0"),
    "timm_mobilenetv3": (lambda: timm.create_model("mobilenetv3_small_050", num_classes=10), "classifier",
                         "conv_stem"),
    "timm_vit_tiny": (lambda: timm.create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, depth=2),
                      "head", "patch_embed.proj"),
    "timm_convnext_atto": (lambda: timm.create_model("convnext_atto", num_classes=10), "head.fc", "stem.0"),
    # 28 M parameters: one structured check only.
    "convnext_tiny": (lambda: tv.convnext_tiny(num_classes=10), "classifier.2", "features.0.0"),
}
HEAVY = {"convnext_tiny"}


def _norm(name: str, module: str, coupled: int) -> str:
    return (f"{name} and the {coupled} layers coupled to it: left dense: {module} normalizes over these channels, so "
            "removing some changes the rest")


# With keep_first=false: what each architecture leaves at full width, exactly as every step's notes say it.
DENSE: dict[str, list[str]] = {
    "efficientnet_b0": [],
    "regnet_x_400mf": [],
    # Transformers: only their MLPs' hidden layers are units, so the residual stream and fused q/k/v are no candidates.
    "vit": [],
    "timm_resnet10t": [],
    "timm_mobilenetv3": [],
    "timm_vit_tiny": [],
    "timm_convnext_atto": [_norm("stem.0", "stem.1 (LayerNorm2d)", 4),
                           _norm("stages.1.downsample.1", "stages.1.blocks.0.norm (LayerNorm2d)", 4),
                           _norm("stages.2.downsample.1", "stages.2.blocks.0.norm (LayerNorm2d)", 12),
                           _norm("stages.3.downsample.1", "stages.3.blocks.0.norm (LayerNorm2d)", 4)],
    "convnext_tiny": [_norm("features.0.0", "features.0.1 (LayerNorm2d)", 6),
                      _norm("features.2.1", "features.3.0.block.2 (LayerNorm)", 6),
                      _norm("features.4.1", "features.5.0.block.2 (LayerNorm)", 18),
                      _norm("features.6.1", "features.7.0.block.2 (LayerNorm)", 6)],
}

CHANNEL_LEVEL: dict[str, dict[str, Any]] = {
    "structured": {"keep_first": False},
    "activation": {"keep_first": False, "batches": 1},
    "taylor": {"granularity": "channel", "keep_first": False, "batches": 1},
    "random": {"granularity": "channel", "keep_first": False},
}


def randomize_norms(model: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters, so a removed channel would not read 0 by accident."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)) and m.weight is not None:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-1, 1)


@functools.lru_cache(maxsize=None)
def _built(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = ARCHITECTURES[name][0]()
    randomize_norms(model)
    return model.eval()


def fresh(name: str) -> nn.Module:
    """A copy of the model built once per session."""
    return copy.deepcopy(_built(name))


def strategy(name: str, **values: Any) -> Strategy:
    return build_strategy(component("strategy", name, **values))


def context() -> PruneContext:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, *SHAPE, generator=generator)
    y = torch.randint(0, INFO.num_classes, (4,), generator=generator)
    return PruneContext(DataLoader(TensorDataset(x, y), batch_size=4), nn.functional.cross_entropy,
                        torch.device("cpu"), seed=0)


def sized(names: list[str]) -> list[Any]:
    return [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in names]


def out_width(module: nn.Module) -> int:
    return getattr(module, "out_channels", getattr(module, "out_features", 0))


# --- what the traced graph finds ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sized(list(ARCHITECTURES)))
def test_the_classifier_and_the_first_layer_are_found_from_the_graph(name: str) -> None:
    _, classifier, first = ARCHITECTURES[name]
    graph = cg.trace(fresh(name), SHAPE)
    assert graph.outputs == {classifier}
    assert graph.first == first


class LinearThenFlatten(nn.Module):
    """The logits pass through a flatten and a log-softmax after the classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 8, 3), nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(torch.flatten(self.fc(self.conv(x).mean((2, 3))), 1), 1)


class ConvClassifier(nn.Module):
    """SqueezeNet's head: a 1×1 convolution makes the classes, then ReLU, pooling and a flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.head = nn.Sequential(nn.Dropout(), nn.Conv2d(8, 10, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x))


@pytest.mark.parametrize(("model", "classifier"), [
    (nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(),
                   nn.Linear(8, 10)), "5"),
    (LinearThenFlatten(), "fc"),
    (ConvClassifier(), "head.1"),
])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_the_classifier_is_the_layer_making_the_logits_whatever_follows_it(model: nn.Module, classifier: str,
                                                                          mode: str) -> None:
    model.train(mode == "train")
    graph = cg.trace(model, SHAPE)
    assert graph.outputs == {classifier}
    assert classifier not in strategy("structured", keep_first=False).units(model)


class LearnedQuery(nn.Module):
    """A linear layer runs on a learned query before any layer sees the input: it is not the first layer."""

    def __init__(self) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 8))
        self.project = nn.Linear(8, 8)
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query = self.project(self.query)
        return self.fc(self.conv2(torch.relu(self.conv1(x))).mean((2, 3)) + query)


def test_keep_first_keeps_the_first_layer_that_sees_the_input() -> None:
    model = LearnedQuery()
    graph = cg.trace(model, SHAPE)
    assert graph.order[0] == "project" and graph.first == "conv1"
    assert graph.groups == {"project": ("project", "conv2"), "conv1": ("conv1",), "fc": ("fc",)}
    for keep_first, units in ((True, ["project"]), (False, ["project", "conv1"])):
        s = strategy("structured", keep_first=keep_first)
        s.check(model, INFO)
        assert s.units(model) == units


# --- one 50% step, compacted, equal to the masked model ------------------------------------------------------------

def step_and_compact(s: Strategy, model: nn.Module) -> tuple[dict[str, torch.Tensor], nn.Module, list[str]]:
    """check(), one 50% step, compact(); every unit's layers lose exactly the channels its mask drops (in every
    group of a grouped convolution), and nothing else changes width."""
    s.check(model, INFO)
    masks, report = s.step(model, s.initial_masks(model, INFO), 0.5, 1.0, context())
    small = s.compact(model, masks, INFO)
    graph = s.graph(model)
    layers, before = dict(small.named_modules()), dict(model.named_modules())
    for unit, mask in masks.items():
        assert int(mask.sum()) == mask.numel() // 2
        for member in graph.groups[unit]:
            assert out_width(layers[member]) == graph.folds.get(unit, 1) * int(mask.sum())
    pruned = {m for unit in masks for m in graph.groups[unit]}
    assert all(out_width(layers[n]) == out_width(m) for n, m in before.items()
               if isinstance(m, cg.PRUNABLE) and n not in pruned and n in layers)
    return masks, small, report.notes


@pytest.mark.parametrize("name", sized(list(ARCHITECTURES)))
def test_structured_step_compacts_to_what_the_masked_model_computes(name: str) -> None:
    model = fresh(name)
    s = strategy("structured", **CHANNEL_LEVEL["structured"])
    masks, small, notes = step_and_compact(s, model)
    assert notes == DENSE[name]
    apply_masks(model, s.to_param_masks(model, masks))
    assert cg.output_gap(model, small, SHAPE) <= TOLERANCE
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    assert small(torch.zeros(2, *SHAPE)).shape == (2, 10)


@pytest.mark.parametrize("strategy_name", [key for key in CHANNEL_LEVEL if key != "structured"])
@pytest.mark.parametrize("name", [n for n in ARCHITECTURES if n not in HEAVY])
def test_data_driven_and_random_channel_steps_compact_exactly(name: str, strategy_name: str) -> None:
    # compact() masks a copy and raises unless its float64 outputs agree: the structured test restates it.
    _, _, notes = step_and_compact(strategy(strategy_name, **CHANNEL_LEVEL[strategy_name]), fresh(name))
    assert notes == DENSE[name]


def test_activation_scores_a_transformer_linear_by_its_features_not_its_tokens() -> None:
    model = fresh("vit")
    s = strategy("activation", keep_first=False, batches=1)
    s.check(model, INFO)
    scores = s.scores(model, s.initial_masks(model, INFO), context())
    assert {unit: tuple(score.shape) for unit, score in scores.items()} == {
        "encoder.layers.encoder_layer_0.mlp.0": (64,), "encoder.layers.encoder_layer_1.mlp.0": (64,)}


# --- strategy.exclude ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "exclude"), [
    ("regnet_x_400mf", ("trunk_output.block4.*",)),
    ("efficientnet_b0", ("features.1.*", "features.6.?.block.3.0")),
    ("vit", ("encoder.layers.encoder_layer_1.*",)),
    ("timm_resnet10t", ("layer4.*", "conv1.*")),
])
def test_excluded_globs_keep_their_layers_at_full_width(name: str, exclude: tuple[str, ...]) -> None:
    model = fresh(name)
    everything = strategy("structured", keep_first=False).units(model)
    s = strategy("structured", keep_first=False, exclude=exclude)
    graph = s.graph(model)

    def hit(layer: str) -> bool:
        return any(fnmatch.fnmatchcase(layer, pattern) for pattern in exclude)

    units = s.units(model)
    assert units == [u for u in everything if not any(hit(m) for m in graph.groups[u])] and len(units) < len(everything)
    _, small, _ = step_and_compact(s, model)
    layers = dict(small.named_modules())
    kept = [n for n, m in model.named_modules() if isinstance(m, cg.PRUNABLE) and hit(n)]
    assert kept and all(out_width(layers[n]) == out_width(dict(model.named_modules())[n]) for n in kept)


# --- grouped convolutions, attention, and what is left dense -------------------------------------------------------

class Grouped(nn.Module):
    """conv1 (1 → 4) → ReLU → grouped (4 → 4, 2 groups) → flatten → fc; 1×1 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 1, bias=False)
        self.grouped = nn.Conv2d(4, 4, 1, groups=2, bias=False)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.grouped(torch.relu(self.conv1(x))), 1))


def test_a_grouped_convolution_loses_the_same_positions_from_every_group() -> None:
    model = Grouped()
    with torch.no_grad():
        model.conv1.weight.copy_(torch.tensor([1.0, 4.0, 3.0, 2.0]).view(4, 1, 1, 1))
        model.grouped.weight.copy_(torch.tensor([[5.0, 1.0], [1.0, 1.0], [2.0, 2.0], [9.0, 9.0]]).view(4, 2, 1, 1))
    info = DataInfo(channels=1, height=1, width=1, num_classes=2)
    s = strategy("structured", keep_first=False)
    s.check(model, info)
    graph = s.graph(model)
    assert graph.folds == {"conv1": 2, "grouped": 2} and graph.widths == {"conv1": 2, "grouped": 2, "fc": 2}
    # conv1's positions score the mean of their channels in both groups: (1 + 3) / 2 and (4 + 2) / 2. grouped's:
    # channel norms 6, 2, 4, 18, so positions (6 + 4) / 2 and (2 + 18) / 2.
    assert s.scores(model, s.initial_masks(model, info), context()) == {
        "conv1": pytest.approx(torch.tensor([2.0, 3.0])), "grouped": pytest.approx(torch.tensor([5.0, 10.0]))}
    masks, _ = s.step(model, s.initial_masks(model, info), 0.5, 1.0, context())
    assert {unit: mask.tolist() for unit, mask in masks.items()} == {"conv1": [False, True], "grouped": [False, True]}
    params = s.to_param_masks(model, masks)
    assert params["conv1.weight"].flatten().tolist() == [False, True, False, True]
    assert params["grouped.weight"].flatten(1).tolist() == [[False, False], [False, True], [False, False],
                                                            [False, True]]
    small = s.compact(model, masks, info)
    assert small.conv1.weight.flatten().tolist() == [4.0, 2.0]
    assert (small.grouped.in_channels, small.grouped.out_channels, small.grouped.groups) == (2, 2, 2)
    assert small.grouped.weight.flatten().tolist() == [1.0, 9.0]
    apply_masks(model, params)
    assert cg.output_gap(model, small, (1, 1, 1)) <= TOLERANCE


def test_sensitivity_prunes_a_grouped_unit_the_same_way_in_every_group() -> None:
    model, info = Grouped(), DataInfo(channels=1, height=1, width=1, num_classes=2)
    s = strategy("structured", keep_first=False)
    s.check(model, info)
    analysis = analyse(model, s, (0.5,), lambda _: (1.0, 0.0), context(), info)
    # conv1 at one position less: its channels 0 and 2, and their two inputs to each of grouped's groups (4 weights).
    # grouped at one position less: its rows 0 and 2 (2 weights each) and fc's columns 0 and 2 (2 each).
    assert analysis.sizes == {"conv1": 2, "grouped": 2}
    assert [(p.unit, p.params_removed) for p in analysis.points] == [("conv1", 6), ("grouped", 8)]


class ChannelMultiplier(nn.Module):
    """conv1 (3 → 4) → a grouped convolution with one input channel per group (4 → 8, 4 groups) → pool → fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.spread = nn.Conv2d(4, 8, 3, groups=4)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.spread(torch.relu(self.conv1(x)))).mean((2, 3)))


def test_a_grouped_convolution_with_one_input_channel_per_group_keeps_its_inputs_and_loses_outputs() -> None:
    model = ChannelMultiplier()
    s = strategy("structured", keep_first=False)
    masks, small, notes = step_and_compact(s, model)
    assert {unit: mask.numel() for unit, mask in masks.items()} == {"spread": 2}
    assert (small.spread.in_channels, small.spread.out_channels, small.spread.groups) == (4, 4, 4)
    assert notes == ["conv1: left dense: spread (grouped convolution) has one of these 4 channels per group, so none "
                     "can go"]


class Attention(nn.Module):
    """An embedding (linear) feeding nn.MultiheadAttention, with no layer norm between."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 16, 8, stride=8)
        self.attention = nn.MultiheadAttention(16, 2, batch_first=True)
        self.hidden, self.fc = nn.Linear(16, 32), nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return self.fc(torch.relu(self.hidden(attended)).mean(1))


def test_a_model_with_multihead_attention_prunes_only_its_mlp_hidden_layer() -> None:
    model = Attention()
    s = strategy("structured", keep_first=False)
    masks, _, notes = step_and_compact(s, model)
    # A transformer's embedding is its residual stream: no candidate, so no note says it stays dense.
    assert list(masks) == ["hidden"] and notes == []


class HardCodedView(nn.Module):
    """conv2's channels meet a view of a fixed size: torch-pruning removes them, and the view then fails."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 32 * 32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv2(torch.relu(self.conv1(x))).view(-1, 4 * 32 * 32))


def test_a_unit_that_fails_the_trial_is_left_dense_and_the_rest_is_pruned() -> None:
    model = HardCodedView()
    s = strategy("structured", keep_first=False)
    masks, small, notes = step_and_compact(s, model)
    assert list(masks) == ["conv1"] and small.conv2.out_channels == 4
    # torch-pruning shrinks fc to conv2's kept channels, but the view still makes rows of 4 × 32 × 32.
    assert notes == ["conv2: left dense: compacting fails: RuntimeError: mat1 and mat2 shapes cannot be multiplied "
                     "(3x4096 and 3072x10)"]


def test_strategy_layers_naming_a_dense_layer_is_a_one_line_error() -> None:
    with pytest.raises(UserError) as error:
        strategy("structured", keep_first=False, layers={"stages.1.downsample.1": 0.3}).check(
            fresh("timm_convnext_atto"), INFO)
    assert str(error.value) == (
        "strategy.layers.stages.1.downsample.1: cannot be pruned here (stages.1.blocks.0.norm (LayerNorm2d) normalizes "
        "over these channels, so removing some changes the rest); remove it from strategy.layers")


# --- the compacted checkpoint's rebuild -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["regnet_x_400mf", "vit"])
def test_a_fresh_model_rebuilds_the_compacted_one_from_its_unit_masks(name: str) -> None:
    # What pruning/compacted.py does on load once the architecture is built from the registry: the same
    # torch-pruning call on a fresh model, then the compacted weights.
    model = fresh(name)
    s = strategy("structured", keep_first=False)
    s.check(model, INFO)
    masks, _ = s.step(model, s.initial_masks(model, INFO), 0.5, 1.0, context())
    small = s.compact(model, masks, INFO)
    rebuilt = ARCHITECTURES[name][0]()
    cg.remove_in_place(rebuilt, SHAPE, {unit: (~mask).nonzero().flatten().tolist() for unit, mask in masks.items()})
    rebuilt.load_state_dict(small.state_dict())
    assert cg.output_gap(rebuilt, small, SHAPE) == 0.0


# --- token inputs (the tracer's side of channel strategies on language models) -------------------------------------

class Tokens(nn.Module):
    """Token ids → an embedding of 4 → Linear 8 → ReLU → Linear to the vocabulary of 7, per position."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.fc1, self.fc2 = nn.Embedding(7, 4), nn.Linear(4, 8), nn.Linear(8, 7)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(self.emb(idx))))


def test_the_graph_traces_and_removes_channels_on_token_ids_from_the_data_s_examples() -> None:
    # A shape only makes float inputs; DataInfo.example makes the data's own (int64 ids). Channel strategies still
    # refuse language models (ChannelStrategy._remember); this is the part they would trace with.
    text = DataInfo(channels=1, height=1, width=6, num_classes=7, vocab=7)
    torch.manual_seed(0)
    model = Tokens()
    graph = cg.trace(model, text.example)
    assert (graph.order, graph.outputs, graph.first, graph.widths) == (("fc1", "fc2"), {"fc2"}, "fc1",
                                                                       {"fc1": 8, "fc2": 7})
    small = cg.remove_channels(model, text.example, {"fc1": [0, 3, 5]})
    assert (small.fc1.out_features, small.fc2.in_features) == (5, 5)
    masked = copy.deepcopy(model)
    apply_masks(masked, cg.kept_entries(model, text.example, {"fc1": [0, 3, 5]}))
    assert cg.output_gap(masked, small, text.example) == 0.0
    assert cg.output_gap(model, small, text.example) > 0.1  # the batch holds ids that reach the removed channels
