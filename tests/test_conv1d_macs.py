"""MACs of transformers' Conv1D (GPT-2's linear layers, weight stored (in, out)): counted as the nn.Linear they compute,
dense and zero-skipping, in the layer table of a tiny Hugging Face GPT-2, and so a MAC budget on its MLP widths."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from progprune_cli.data import DataInfo
from progprune_cli.measure.macs import layer_table, macs_summary
from progprune_cli.pruning.budget import find_budget
from progprune_cli.pruning.masks import apply_masks
from progprune_cli.pruning.strategies import Strategy, build_strategy
from conftest import component

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = DataInfo(channels=1, height=1, width=16, num_classes=11, vocab=11)  # block 16, vocabulary 11
E, HIDDEN, VOCAB, BLOCK = 8, 32, 11, 16  # GPT-2's n_embd, its MLP's 4·n_embd, the vocabulary and the positions


def strategy(name: str, **values: Any) -> Strategy:
    return build_strategy(component("strategy", name, **values))


def linear_and_conv1d() -> tuple[nn.Module, nn.Module]:
    """6 → 5 → 3 as two nn.Linear layers, and as two Conv1D layers holding the same weights transposed."""
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    conv = nn.Sequential(transformers.pytorch_utils.Conv1D(5, 6), nn.ReLU(), transformers.pytorch_utils.Conv1D(3, 5))
    with torch.no_grad():
        for i in (0, 2):
            conv[i].weight.copy_(linear[i].weight.T)
            conv[i].bias.copy_(linear[i].bias)
    return linear, conv


def test_a_conv1d_layer_counts_the_macs_of_the_linear_it_computes_dense_and_zero_skipping() -> None:
    linear, conv = linear_and_conv1d()
    # The same known weights zeroed in both: 7 of the first layer's 30, 5 of the second's 15.
    first = torch.ones(5, 6, dtype=torch.bool)
    first.view(-1)[[0, 4, 9, 13, 21, 22, 29]] = False
    second = torch.ones(3, 5, dtype=torch.bool)
    second[1] = False
    apply_masks(linear, {"0.weight": first, "2.weight": second})
    apply_masks(conv, {"0.weight": first.T, "2.weight": second.T})
    x = torch.zeros(1, 4, 6)  # 4 positions of a sequence: each is one more matmul row
    assert torch.equal(linear(x), conv(x))
    expected = [("0", 4 * 30, 4 * 23), ("2", 4 * 15, 4 * 10)]
    for model, kind, shapes in ((linear, "Linear", [[5, 6], [3, 5]]), (conv, "Conv1D", [[6, 5], [5, 3]])):
        rows = layer_table(model, (4, 6))
        assert [(r["name"], r["macs_dense"], r["macs_effective"]) for r in rows] == expected
        assert [(r["type"], r["shape"]) for r in rows] == [(kind, shape) for shape in shapes]
        assert [(r["params"], r["nonzero"]) for r in rows] == [(30, 23), (15, 10)]
    assert macs_summary(layer_table(conv, (4, 6))) == macs_summary(layer_table(linear, (4, 6)))


def hf_gpt2() -> nn.Module:
    from progprune_cli.models.hf import CausalLM

    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=BLOCK, n_embd=E, n_layer=2, n_head=2,
                                     bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    return CausalLM(transformers.GPT2LMHeadModel(config), VOCAB)


# Per block and position: c_attn E·3E, attn.c_proj E·E, mlp.c_fc E·4E, mlp.c_proj 4E·E; then lm_head E·vocab. The
# attention's own q·k and attn·v products are not counted, as for model=gpt's and nn.MultiheadAttention's.
PER_POSITION = 2 * (E * 3 * E + E * E + E * HIDDEN + HIDDEN * E) + E * VOCAB
DENSE = BLOCK * PER_POSITION  # 16 · 1624 = 25984


def test_the_layer_table_of_a_hugging_face_gpt2_counts_its_conv1d_layers() -> None:
    model = hf_gpt2()
    rows = layer_table(model, TEXT.example(1))
    per_block = [("attn.c_attn", [E, 3 * E]), ("attn.c_proj", [E, E]), ("mlp.c_fc", [E, HIDDEN]),
                 ("mlp.c_proj", [HIDDEN, E])]
    assert [(r["name"], r["type"], r["shape"], r["macs_dense"]) for r in rows] == [
        *[(f"model.transformer.h.{i}.{name}", "Conv1D", shape, BLOCK * shape[0] * shape[1])
          for i in range(2) for name, shape in per_block],
        ("model.lm_head", "Linear", [VOCAB, E], BLOCK * E * VOCAB)]
    assert macs_summary(rows) == {"dense": DENSE, "effective": DENSE, "theoretical_speedup": 1.0}
    # Half of block 0's c_attn zeroed: each of its 96 zeros saves one MAC per position.
    mask = torch.arange(E * 3 * E).reshape(E, 3 * E) % 2 == 0
    apply_masks(model, {"model.transformer.h.0.attn.c_attn.weight": mask})
    summary = macs_summary(layer_table(model, TEXT.example(1)))
    assert summary == {"dense": DENSE, "effective": DENSE - BLOCK * 96, "theoretical_speedup": 25984 / 24448}


def test_a_mac_budget_on_a_hugging_face_gpt2_removes_mlp_neurons_to_fit() -> None:
    model = hf_gpt2()
    s = strategy("structured", target={"macs": 1.25})
    s.check(model, TEXT)
    fit = find_budget(s, model, TEXT)
    assert fit is not None
    # A neuron removed from both MLPs saves 16 positions · 2 MLPs · (its c_fc column + its c_proj row, 8 + 8) MACs.
    # 1.25× wants 5196.8 of them saved: 10 neurons a MLP (1.2454×, 0.37% off) beat 11 (1.2767×, 2.1% off); sparsity
    # 0.3 is the shortest decimal that removes round(0.3 · 32) = 10.
    assert (fit.sparsity, fit.achieved, fit.within) == (0.3, DENSE / (DENSE - 10 * BLOCK * 2 * 2 * E), True)
    assert fit.line() == ("strategy.target.macs=1.25: strategy.sparsity 0.3 gives 1.245× fewer MACs (within 2%; "
                          "counted before training, theoretical); it replaces strategy.sparsity")
