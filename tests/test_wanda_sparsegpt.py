"""Wanda and SparseGPT on tiny layers with known weights and inputs: exact masks, norms, least-squares updates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TINY, component, progprune, refused
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError
from progprune_cli.pruning.strategies import PruneContext, Strategy, build_strategy
from progprune_cli.pruning.strategies.sparsegpt import fasterprune
from progprune_cli.pruning.strategies.wanda import input_norms

pytestmark = pytest.mark.usefixtures("one_thread")


def strategy(name: str, **values: Any) -> Strategy:
    return build_strategy(component("strategy", name, **values))


def ctx(x: torch.Tensor, batch: int = 1) -> PruneContext:
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=batch)
    return PruneContext(loader, lambda out, y: out.sum(), torch.device("cpu"), 0)


def linear(weight: list[list[float]]) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight), bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
    return layer


# Four tokens of a language model's (batch, block, features) input: two samples of two positions. Input column norms
# ‖X_j‖₂ = (√(3²+4²), 1, 2, 0.5) = (5, 1, 2, 0.5).
TOKENS = torch.tensor([[[3, 1, 0, 0], [4, 0, 2, 0]], [[0, 0, 0, 0.5], [0, 0, 0, 0]]], dtype=torch.float64)
W = [[1, -2, 3, -4], [0.25, 4, -1, 8]]


def test_wanda_scores_are_abs_w_times_input_norms_and_each_row_loses_half() -> None:
    model, wanda = nn.Sequential(linear(W)), strategy("wanda", batches=2)
    masks = wanda.initial_masks(model)
    scores = wanda.scores(model, masks, ctx(TOKENS))
    # |W| · (5, 1, 2, 0.5)
    assert torch.equal(scores["0.weight"], torch.tensor([[5, 2, 6, 2], [1.25, 4, 2, 4]], dtype=torch.float64))
    new, report = wanda.step(model, masks, 0.5, 1.0, ctx(TOKENS))
    # Row 0 ties at 2 (columns 1 and 3): both go. Magnitude would prune |1| and |-2| instead.
    assert new["0.weight"].tolist() == [[True, False, True, False], [False, True, False, True]]
    assert new["0.weight"].sum(1).tolist() == [2, 2]
    assert (report.achieved, report.removed, report.layers["0.weight"]["target"]) == (0.5, 4, 0.5)
    assert torch.equal(model[0].weight, torch.tensor(W, dtype=torch.float64))  # Wanda only masks


def test_wanda_reads_only_strategy_batches_and_keeps_what_was_pruned() -> None:
    model = nn.Sequential(linear(W))
    # One batch: the first sample's two tokens only, so column 3 has norm 0.
    assert input_norms(model, ["0.weight"], ctx(TOKENS), 1)["0.weight"].tolist() == [5, 1, 2, 0]
    wanda = strategy("wanda", batches=2)
    earlier = torch.tensor([[True, True, True, True], [True, False, True, True]])
    new, report = wanda.step(model, {"0.weight": earlier}, 0.25, 1.0, ctx(TOKENS))
    # Row 1 already lost its one (column 1, score 4): it counts, and the entry is not revived.
    assert new["0.weight"].tolist() == [[True, False, True, True], [True, False, True, True]]
    assert report.removed == 1


def test_wanda_2_4_keeps_the_two_best_of_every_four_inputs_of_a_row() -> None:
    model = nn.Sequential(linear([[1, 2, 3, 4, 1, 1, 1, 1]]))
    x = torch.tensor([[1, 2, 1, 1, 3, 1, 1, 1]], dtype=torch.float64)  # scores 1 4 3 4 | 3 1 1 1
    wanda = strategy("wanda", pattern="2:4", batches=1)
    new, _ = wanda.step(model, wanda.initial_masks(model), 0.5, 1.0, ctx(x))
    # Ties keep the earlier entry (pruning/pattern.py's rule): 1 4 3 4 keeps 4 4; 3 1 1 1 keeps 3 and the first 1.
    assert new["0.weight"].tolist() == [[False, True, False, True, True, True, False, False]]
    # Per row at 50% the same scores keep columns 1, 2, 3 and 4 (ties: the earlier entry goes, as select's rule).
    per_row, _ = strategy("wanda", batches=1).step(model, wanda.initial_masks(model), 0.5, 1.0, ctx(x))
    assert per_row["0.weight"].tolist() == [[False, True, True, True, True, False, False, False]]


@pytest.mark.parametrize(("stride", "padding", "dilation", "mode"),
                         [(1, 1, 1, "zeros"), (2, 1, 2, "zeros"), (1, 1, 1, "reflect")])
def test_wanda_conv_norms_are_those_of_the_hand_unfolded_patches(stride: int, padding: int, dilation: int,
                                                                  mode: str) -> None:
    conv = nn.Conv2d(2, 3, 2, stride=stride, padding=padding, dilation=dilation, padding_mode=mode).double()
    x = torch.arange(2 * 2 * 4 * 4, dtype=torch.float64).view(2, 2, 4, 4) % 7 - 3  # integers: exact sums
    if mode == "zeros":
        padded = torch.zeros(2, 2, 4 + 2 * padding, 4 + 2 * padding, dtype=torch.float64)
        padded[:, :, padding:padding + 4, padding:padding + 4] = x
    else:  # reflect by hand: row/column -1 is row/column 1, and 4 is 2
        index = torch.tensor([1, 0, 1, 2, 3, 2])
        padded = x[:, :, index][:, :, :, index]
    span = dilation + 1
    out = (padded.shape[-1] - span) // stride + 1
    patches = [[padded[b, c, i * stride + a * dilation, j * stride + e * dilation].item()
                for c in range(2) for a in range(2) for e in range(2)]
               for b in range(2) for i in range(out) for j in range(out)]
    expected = torch.tensor(patches, dtype=torch.float64).square().sum(0).sqrt()
    assert torch.equal(input_norms(nn.Sequential(conv), ["0.weight"], ctx(x), 2)["0.weight"], expected)


def lstsq_rows(w: torch.Tensor, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Per row, the kept weights minimising ‖X w − X ŵ‖ (ŵ zero where pruned), solved directly."""
    out = torch.zeros_like(w)
    for r in range(w.shape[0]):
        kept = keep[r].nonzero().flatten()
        out[r, kept] = torch.linalg.lstsq(x[:, kept], x @ w[r]).solution
    return out


