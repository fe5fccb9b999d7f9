"""The field's standard models: published sizes exactly, stems that follow the data, and every strategy prunes each
of them in one step (channel strategies compacting to a model that computes what the masked one does)."""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from conftest import component, model_of

from progprune_cli.data import DataInfo
from progprune_cli.pruning.masks import Masks, apply_masks
from progprune_cli.pruning.strategies import PruneContext, Strategy, build_strategy
from progprune_cli.pruning.strategies import channel_graph as cg
from progprune_cli.pruning.strategies.channels import TOLERANCE
from progprune_cli.sensitivity.analysis import analyse

MNIST = DataInfo(channels=1, height=28, width=28, num_classes=10)
CIFAR = DataInfo(channels=3, height=32, width=32, num_classes=10)
IMAGENET = DataInfo(channels=3, height=224, width=224, num_classes=1000)


CIFAR_RESNETS = ["resnet20", "resnet32", "resnet56", "resnet110"]
ZOO = ["lenet300", "lenet5", *CIFAR_RESNETS, "vgg11", "vgg16", "resnet18", "mobilenet_v2"]
# The pruning steps below run on resnet20 and resnet56 of the CIFAR ResNets: resnet32 and resnet110 are the same code
# with another block count (tests/test_export.py checks the family holds no module type resnet20 lacks), and each
# costs 1-1.5 s per case here.
PRUNED_ZOO = [name for name in ZOO if name not in ("resnet32", "resnet110")]


# Tracing runs many one-sample forward passes; see the fixture in conftest.py.
pytestmark = pytest.mark.usefixtures("one_thread")


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- sizes --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "options", "info", "count"), [
    ("lenet300", {}, MNIST, 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10),  # 266,610
    ("lenet5", {}, MNIST, (20 * 25 + 20) + (50 * 20 * 25 + 50) + (50 * 4 * 4 * 500 + 500) + (500 * 10 + 10)),
    # Option A is the paper's 0.27 / 0.46 / 0.85 / 1.7 M; option B's two 1×1 projections and their batch-norms add
    # 16·32 + 2·32 + 32·64 + 2·64 = 2,752 whatever the depth.
    ("resnet20", {"shortcut": "A"}, CIFAR, 269_722),
    ("resnet32", {"shortcut": "A"}, CIFAR, 464_154),
    ("resnet56", {"shortcut": "A"}, CIFAR, 853_018),
    ("resnet110", {"shortcut": "A"}, CIFAR, 1_727_962),
    ("resnet20", {}, CIFAR, 269_722 + 2_752),
    ("resnet32", {}, CIFAR, 464_154 + 2_752),
    ("resnet56", {}, CIFAR, 853_018 + 2_752),
    ("resnet110", {}, CIFAR, 1_727_962 + 2_752),
    ("vgg11", {}, CIFAR, 9_492_042),
    ("vgg16", {}, CIFAR, 14_987_722),  # Li et al. 2017: 1.5 × 10^7
    ("resnet18", {}, IMAGENET, 11_689_512),  # torchvision's published sizes
    ("mobilenet_v2", {}, IMAGENET, 3_504_872),
    # The small stem: resnet18 trades the 7×7 conv for a 3×3 one (64·3·(49 − 9) fewer); mobilenet's stride only.
    ("resnet18", {}, CIFAR, 11_173_962),
    ("resnet18", {"small_input": False}, CIFAR, 11_173_962 + 64 * 3 * 40),
    ("mobilenet_v2", {}, CIFAR, 2_236_682),
    ("mobilenet_v2", {"small_input": False}, CIFAR, 2_236_682),
])
def test_exact_parameter_counts_on_the_papers_inputs(name: str, options: dict, info: DataInfo, count: int) -> None:
    model = model_of(name, options, info).eval()
    assert params(model) == count
    with torch.no_grad():
        assert model(torch.zeros(1, info.channels, info.height, info.width)).shape == (1, info.num_classes)


