"""The transformer and sequence models (gpt, lstm, vit): shapes, exact causality and parameter counts, one-line
refusals of the wrong data, the real YAMLs, and the measurement and weight-pruning paths on them."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from conftest import component, composed, model_of
from torch import nn

from progprune_cli.config.load import load_run_config
from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError
from progprune_cli.measure.macs import layer_table
from progprune_cli.parts import check_forward
from progprune_cli.pruning.masks import apply_masks
from progprune_cli.pruning.strategies import PruneContext, build_strategy

TEXT = DataInfo(channels=1, height=1, width=16, num_classes=11, vocab=11)  # block 16, vocabulary 11
CIFAR = DataInfo(channels=3, height=32, width=32, num_classes=10)
MNIST = DataInfo(channels=1, height=28, width=28, num_classes=10)
TINY_GPT = {"n_layer": 1, "n_head": 2, "n_embd": 8}
TINY_LSTM = {"layers": 2, "hidden": 8}
TINY_VIT = {"patch_size": 8, "layers": 1, "heads": 2, "hidden_dim": 8, "mlp_dim": 16}
TINY = {"gpt": TINY_GPT, "lstm": TINY_LSTM, "vit": TINY_VIT}

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(name: str, info: DataInfo, **values: Any) -> nn.Module:
    torch.manual_seed(0)
    return model_of(name, {**TINY[name], **values}, info)


# --- the YAMLs ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "values"), [
    ("gpt", {"n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0, "bias": True}),
    ("lstm", {"layers": 2, "hidden": 256, "dropout": 0.0}),
    ("vit", {"patch_size": 4, "layers": 6, "heads": 4, "hidden_dim": 128, "mlp_dim": 256, "dropout": 0.0}),
])
def test_the_yamls_compose_on_their_schemas(name: str, values: dict[str, Any]) -> None:
    expected = {"name": name, "weights": None, **values}
    assert composed(f"model={name}")["model"] == expected
    cfg = component("model", name)
    assert {key: getattr(cfg, key) for key in expected} == expected
    assert load_run_config(composed(f"model={name}", "model.dropout=0.25")).model.dropout == 0.25


def test_the_context_length_is_the_data_s_not_a_model_key() -> None:
    with pytest.raises(UserError) as error:
        component("model", "gpt", block_size=64)
    assert str(error.value) == ("model.block_size: unknown key; allowed keys are bias, dropout, n_embd, n_head, "
                                "n_layer, name, weights")
    assert tiny("gpt", TEXT).pos.num_embeddings == 16


# --- shapes and parameter counts ---------------------------------------------------------------------------------

def test_gpt_parameter_count_is_hand_computed() -> None:
    # vocab 11, block 16, one block of width 8 (2 heads), MLP 32 wide:
    tok, pos = 11 * 8, 16 * 8
    attention = 4 * (8 * 8 + 8)  # q, k, v, proj with biases
    mlp = (8 * 32 + 32) + (32 * 8 + 8)
    norms = 3 * (8 + 8)  # ln_1, ln_2, ln_f: weight and bias
    lm_head = 8 * 11  # no bias, not tied to tok
    assert tok + pos + attention + mlp + norms + lm_head == 1192
    assert sum(p.numel() for p in tiny("gpt", TEXT).parameters()) == 1192
    biases = 4 * 8 + 32 + 8 + 3 * 8
    assert sum(p.numel() for p in tiny("gpt", TEXT, bias=False).parameters()) == 1192 - biases == 1096


def test_gpt_weights_are_not_tied() -> None:
    model = tiny("gpt", TEXT)
    assert model.lm_head.weight.data_ptr() != model.tok.weight.data_ptr()
    names = [name for name, _ in model.named_parameters()]
    assert "lm_head.weight" in names and "tok.weight" in names


@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_language_models_return_logits_per_position(name: str) -> None:
    model = tiny(name, TEXT).eval()
    assert model(TEXT.example(3, seed=0)).shape == (3, 16, 11)
    assert model(TEXT.example(3, seed=0)[:, :5]).shape == (3, 5, 11)  # shorter than the block
    check_forward(model, TEXT, name)


@pytest.mark.parametrize(("info", "patch", "params"), [
    # conv_proj + class token + positions + [ln_1, in_proj, out_proj, ln_2, MLP] + final ln + head
    (CIFAR, 8, (3 * 64 * 8 + 8) + 8 + 17 * 8 + (16 + 3 * 8 * 8 + 24 + 8 * 8 + 8 + 16 + 8 * 16 + 16 + 16 * 8 + 8)
     + 16 + (8 * 10 + 10)),
    (MNIST, 7, (1 * 49 * 8 + 8) + 8 + 17 * 8 + (16 + 3 * 8 * 8 + 24 + 8 * 8 + 8 + 16 + 8 * 16 + 16 + 16 * 8 + 8)
     + 16 + (8 * 10 + 10)),
])
def test_vit_takes_the_data_s_side_and_channels(info: DataInfo, patch: int, params: int) -> None:
    model = tiny("vit", info, patch_size=patch)
    assert (model.image_size, model.conv_proj.in_channels, model.conv_proj.kernel_size) == (
        info.width, info.channels, (patch, patch))
    assert sum(p.numel() for p in model.parameters()) == params
    assert model(info.example(2, seed=0)).shape == (2, 10)
    check_forward(model, info, "vit")


# --- causality ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["gpt", "lstm"])
@pytest.mark.parametrize("t", [0, 5, 15])
def test_a_token_changes_no_logit_before_it(name: str, t: int) -> None:
    model = tiny(name, TEXT).double().eval()
    x = TEXT.example(2, seed=1)
    changed = x.clone()
    changed[:, t] = (x[:, t] + 1) % TEXT.vocab
    with torch.no_grad():
        before, after = model(x), model(changed)
    assert torch.equal(before[:, :t], after[:, :t])  # exactly: nothing at all flows back from position t
    assert not torch.equal(before[:, t], after[:, t])


# --- the wrong data, bad sizes -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "info", "message"), [
    ("gpt", CIFAR, "model=gpt: needs token data (dataset=text); got 3×32×32 images"),
    ("lstm", MNIST, "model=lstm: needs token data (dataset=text); got 1×28×28 images"),
    ("vit", TEXT, "model=vit: needs images; got sequences of 16 tokens (vocabulary 11)"),
])
def test_each_model_refuses_the_other_kind_of_data(name: str, info: DataInfo, message: str) -> None:
    with pytest.raises(UserError) as error:
        tiny(name, info)
    assert str(error.value) == message


@pytest.mark.parametrize(("name", "info", "values", "message"), [
    ("vit", CIFAR, {"patch_size": 5},
     "model.patch_size: got 5; must divide the side of square images; the data's are 3×32×32"),
    ("vit", DataInfo(channels=3, height=32, width=28, num_classes=10), {"patch_size": 4},
     "model.patch_size: got 4; must divide the side of square images; the data's are 3×32×28"),
    ("vit", CIFAR, {"heads": 3}, "model.heads: got 3; must divide model.hidden_dim (8)"),
    ("gpt", TEXT, {"n_head": 3}, "model.n_head: got 3; must divide model.n_embd (8)"),
    ("gpt", TEXT, {"n_layer": 0}, "model.n_layer: got 0; every size must be >= 1"),
    ("gpt", TEXT, {"dropout": 1.0}, "model.dropout: got 1.0; must be in [0, 1)"),
    ("lstm", TEXT, {"dropout": -0.1}, "model.dropout: got -0.1; must be in [0, 1)"),
    ("vit", CIFAR, {"dropout": 1.5}, "model.dropout: got 1.5; must be in [0, 1)"),
])
def test_bad_sizes_are_one_line_errors(name: str, info: DataInfo, values: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError) as error:
        tiny(name, info, **values)
    assert str(error.value) == message


# --- measurement and weight pruning ------------------------------------------------------------------------------

def test_the_layer_table_counts_every_position_of_a_sequence() -> None:
    rows = {row["name"]: row for row in layer_table(tiny("gpt", TEXT), TEXT.example(1))}
    assert list(rows) == ["blocks.0.attn.q", "blocks.0.attn.k", "blocks.0.attn.v", "blocks.0.attn.proj",
                          "blocks.0.mlp.0", "blocks.0.mlp.2", "lm_head"]
    assert [rows[name]["macs_dense"] for name in rows] == [16 * 8 * 8] * 4 + [16 * 8 * 32] * 2 + [16 * 8 * 11]
    # The LSTM's matrices (4·8 × 8 each) once per step of 16; the head 16 × 8 × 11.
    assert [(row["name"], row["macs_dense"]) for row in layer_table(tiny("lstm", TEXT), TEXT.example(1))] == [
        ("lstm.weight_ih_l0", 16 * 32 * 8), ("lstm.weight_hh_l0", 16 * 32 * 8), ("lstm.weight_ih_l1", 16 * 32 * 8),
        ("lstm.weight_hh_l1", 16 * 32 * 8), ("head", 16 * 8 * 11)]


def weight_step(model: nn.Module, info: DataInfo) -> tuple[list[str], dict[str, torch.Tensor]]:
    """One 50% weight-magnitude step (layer scope), masks applied: the units and their masks."""
    strategy = build_strategy(component("strategy", "weight", sparsity=0.5))
    strategy.check(model, info)
    batch = [(info.example(2, seed=0), torch.zeros(2, dtype=torch.long))]
    ctx = PruneContext(batch, lambda out, y: out.sum(), torch.device("cpu"), 0)
    masks, report = strategy.step(model, strategy.initial_masks(model, info), 0.5, 1.0, ctx)
    apply_masks(model, strategy.to_param_masks(model, masks))
    assert report.achieved == 0.5
    return strategy.units(model), masks


def test_weight_pruning_masks_every_gpt_matrix() -> None:
    model = tiny("gpt", TEXT)
    units, masks = weight_step(model, TEXT)
    assert units == ["tok.weight", "pos.weight", "blocks.0.attn.q.weight", "blocks.0.attn.k.weight",
                     "blocks.0.attn.v.weight", "blocks.0.attn.proj.weight", "blocks.0.mlp.0.weight",
                     "blocks.0.mlp.2.weight", "lm_head.weight"]
    params = dict(model.named_parameters())
    for unit in units:
        assert int(params[unit].count_nonzero()) == params[unit].numel() // 2 == int(masks[unit].sum()), unit
    assert torch.isfinite(model(TEXT.example(2, seed=1))).all()


def test_weight_pruning_masks_vit_attention_output_projection() -> None:
    # nn.MultiheadAttention never calls out_proj (it reads out_proj.weight itself): a mask is still in force,
    # since masks zero the parameter in place.
    model = tiny("vit", CIFAR).eval()
    name = "encoder.layers.encoder_layer_0.self_attention.out_proj.weight"
    x = CIFAR.example(2, seed=1)
    with torch.no_grad():
        nn.init.normal_(model.heads.head.weight)  # torchvision zero-initialises the head: the output would be 0
        dense_out = model(x)
    units, masks = weight_step(model, CIFAR)
    assert name in units
    out_proj = dict(model.named_parameters())[name]
    assert int(out_proj.count_nonzero()) == 32 == int(masks[name].sum())
    in_proj = name.replace("out_proj.weight", "in_proj_weight")  # the fused q/k/v input projection, 3·8 × 8
    assert int(dict(model.named_parameters())[in_proj].count_nonzero()) == 96 == int(masks[in_proj].sum())
    with torch.no_grad():
        assert not torch.equal(model(x), dense_out)
