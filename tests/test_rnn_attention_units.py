"""The weight matrices nn.LSTM and nn.MultiheadAttention read themselves (`lstm.weight_ih_l0`, `in_proj_weight`):
units of weight strategies, masked in place so the modules compute with the masked weights, and rows of the layer
table with hand-computed MACs."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from conftest import component, model_of
from torch import nn

from progprune_cli.data import DataInfo
from progprune_cli.measure.macs import layer_table, macs_summary
from progprune_cli.measure.sparse_kernels import max_abs_diff, sparsify_linears
from progprune_cli.pruning.masks import apply_masks
from progprune_cli.pruning.strategies import PruneContext, build_strategy

pytestmark = pytest.mark.usefixtures("one_thread")
CTX = PruneContext(loader=[], loss_fn=nn.functional.cross_entropy, device=torch.device("cpu"), seed=0)
ROW_KEYS = ("name", "type", "shape", "params", "nonzero", "sparsity", "macs_dense", "macs_effective")
STEPS = 5  # time steps / query positions of the inputs below


class TinyLSTM(nn.Module):
    """(batch, 5, 3) → a 2-layer bidirectional LSTM of hidden size 2 → a head of 4 per step."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 2, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0])


class TinyAttention(nn.Module):
    """(batch, 5, 3) → a linear embedding to 4 → self-attention (fused q/k/v), attention over the first 2 positions
    (fused, so its k and v thirds see 2 rows while q sees 5) and attention with separate q/k/v weights (kdim 3,
    vdim 5): three nn.MultiheadAttention of width 4 and 2 heads."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(3, 4)
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)
        self.cross = nn.MultiheadAttention(4, 2, batch_first=True)
        self.separate = nn.MultiheadAttention(4, 2, kdim=3, vdim=5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        h = h + self.attn(h, h, h, need_weights=False)[0]
        h = h + self.cross(h, h[:, :2], h[:, :2], need_weights=False)[0]
        value = torch.cat([x, x[..., :2]], -1)  # 5 features: vdim
        return h + self.separate(query=h, key=x, value=value, need_weights=False)[0]


LSTM_UNITS = ["lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.weight_ih_l0_reverse", "lstm.weight_hh_l0_reverse",
              "lstm.weight_ih_l1", "lstm.weight_hh_l1", "lstm.weight_ih_l1_reverse", "lstm.weight_hh_l1_reverse",
              "head.weight"]
ATTENTION_UNITS = ["embed.weight", "attn.in_proj_weight", "attn.out_proj.weight", "cross.in_proj_weight",
                   "cross.out_proj.weight", "separate.q_proj_weight", "separate.k_proj_weight",
                   "separate.v_proj_weight", "separate.out_proj.weight"]


def built(cls: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return cls().eval()


def units(model: nn.Module, **values: Any) -> list[str]:
    return build_strategy(component("strategy", "weight", **values)).units(model)


def x(seed: int = 1) -> torch.Tensor:
    return torch.randn(2, STEPS, 3, generator=torch.Generator().manual_seed(seed))


# --- units -------------------------------------------------------------------------------------------------------

def test_lstm_matrices_are_units_and_exclude_and_include_bias_apply_to_them() -> None:
    model = built(TinyLSTM)
    assert units(model) == LSTM_UNITS
    assert units(model, exclude=["*_reverse"]) == [u for u in LSTM_UNITS if not u.endswith("_reverse")]
    assert units(model, exclude=["lstm"]) == ["head.weight"]  # a module name excludes all its matrices
    assert units(model, include_bias=True)[:4] == ["lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0",
                                                   "lstm.bias_hh_l0"]
    strategy = build_strategy(component("strategy", "weight", layers={"lstm": 0.3, "lstm.weight_hh_l1": 0.6}))
    strategy.check(model)  # the module and one of its matrices are both known layers


def test_attention_input_projections_are_units() -> None:
    model = built(TinyAttention)
    assert units(model) == ATTENTION_UNITS
    assert units(model, include_bias=True)[:4] == ["embed.weight", "embed.bias", "attn.in_proj_weight",
                                                   "attn.in_proj_bias"]
    # bias_k and bias_v are learned key/value rows, not the bias of a matrix.
    bare = nn.MultiheadAttention(4, 2, add_bias_kv=True)
    assert units(bare, include_bias=True) == ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]


# --- a 50% step: half of every matrix, and the modules compute with what is left -------------------------------

def half_step(model: nn.Module, **values: Any) -> dict[str, torch.Tensor]:
    strategy = build_strategy(component("strategy", "weight", sparsity=0.5, **values))
    masks, report = strategy.step(model, strategy.initial_masks(model), 0.5, 1.0, CTX)
    apply_masks(model, strategy.to_param_masks(model, masks))
    assert report.achieved == 0.5
    return masks


def rebuilt(cls: type[nn.Module], model: nn.Module) -> nn.Module:
    """A fresh module holding copies of `model`'s (masked) weights: nothing cached from before the masking."""
    twin = cls().eval()
    twin.load_state_dict({k: v.clone() for k, v in model.state_dict().items()})
    return twin