@pytest.mark.parametrize(("name", "first", "width"), [
    ("lenet300", "1", 32 * 32), ("lenet5", "conv1", 1), ("resnet20", "conv1", 1), ("vgg11", "features.0", 1),
    ("resnet18", "conv1", 1), ("mobilenet_v2", "features.0.0", 1),
])
def test_input_channels_and_classes_come_from_the_data(name: str, first: str, width: int) -> None:
    info = DataInfo(channels=1, height=32, width=32, num_classes=7)
    model = model_of(name, {}, info).eval()
    layer = dict(model.named_modules())[first]
    assert getattr(layer, "in_channels", getattr(layer, "in_features", None)) == width
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 7)


def test_resnet18_small_input_stem_follows_the_width_unless_set() -> None:
    def stem(options: dict, side: int, channels: int = 3) -> tuple:
        model = model_of("resnet18", options, DataInfo(channels, side, side, 10))
        return model.conv1.in_channels, model.conv1.kernel_size, model.conv1.stride, type(model.maxpool).__name__

    assert stem({}, 64) == stem({"small_input": None}, 32) == (3, (3, 3), (1, 1), "Identity")
    assert stem({}, 65) == stem({"small_input": False}, 32) == (3, (7, 7), (2, 2), "MaxPool2d")
    assert stem({"small_input": True}, 224) == (3, (3, 3), (1, 1), "Identity")
    assert stem({}, 96, channels=1) == (1, (7, 7), (2, 2), "MaxPool2d")


def test_mobilenet_v2_small_input_makes_the_first_conv_stride_1() -> None:
    def first(options: dict, side: int, channels: int = 3) -> tuple:
        conv = model_of("mobilenet_v2", options, DataInfo(channels, side, side, 10)).features[0][0]
        return conv.in_channels, conv.kernel_size, conv.stride

    assert first({}, 64) == first({"small_input": None}, 32) == (3, (3, 3), (1, 1))
    assert first({}, 65) == first({"small_input": False}, 32) == (3, (3, 3), (2, 2))
    assert first({}, 96, channels=1) == (1, (3, 3), (2, 2))