def test_sparsegpt_updates_kept_weights_to_the_least_squares_solution() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=gen, dtype=torch.float64)
    layer = nn.Linear(8, 3, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(3, 8, generator=gen, dtype=torch.float64))
    w = layer.weight.detach().clone()
    # The mask fixed beforehand (12 of 24 already pruned, so a 50% step adds none), each row's pruned entries before
    # its kept ones: then pruning column by column with the OBS update of the later columns (SparseGPT's order) is
    # the same as solving for every kept entry at once.
    keep = torch.tensor([[False] * 4 + [True] * 4, [False] * 2 + [True] * 6, [False] * 6 + [True] * 2])
    model = nn.Sequential(layer)
    sparsegpt = strategy("sparsegpt", percdamp=0.0, blocksize=128, batches=4)
    new, report = sparsegpt.step(model, {"0.weight": keep}, 0.5, 1.0, ctx(x, batch=16))
    assert torch.equal(new["0.weight"], keep) and report.removed == 0
    assert torch.allclose(layer.weight.detach(), lstsq_rows(w, x, keep), rtol=0, atol=1e-6)


def test_with_kept_entries_before_pruned_ones_least_squares_is_a_lower_bound() -> None:
    """Column by column, SparseGPT freezes each column once reached, so a kept entry left of a pruned one is not
    re-solved: its error is then above the direct solve's, never below."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=gen, dtype=torch.float64)
    w = torch.randn(3, 8, generator=gen, dtype=torch.float64)
    keep = torch.tensor([[True, False] * 4] * 3)
    updated, kept, _ = fasterprune(w, 2 * x.T @ x / 64, keep, 0.5, 128, 0.0)
    solved = lstsq_rows(w, x, keep)
    error = {name: float((x @ w.T - x @ v.T).square().sum()) for name, v in (("sparsegpt", updated), ("lstsq", solved))}
    assert torch.equal(kept, keep) and error["lstsq"] < error["sparsegpt"] < float((x @ w.T).square().sum() / 2)


def reconstruction_error(name: str, w: torch.Tensor, x: torch.Tensor) -> float:
    """‖X Wᵀ − X Ŵᵀ‖² after a 50% step of strategy `name` (the masked, possibly updated Ŵ)."""
    layer = nn.Linear(w.shape[1], w.shape[0], bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(w)
    model = nn.Sequential(layer)
    chosen = strategy(name, **({} if name == "weight" else {"batches": 4}))
    new, _ = chosen.step(model, chosen.initial_masks(model), 0.5, 1.0, ctx(x, batch=64))
    pruned = layer.weight.detach() * new["0.weight"]
    return float((x @ w.T - x @ pruned.T).square().sum())


def test_at_half_sparsity_sparsegpt_reconstructs_better_than_wanda_better_than_magnitude() -> None:
    gen = torch.Generator().manual_seed(1)
    # Correlated features of unequal scales: what makes the input statistics matter.
    mixing = torch.randn(32, 32, generator=gen, dtype=torch.float64) * torch.linspace(0.1, 3, 32, dtype=torch.float64)
    x = torch.randn(256, 32, generator=gen, dtype=torch.float64) @ mixing
    w = torch.randn(16, 32, generator=gen, dtype=torch.float64)
    errors = {name: reconstruction_error(name, w, x) for name in ("sparsegpt", "wanda", "weight")}
    assert errors["sparsegpt"] <= errors["wanda"] <= errors["weight"], errors


def test_sparsegpt_2_4_prunes_two_of_every_four_and_zeroes_them() -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(32, 8, generator=gen, dtype=torch.float64)
    model = nn.Sequential(linear(torch.randn(2, 8, generator=gen).tolist()))
    sparsegpt = strategy("sparsegpt", pattern="2:4", blocksize=4)
    new, report = sparsegpt.step(model, sparsegpt.initial_masks(model), 0.5, 1.0, ctx(x, batch=8))
    keep = new["0.weight"]
    assert keep.view(2, 2, 4).sum(-1).tolist() == [[2, 2], [2, 2]] and report.achieved == 0.5
    assert torch.equal(model[0].weight.detach() == 0, ~keep)


def test_sparsegpt_is_layer_after_layer_on_the_pruned_outputs() -> None:
    """The second layer's Hessian comes from the first's outputs after the first was pruned and updated."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(32, 6, generator=gen, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(6, 4), nn.Linear(4, 3)).double()
    seen: list[torch.Tensor] = []
    model[1].register_forward_pre_hook(lambda m, i: seen.append(i[0].clone()))
    sparsegpt = strategy("sparsegpt", batches=1)
    sparsegpt.step(model, sparsegpt.initial_masks(model), 0.5, 1.0, ctx(x, batch=32))
    # Scoring layer 0 stops before layer 1; layer 1's forward (the second) sees the pruned, updated layer 0.
    assert len(seen) == 1 and torch.equal(seen[0], model[0](x))


