"""Parts-in models: sizes come from the data, parameter counts are exact, bad sizes fail in one line."""

from __future__ import annotations

import pytest
import torch

from conftest import model_of
from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError

DIGITS = DataInfo(channels=1, height=8, width=8, num_classes=10)
CIFAR = DataInfo(channels=3, height=32, width=32, num_classes=10)


@pytest.mark.parametrize(("name", "info", "params"), [
    ("simple_cnn", DIGITS, 320 + 32 * 3 * 3 * 10 + 10),      # conv 1→32 3×3, then Linear(32·3·3 → 10)
    ("two_conv_cnn", DIGITS, 320 + 9248 + 32 * 2 * 2 * 10 + 10),
    ("two_conv_cnn", CIFAR, 896 + 9248 + 32 * 8 * 8 * 10 + 10),  # the seed's CIFAR CNN: ~31 thousand, not 12 M
    ("mlp", DIGITS, 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10),
])
def test_exact_parameter_counts_from_the_data_shape(name: str, info: DataInfo, params: int) -> None:
    model = model_of(name, {}, info)
    assert sum(p.numel() for p in model.parameters()) == params
    out = model(torch.zeros(2, info.channels, info.height, info.width))
    assert out.shape == (2, info.num_classes)


@pytest.mark.parametrize(("name", "options", "message"), [
    ("simple_cnn", {"channels": 0}, "model.channels: got 0; every size must be >= 1"),
    ("two_conv_cnn", {"channels": -2}, "model.channels: got -2; every size must be >= 1"),
    ("resnet_tiny", {"width": 0}, "model.width: got 0; every size must be >= 1"),
    ("mlp", {"hidden": [64, 0]}, "model.hidden: got [64, 0]; every size must be >= 1"),
    ("mlp", {"widths": [64]}, "model.widths: unknown key; allowed keys are hidden, name, weights"),
    ("mobilenet_v2", {"small_input": "maybe"}, "model.small_input: got 'maybe'; expected true or false or null"),
    ("resnet18", {"width": 32}, "model.width: unknown key; allowed keys are name, small_input, weights"),
    ("resnet20", {"shortcut": "C"}, "model.shortcut: got 'C'; allowed values are A, B"),
    ("resnet110", {"blocks": 4}, "model.blocks: unknown key; allowed keys are name, shortcut, weights"),
    ("lenet300", {"hidden": [300, 100]}, "model.hidden: unknown key; allowed keys are name, weights"),
    ("lenet5", {"channels": 20}, "model.channels: unknown key; allowed keys are name, weights"),
    ("vgg16", {"depth": 19}, "model.depth: unknown key; allowed keys are name, weights"),
])
def test_bad_model_options_are_one_line_errors(name: str, options: dict, message: str) -> None:
    with pytest.raises(UserError) as error:
        model_of(name, options, DIGITS)
    assert str(error.value) == message


@pytest.mark.parametrize(("name", "info", "message"), [
    ("two_conv_cnn", DataInfo(channels=1, height=3, width=3, num_classes=2),
     "model=two_conv_cnn: input 3x3 is too small (needs >= 4x4)"),
    ("lenet5", DIGITS, "model=lenet5: input 8x8 is too small (needs >= 16x16)"),
    ("vgg11", DataInfo(channels=3, height=32, width=15, num_classes=10),
     "model=vgg11: input 32x15 is too small (needs >= 16x16)"),
    ("vgg16", DIGITS, "model=vgg16: input 8x8 is too small (needs >= 16x16)"),
])
def test_input_too_small_names_the_model(name: str, info: DataInfo, message: str) -> None:
    with pytest.raises(UserError) as error:
        model_of(name, {}, info)
    assert str(error.value) == message


def test_a_false_switch_is_not_a_size() -> None:
    # bool is an int: model_options must not read `small_input: false` as a size below 1.
    model = model_of("resnet18", {"small_input": False}, CIFAR)
    assert model.conv1.kernel_size == (7, 7)