def test_option_a_shortcut_is_zero_padded_identity_on_every_second_pixel() -> None:
    block = model_of("resnet20", {"shortcut": "A"}, CIFAR).layer2[0]
    x = torch.randn(2, 16, 8, 8)
    out = block.shortcut(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert not out[:, :8].any() and not out[:, 24:].any()


def test_channel_strategies_prune_option_a_only_inside_the_blocks() -> None:
    # Torch-pruning reads the zero-padding as identity, so every stage's residual channels join conv1's unit, which
    # keep_first keeps: what is left are the blocks' own channels, and those compact exactly.
    torch.manual_seed(0)
    info = tiny("resnet20")
    model = model_of("resnet20", {"shortcut": "A"}, info)
    randomize_batchnorm(model)
    s = build("structured", {})
    s.check(model, info)
    assert s.units(model) == [f"layer{stage}.{block}.conv1" for stage in (1, 2, 3) for block in range(3)]
    masks, _ = s.step(model, s.initial_masks(model, info), 0.5, 1.0, context(info))
    apply_masks(model, s.to_param_masks(model, masks))
    small = s.compact(model, masks, info)
    assert [small.layer3[b].conv1.out_channels for b in range(3)] == [32, 32, 32]
    assert small.fc.in_features == 64
    assert cg.output_gap(model, small, (info.channels, info.height, info.width)) <= TOLERANCE


def test_channel_strategies_leave_option_a_residual_channels_dense_and_say_why() -> None:
    # keep_first=false offers conv1's unit (every stage's residual channels), which the zero-padding shortcut cannot
    # lose: the run goes on with the blocks' own channels, and every step's notes name the unit left dense and why.
    s = build("structured", {"keep_first": False})
    model = model_of("resnet20", {"shortcut": "A"}, CIFAR)
    s.check(model, CIFAR)
    assert s.units(model) == [f"layer{stage}.{block}.conv1" for stage in (1, 2, 3) for block in range(3)]
    note = ("conv1 and the 9 layers coupled to it: left dense: compacting fails: RuntimeError: model.shortcut=A: the "
            "zero-padding shortcut expects 16 channels, got 15; removing residual channels needs model.shortcut=B")
    _, report = s.step(model, s.initial_masks(model, CIFAR), 0.5, 1.0, context(CIFAR))
    assert report.notes == [note]
    # The sensitivity analysis measures only the units it can prune; its notes say which one is missing and why.
    analysis = analyse(model, s, (0.5,), lambda _: (0.5, 1.0), context(CIFAR), CIFAR)
    assert [p.unit for p in analysis.points] == s.units(model)  # conv1's unit is not among them
    assert analysis.notes[0] == note


@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_yaml_builds_with_its_defaults(name: str) -> None:
    model = model_of(name, {}, MNIST if name.startswith("lenet") else CIFAR)  # its YAML's values
    assert params(model) == {"lenet300": 266_610, "lenet5": 431_080, "resnet20": 272_474, "resnet32": 466_906,
                             "resnet56": 855_770, "resnet110": 1_730_714, "vgg11": 9_492_042, "vgg16": 14_987_722,
                             "resnet18": 11_173_962, "mobilenet_v2": 2_236_682}[name]


# --- one pruning step with every strategy -------------------------------------------------------------------------

WEIGHT_LEVEL: dict[str, dict[str, Any]] = {
    "weight": {},
    "taylor": {"granularity": "weight", "batches": 1},
    "random": {"granularity": "weight"},
}
CHANNEL_LEVEL: dict[str, dict[str, Any]] = {
    "structured": {"keep_first": False},
    "activation": {"keep_first": False, "batches": 1},
    "taylor": {"granularity": "channel", "keep_first": False, "batches": 1},
    "random": {"granularity": "channel", "keep_first": False},
}
# The larger members of each family: their code is what the smaller ones run, only deeper or wider.
SLOW = {"resnet56", "resnet110", "vgg16", "resnet18"}


def tiny(name: str) -> DataInfo:
    """The smallest input each model takes: pruning and compaction depend on the structure, not the size."""
    side = 16 if name.startswith(("lenet5", "vgg")) else 8  # LeNet-5's valid convs and VGG's four pools need 16
    return DataInfo(channels=1 if name.startswith("lenet") else 3, height=side, width=side, num_classes=10)


def context(info: DataInfo) -> PruneContext:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, info.channels, info.height, info.width, generator=generator)
    y = torch.randint(0, info.num_classes, (4,), generator=generator)
    return PruneContext(DataLoader(TensorDataset(x, y), batch_size=4), nn.functional.cross_entropy,
                        torch.device("cpu"), seed=0)