def test_the_yamls_compose_with_their_keys() -> None:
    wanda, sparsegpt = component("strategy", "wanda"), component("strategy", "sparsegpt")
    assert (wanda.name, wanda.batches, wanda.sparsity, wanda.scope) == ("wanda", 4, 0.5, "layer")
    assert (sparsegpt.batches, sparsegpt.percdamp, sparsegpt.blocksize) == (4, 0.01, 128)
    assert build_strategy(sparsegpt).updates_weights and not build_strategy(wanda).updates_weights


@pytest.mark.parametrize(("name", "values", "message"), [
    ("sparsegpt", {"percdamp": -0.1}, "strategy.percdamp: got -0.1; must be a finite number >= 0 (a fraction of the "
                                      "mean Hessian diagonal added to it, e.g. 0.01)"),
    ("sparsegpt", {"blocksize": 0}, "strategy.blocksize: got 0; must be >= 1 (columns pruned together, e.g. 128)"),
    ("sparsegpt", {"blocksize": 6, "pattern": "2:4"},
     "strategy.blocksize: got 6; with strategy.pattern 2:4 it must be a multiple of 4"),
    ("wanda", {"scope": "global"}, "strategy.scope: wanda prunes each layer to strategy.sparsity (its comparison "
                                   "group is within a layer); got global, use scope layer"),
    ("wanda", {"threshold": 0.1}, "strategy.threshold: wanda prunes each layer to a sparsity; set "
                                  "strategy.threshold=null"),
    ("sparsegpt", {"include_bias": True}, "strategy.include_bias: sparsegpt weighs weights by their inputs, and a "
                                          "bias has none; set strategy.include_bias=false"),
    ("wanda", {"batches": 0}, "strategy.batches: got 0; wanda needs at least 1 calibration batch"),
])
def test_bad_values_are_one_line(name: str, values: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError) as error:
        strategy(name, **values)
    assert str(error.value) == message