@pytest.mark.parametrize(("cls", "expected"), [(TinyLSTM, LSTM_UNITS), (TinyAttention, ATTENTION_UNITS)])
def test_a_weight_step_masks_half_of_each_matrix_and_the_forward_pass_uses_the_masks(
        cls: type[nn.Module], expected: list[str]) -> None:
    model = built(cls)
    with torch.no_grad():
        dense = model(x())
    masks = half_step(model)
    assert list(masks) == expected
    params = dict(model.named_parameters())
    for unit in expected:
        assert int(params[unit].count_nonzero()) == params[unit].numel() // 2 == int(masks[unit].sum()), unit
    with torch.no_grad():
        pruned, reference = model(x()), rebuilt(cls, model)(x())
    assert torch.equal(pruned, reference)
    assert not torch.allclose(pruned, dense)


def test_lstm_reads_its_parameters_themselves_so_an_in_place_mask_reaches_every_forward() -> None:
    # nn.LSTM runs on `_flat_weights`: on the CPU the Parameter objects themselves (on cuDNN, views of one buffer
    # that flatten_parameters() makes them), so a fill in place is what the next forward multiplies by.
    model = built(TinyLSTM)
    flat = model.lstm._flat_weights
    half_step(model)
    assert all(w is p for w, p in zip(flat, model.lstm._flat_weights))
    assert all(w is getattr(model.lstm, n) for w, n in zip(flat, model.lstm._flat_weights_names))


def test_lamp_and_global_scope_and_2_4_patterns_take_these_units() -> None:
    for scope in ("global", "lamp"):
        model = built(TinyLSTM)
        masks = half_step(model, scope=scope)
        assert list(masks) == LSTM_UNITS and all(m.any() for m in masks.values())
    model = built(TinyAttention)
    strategy = build_strategy(component("strategy", "weight", sparsity=0.5, pattern="2:4"))
    masks, report = strategy.step(model, strategy.initial_masks(model), 0.5, 1.0, CTX)
    # 4 inputs per output: in_proj's rows are 2:4; kdim 3 and vdim 5 cannot be grouped by 4.
    assert masks["attn.in_proj_weight"].sum(1).tolist() == [2] * 12
    assert report.notes == ["embed.weight: 3 inputs per output is not a multiple of 4; left dense "
                            "(strategy.pattern 2:4)",
                            "separate.k_proj_weight: 3 inputs per output is not a multiple of 4; left dense "
                            "(strategy.pattern 2:4)",
                            "separate.v_proj_weight: 5 inputs per output is not a multiple of 4; left dense "
                            "(strategy.pattern 2:4)"]


# --- the layer table ---------------------------------------------------------------------------------------------

def row(name: str, kind: str, shape: list[int], nonzero: int, dense: int, effective: int) -> dict[str, Any]:
    params = shape[0] * shape[1]
    return {"name": name, "type": kind, "shape": shape, "params": params, "nonzero": nonzero,
            "sparsity": 1.0 - nonzero / params, "macs_dense": dense, "macs_effective": effective}


def test_layer_table_of_an_lstm_counts_each_matrix_once_per_time_step_and_direction() -> None:
    model = built(TinyLSTM)
    with torch.no_grad():
        model.lstm.weight_hh_l1.zero_()  # (8, 2): all 16 gone
        model.lstm.weight_ih_l0[:4] = 0  # (8, 3): 12 of 24 gone
    # Per step: 4H × in for weight_ih (in: 3, then 2H = 4 from both directions below) and 4H × H for weight_hh.
    assert layer_table(model, (STEPS, 3)) == [
        row("lstm.weight_ih_l0", "LSTM", [8, 3], 12, 5 * 8 * 3, 5 * 12),
        row("lstm.weight_hh_l0", "LSTM", [8, 2], 16, 5 * 8 * 2, 5 * 16),
        row("lstm.weight_ih_l0_reverse", "LSTM", [8, 3], 24, 5 * 8 * 3, 5 * 24),
        row("lstm.weight_hh_l0_reverse", "LSTM", [8, 2], 16, 5 * 8 * 2, 5 * 16),
        row("lstm.weight_ih_l1", "LSTM", [8, 4], 32, 5 * 8 * 4, 5 * 32),
        row("lstm.weight_hh_l1", "LSTM", [8, 2], 0, 5 * 8 * 2, 0),
        row("lstm.weight_ih_l1_reverse", "LSTM", [8, 4], 32, 5 * 8 * 4, 5 * 32),
        row("lstm.weight_hh_l1_reverse", "LSTM", [8, 2], 16, 5 * 8 * 2, 5 * 16),
        row("head", "Linear", [4, 4], 16, 5 * 4 * 4, 5 * 16),
    ]