def randomize_batchnorm(model: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters, so a removed channel would not read 0 by accident."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-1, 1)


def build(name: str, options: dict[str, Any], threshold: float | None = None) -> Strategy:
    return build_strategy(component("strategy", name, threshold=threshold, **options))


def sized(names: list[str]) -> list[Any]:
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


@functools.lru_cache(maxsize=None)
def _built(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = model_of(name, {}, tiny(name))
    randomize_batchnorm(model)
    return model


def fresh(name: str) -> tuple[nn.Module, DataInfo]:
    """A copy of the model built once per session (initialising VGG-16's 15 M weights is not what is tested)."""
    return copy.deepcopy(_built(name)), tiny(name)


@pytest.mark.parametrize("strategy", list(WEIGHT_LEVEL))
@pytest.mark.parametrize("name", sized(PRUNED_ZOO))
def test_weight_level_step_keeps_exactly_the_entries_scoring_at_least_the_threshold(name: str, strategy: str) -> None:
    # Threshold mode, at the median score: a sparsity target would sort every one of VGG-16's 15 M weights.
    model, info = fresh(name)
    data = context(info)
    probe = build(strategy, WEIGHT_LEVEL[strategy])
    probe.check(model, info)
    masks = probe.initial_masks(model, info)
    assert set(masks) == {n for n, p in model.named_parameters() if p.dim() > 1}
    scores = probe.scores(model, masks, data)
    flat = torch.cat([score.flatten() for score in scores.values()])
    # About the median score, from an even sample of them; Taylor scores are 0 behind a ReLU that never fires, and a
    # threshold of 0 would keep everything.
    sample = flat[:: max(1, flat.numel() // 65536)]
    threshold = float(sample[sample > 0].median())
    s = build(strategy, WEIGHT_LEVEL[strategy], threshold)
    new, report = s.step(model, masks, threshold, 1.0, data)
    expected = {unit: score >= threshold for unit, score in scores.items()}
    emptied = [unit for unit, keep in expected.items() if not keep.any()]
    for unit in emptied:  # the zero-width guard keeps such a unit's best entry (e.g. a classifier initialised small)
        expected[unit].view(-1)[scores[unit].argmax()] = True
    assert report.notes == [f"{unit}: would be pruned to zero; kept its 1 highest-scoring entries" for unit in emptied]
    assert all(torch.equal(new[unit], expected[unit]) for unit in scores)
    kept = sum(int(keep.sum()) for keep in expected.values())
    assert 0 < report.achieved == 1 - kept / flat.numel() < 1
    apply_masks(model, s.to_param_masks(model, new))
    params_of = dict(model.named_parameters())
    assert all(torch.equal(params_of[unit], params_of[unit] * keep) for unit, keep in new.items())  # zero where pruned
    assert s.compact(model, new, info) is None


def step_half_and_compact(s: Strategy, model: nn.Module, info: DataInfo) -> tuple[Masks, nn.Module]:
    """One 50% step: exactly half of every unit goes (all are an even number of channels wide), and compact()
    (which masks a copy as the runner does and raises unless the float64 outputs agree) halves each unit's layer."""
    masks, report = s.step(model, s.initial_masks(model, info), 0.5, 1.0, context(info))
    assert report.notes == [] and report.achieved == 0.5
    assert all(int(mask.sum()) * 2 == mask.numel() for mask in masks.values())
    small = s.compact(model, masks, info)
    layers = dict(small.named_modules())
    widths = {unit: getattr(layers[unit], "out_channels", getattr(layers[unit], "out_features", None))
              for unit in masks}
    assert widths == {unit: mask.numel() // 2 for unit, mask in masks.items()}
    return masks, small


@pytest.mark.parametrize("name", sized(PRUNED_ZOO))
def test_structured_checks_prunes_and_compacts_to_what_the_masked_model_computes(name: str) -> None:
    # As the runner does: check() before training (trace, then compact one trial channel of every unit and compare
    # outputs), a step, compaction. compact() masks a copy itself; here the model is masked too, as training leaves
    # it, and the float64 comparison is restated.
    model, info = fresh(name)
    s = build("structured", CHANNEL_LEVEL["structured"])
    s.check(model, info)
    masks, small = step_half_and_compact(s, model, info)
    apply_masks(model, s.to_param_masks(model, masks))
    assert cg.output_gap(model, small, (info.channels, info.height, info.width)) <= TOLERANCE


@pytest.mark.parametrize("strategy", [key for key in CHANNEL_LEVEL if key != "structured"])
@pytest.mark.parametrize("name", sized(PRUNED_ZOO))
def test_data_driven_and_random_channel_steps_compact_exactly(name: str, strategy: str) -> None:
    # check() and the masked comparison do not depend on the scores: the structured test above covers them.
    model, info = fresh(name)
    step_half_and_compact(build(strategy, CHANNEL_LEVEL[strategy]), model, info)