class Mixed(nn.Module):
    def __init__(self, groups: int = 1) -> None:
        super().__init__()
        self.embed, self.conv, self.fc = nn.Embedding(5, 4), nn.Conv2d(4, 4, 1, groups=groups), nn.Linear(4, 2)


def test_weights_without_input_columns_stay_dense_and_are_named() -> None:
    wanda = strategy("wanda")
    assert wanda.units(Mixed()) == ["conv.weight", "fc.weight"]
    assert wanda.dense_notes(Mixed()) == ["left dense: embed.weight (not the weight of a Linear, Conv1D or Conv2d "
                                          "layer: wanda weighs a weight by its input column)"]
    assert strategy("sparsegpt", exclude=["embed"]).dense_notes(Mixed()) == []


def test_a_grouped_convolution_is_refused_naming_it() -> None:
    with pytest.raises(UserError) as error:
        strategy("wanda").check(Mixed(groups=2))
    assert str(error.value) == ("strategy=wanda: conv.weight is a grouped convolution (groups=2), which is not "
                                "supported; add it to strategy.exclude")


class _SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mha, self.head = nn.MultiheadAttention(4, 2, batch_first=True), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(len(x), -1, 4)  # an image batch as sequences of 4 features
        return self.head(self.mha(x, x, x)[0])


class _Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.flatten(1)[:, :4], self.fc.weight)  # fc's weight used, its forward never called


def test_an_attentions_matrices_stay_dense_and_are_named() -> None:
    wanda = strategy("wanda", batches=1)
    assert wanda.units(_SelfAttention()) == ["head.weight"]
    assert wanda.dense_notes(_SelfAttention()) == [
        "left dense: mha.in_proj_weight, mha.out_proj.weight (not the weight of a Linear, Conv1D or Conv2d layer: "
        "wanda weighs a weight by its input column)"]


def test_a_layer_whose_forward_never_runs_is_refused_naming_it() -> None:
    model = _Functional()
    wanda = strategy("wanda", batches=1)
    message = ("strategy.exclude: fc.weight is used by no forward call of its own layer, so it has no "
               "inputs to weigh; add it to strategy.exclude")
    with pytest.raises(UserError) as before_training:
        wanda.check(model, DataInfo(channels=1, height=3, width=4, num_classes=4))
    with pytest.raises(UserError) as when_pruning:
        wanda.step(model, wanda.initial_masks(model), 0.5, 1.0, ctx(torch.randn(2, 3, 4)))
    assert str(before_training.value) == str(when_pruning.value) == message


def test_a_bad_percdamp_is_refused_before_the_run(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    err = refused("train", "+strategy=sparsegpt", "strategy.percdamp=-1", cwd=workdir, monkeypatch=monkeypatch,
                  capsys=capsys)
    assert err == ("progprune: error: strategy.percdamp: got -1.0; must be a finite number >= 0 (a fraction of the "
                   "mean Hessian diagonal added to it, e.g. 0.01)\n")
    assert not (workdir / "runs").exists()


def test_a_sparsegpt_run_prunes_updates_and_finetunes(workdir: Path) -> None:
    done = progprune("train", "+strategy=sparsegpt", *TINY, "evaluate.dense_baseline=false", "hydra.run.dir=run",
                     cwd=workdir)
    assert done.returncode == 0, done.stderr
    run = workdir / "run"
    log = (run / "run.log").read_text()
    assert "prune step 2 (epoch 1, target 50.00%): removed 5008, kept weights updated, sparsity now 50.00%" in log
    pruned = torch.load(run / "checkpoints" / "pruned.pt", weights_only=True)
    for name, mask in pruned["masks"].items():
        assert not pruned["model"][name][~mask].any()
    assert json.loads((run / "pruning.json").read_text())["strategy"] == "sparsegpt"