def test_layer_table_of_attention_counts_projections_per_position_and_the_out_proj_it_never_calls() -> None:
    model = built(TinyAttention)
    with torch.no_grad():
        model.cross.in_proj_weight[4:8] = 0  # the k third (2 rows of keys): 16 weights × 2 rows saved
        model.cross.in_proj_weight[0, :2] = 0  # 2 weights of the q third, × 5 query rows
    table = layer_table(model, (STEPS, 3))
    assert [(r["name"], r["type"]) for r in table] == [
        ("embed", "Linear"), ("attn.in_proj_weight", "MultiheadAttention"),
        ("attn.out_proj", "NonDynamicallyQuantizableLinear"), ("cross.in_proj_weight", "MultiheadAttention"),
        ("cross.out_proj", "NonDynamicallyQuantizableLinear"), ("separate.q_proj_weight", "MultiheadAttention"),
        ("separate.k_proj_weight", "MultiheadAttention"), ("separate.v_proj_weight", "MultiheadAttention"),
        ("separate.out_proj", "NonDynamicallyQuantizableLinear")]
    assert table[3] == row("cross.in_proj_weight", "MultiheadAttention", [12, 4], 30,
                           5 * 16 + 2 * 16 + 2 * 16, 5 * 14 + 2 * 0 + 2 * 16)
    # E = 4 over 5 positions: in_proj 3·E·E, out_proj E·E per query row; kdim 3 and vdim 5 over the 5 key rows.
    assert [(r["macs_dense"], r["macs_effective"]) for r in table] == [
        (5 * 12, 5 * 12), (5 * 48, 5 * 48), (5 * 16, 5 * 16), (144, 102), (5 * 16, 5 * 16),
        (5 * 16, 5 * 16), (5 * 12, 5 * 12), (5 * 20, 5 * 20), (5 * 16, 5 * 16)]
    assert macs_summary(table)["dense"] == 60 + 240 + 80 + 144 + 80 + 80 + 60 + 100 + 80


def test_layer_rows_of_other_models_are_unchanged() -> None:
    # What the table gave before it counted LSTM and attention matrices (the same dicts, key order included).
    info = DataInfo(channels=1, height=8, width=8, num_classes=10)
    torch.manual_seed(0)
    model = model_of("two_conv_cnn", {}, info)
    with torch.no_grad():
        for param in model.parameters():
            param.masked_fill_(torch.rand(param.shape, generator=torch.Generator().manual_seed(1)) < 0.3, 0.0)
    table = layer_table(model, (1, 8, 8))
    assert table == [
        {"name": "conv1", "type": "Conv2d", "shape": [32, 1, 3, 3], "params": 288, "nonzero": 202,
         "sparsity": 1 - 202 / 288, "macs_dense": 18432, "macs_effective": 12928},
        {"name": "conv2", "type": "Conv2d", "shape": [32, 32, 3, 3], "params": 9216, "nonzero": 6394,
         "sparsity": 1 - 6394 / 9216, "macs_dense": 147456, "macs_effective": 102304},
        {"name": "fc", "type": "Linear", "shape": [10, 128], "params": 1280, "nonzero": 892,
         "sparsity": 1 - 892 / 1280, "macs_dense": 1280, "macs_effective": 892}]
    assert [list(r) for r in table] == [list(ROW_KEYS)] * 3


# --- consumers ---------------------------------------------------------------------------------------------------

def test_sparse_kernels_leave_an_attention_s_out_proj_as_it_is() -> None:
    # nn.MultiheadAttention reads out_proj.weight as a tensor: a CSR one would fail in its fused kernel.
    model = built(TinyAttention)
    half_step(model)
    sparse, names = sparsify_linears(model, 0.4)
    assert names == ["embed"]
    assert max_abs_diff(model, sparse, x()) < 1e-6
