"""Weight-level pruning of transformers' Conv1D (GPT-2's linear layers, weight stored transposed as (in, out)):
Wanda, SparseGPT and N:M give it exactly the masks (and SparseGPT the updates) of the equivalent nn.Linear."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from progprune_cli.data import DataInfo
from progprune_cli.pruning.strategies import PruneContext, Strategy, build_strategy
from conftest import component, model_of

pytorch_utils = pytest.importorskip("transformers.pytorch_utils")
pytestmark = pytest.mark.usefixtures("one_thread")


def strategy(name: str, **values: Any) -> Strategy:
    return build_strategy(component("strategy", name, **values))


def ctx(x: torch.Tensor, batch: int) -> PruneContext:
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=batch)
    return PruneContext(loader, lambda out, y: out.sum(), torch.device("cpu"), 0)


def pair(w: torch.Tensor) -> tuple[nn.Module, nn.Module]:
    """nn.Linear with weight `w` (out, in), and the Conv1D computing the same map (its weight `w.T`)."""
    linear = nn.Linear(w.shape[1], w.shape[0], bias=False).double()
    conv = pytorch_utils.Conv1D(w.shape[0], w.shape[1]).double()
    with torch.no_grad():
        linear.weight.copy_(w)
        conv.weight.copy_(w.T)
        conv.bias.zero_()
    return nn.Sequential(linear), nn.Sequential(conv)


# 4 outputs of 8 inputs: as many outputs as a 2:4 group, so grouping along the stored (in, out) rows would also run.
GEN = torch.Generator().manual_seed(0)
W = torch.randn(4, 8, generator=GEN, dtype=torch.float64)
X = torch.randn(2, 16, 8, generator=GEN, dtype=torch.float64) * torch.linspace(0.2, 3, 8, dtype=torch.float64)


@pytest.mark.parametrize(("name", "values"), [
    ("wanda", {"batches": 2}),
    ("wanda", {"batches": 2, "pattern": "2:4"}),
    ("sparsegpt", {"batches": 2, "blocksize": 4}),
    ("sparsegpt", {"batches": 2, "blocksize": 4, "pattern": "2:4"}),
    ("weight", {"pattern": "2:4"}),
])
def test_a_conv1d_is_pruned_as_the_linear_with_its_transposed_weight(name: str, values: dict[str, Any]) -> None:
    linear, conv = pair(W)
    pruner = strategy(name, **values)
    masks = {unit: pruner.initial_masks(model) for unit, model in (("linear", linear), ("conv", conv))}
    assert list(masks["conv"]) == ["0.weight"] and masks["conv"]["0.weight"].shape == (8, 4)
    lin, lin_report = pruner.step(linear, masks["linear"], 0.5, 1.0, ctx(X, 1))
    got, report = pruner.step(conv, masks["conv"], 0.5, 1.0, ctx(X, 1))
    assert torch.equal(got["0.weight"], lin["0.weight"].T)
    assert report.layers["0.weight"] == lin_report.layers["0.weight"] and report.notes == lin_report.notes == []
    # Each output (a stored column) loses half of its inputs: Wanda's comparison group, and 2:4's. SparseGPT's is
    # a block of inputs of every output.
    assert got["0.weight"].sum(0).tolist() == [4, 4, 4, 4] or (name, got["0.weight"].sum()) == ("sparsegpt", 16)
    if values.get("pattern"):
        assert got["0.weight"].T.reshape(4, 2, 4).sum(-1).tolist() == [[2, 2]] * 4
    # SparseGPT's updates reach the transposed storage; the others leave the weights as they were.
    expected = linear[0].weight.detach().T if name == "sparsegpt" else W.T
    assert (conv[0].weight.detach() - expected).abs().max() <= 1e-6
    assert name != "sparsegpt" or not torch.equal(expected, W.T)


def test_wanda_scores_of_a_conv1d_are_the_linears_transposed() -> None:
    linear, conv = pair(W)
    wanda = strategy("wanda", batches=2)
    scores = {unit: wanda.scores(model, wanda.initial_masks(model), ctx(X, 1))["0.weight"]
              for unit, model in (("linear", linear), ("conv", conv))}
    assert torch.equal(scores["conv"], scores["linear"].T)


def tiny_gpt2(folder: Path) -> Path:
    """A 1-layer GPT-2 of vocabulary 300 and 64 positions, initialised at random (seeded), saved as safetensors."""
    import transformers

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=300, n_positions=64, bos_token_id=0,
                                  eos_token_id=0)
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.mark.parametrize("name", ["wanda", "sparsegpt"])
def test_a_hugging_face_gpt2_has_its_conv1d_layers_pruned(name: str, tmp_path: Path) -> None:
    info = DataInfo(channels=1, height=1, width=8, num_classes=256, vocab=256)
    model = model_of("hf", {"path": str(tiny_gpt2(tmp_path / "gpt2"))}, info)
    pruner = strategy(name, batches=1)
    masks = pruner.initial_masks(model)
    prefix = "model.transformer.h.0."
    layers = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
    assert sorted(masks) == sorted(f"{prefix}{layer}.weight" for layer in layers)
    assert pruner.dense_notes(model) == [f"left dense: model.transformer.wte.weight, model.transformer.wpe.weight (not "
                                         f"the weight of a Linear, Conv1D or Conv2d layer: {name} weighs a weight by "
                                         "its input column)"]
    new, report = pruner.step(model, masks, 0.5, 1.0, ctx(info.example(4, seed=0), 2))
    for unit, keep in new.items():
        inputs = keep.shape[0]  # stored (in, out): with Wanda every output keeps half of its inputs
        assert keep.sum() == keep.numel() // 2 and (name == "sparsegpt" or
                                                     keep.sum(0).tolist() == [inputs // 2] * keep.shape[1]), unit
    assert report.achieved == 0.5
    if name == "sparsegpt":  # its updates are written into the (in, out) storage, the pruned entries zero
        assert all(torch.equal(model.get_parameter(unit).detach() == 0, ~keep) for unit, keep in new.items())

