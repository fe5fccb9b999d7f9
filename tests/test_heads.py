"""strategy=heads: L1 and Taylor head scores, layer and global selection, the q/k/v rows and proj columns a head's
mask zeroes, the compacted copy (exact parameter counts, the masked model's outputs), its save and rebuild, the
one-line refusals, and a whole language-model run that compacts."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from conftest import component, model_of, progprune, refused

from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError
from progprune_cli.pruning.strategies import PruneContext, build_strategy
from progprune_cli.pruning.strategies.channel_graph import output_gap

INFO = DataInfo(channels=1, height=1, width=4, num_classes=5, vocab=5)  # sequences of 4 tokens, vocabulary 5
# Per layer, the value every weight of a head's q/k/v rows and proj columns holds (k's negated: scores are |w|).
SCALES = ([3.0, 1.0, 4.0, 2.0], [0.5, 5.0, 6.0, 7.0])
SUPPORTED = ("supported: model=gpt's CausalSelfAttention, nn.MultiheadAttention (model=vit), model=hf's GPT2Attention "
             "and LlamaAttention, MistralAttention, Qwen2Attention")
# A head holds 2 rows × 8 inputs of each of q, k, v and 8 × 2 columns of proj: 64 weights.
L1 = [[64 * s for s in layer] for layer in SCALES]


def gpt(**values: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return model_of("gpt", {"n_layer": 2, "n_embd": 8, "n_head": 4, **values}, INFO)


def known_gpt() -> torch.nn.Module:
    """Two layers of 4 heads of dimension 2; each head's weights hold its value of SCALES."""
    model = gpt()
    with torch.no_grad():
        for block, scales in zip(model.blocks, SCALES):
            rows = torch.tensor(scales).repeat_interleave(2)
            for kind, sign in (("q", 1), ("k", -1), ("v", 1)):
                getattr(block.attn, kind).weight.copy_(sign * rows[:, None].expand(8, 8))
            block.attn.proj.weight.copy_(rows[None, :].expand(8, 8))
    return model


def heads(**values: object):
    return build_strategy(component("strategy", "heads", **values))


def ctx(batches: int = 1) -> PruneContext:
    data = [(INFO.example(3, seed=i), INFO.example(3, seed=10 + i)) for i in range(batches)]
    return PruneContext(data, lambda out, y: F.cross_entropy(out.flatten(0, 1), y.flatten()), torch.device("cpu"), 0)


def test_l1_scores_sum_the_heads_q_k_v_rows_and_proj_columns() -> None:
    model, strategy = known_gpt(), heads()
    masks = strategy.initial_masks(model, INFO)
    assert {unit: m.tolist() for unit, m in masks.items()} == {"blocks.0.attn": [True] * 4,
                                                             "blocks.1.attn": [True] * 4}
    scores = strategy.scores(model, masks, ctx())
    assert {unit: s.tolist() for unit, s in scores.items()} == {"blocks.0.attn": L1[0], "blocks.1.attn": L1[1]}


def test_taylor_scores_are_the_heads_summed_first_order_terms() -> None:
    model, strategy = gpt(), heads(criterion="taylor", batches=2)
    scores = strategy.scores(model, strategy.initial_masks(model, INFO), ctx(2))
    attn = model.blocks[1].attn
    expected = torch.zeros(4, dtype=torch.float64)
    for x, y in ctx(2).loader:
        params = [attn.q.weight, attn.q.bias, attn.k.weight, attn.k.bias, attn.v.weight, attn.v.bias, attn.proj.weight]
        grads = torch.autograd.grad(ctx().loss_fn(model.eval()(x), y), params)
        terms = [(p * g).double() for p, g in zip(params, grads)]
        per_head = sum(t.view(4, 2, -1).sum((1, 2)) for t in terms[:6]) + terms[6].view(8, 4, 2).sum((0, 2))
        expected += per_head.abs()
    torch.testing.assert_close(scores["blocks.1.attn"], expected, rtol=1e-9, atol=0)


def test_layer_scope_keeps_each_attentions_best_heads() -> None:
    model, strategy = known_gpt(), heads(sparsity=0.5)
    masks, report = strategy.step(model, strategy.initial_masks(model, INFO), 0.5, 1.0, ctx())
    assert {unit: m.tolist() for unit, m in masks.items()} == {"blocks.0.attn": [True, False, True, False],
                                                             "blocks.1.attn": [False, False, True, True]}
    assert (report.achieved, report.removed, report.notes) == (0.5, 4, [])


def test_global_scope_ranks_heads_across_layers_and_keeps_one_per_layer() -> None:
    model, strategy = known_gpt(), heads(scope="global")
    start = strategy.initial_masks(model, INFO)
    half, _ = strategy.step(model, start, 0.5, 1.0, ctx())
    # The 4 lowest of all 8: 32 (layer 1), 64, 128 and 192 (layer 0).
    assert {unit: m.tolist() for unit, m in half.items()} == {"blocks.0.attn": [False, False, True, False],
                                                            "blocks.1.attn": [False, True, True, True]}
    most, report = strategy.step(model, start, 0.75, 1.0, ctx())
    # 6 lowest would empty layer 0: the zero-width guard keeps its best head.
    assert {unit: m.tolist() for unit, m in most.items()} == {"blocks.0.attn": [False, False, True, False],
                                                            "blocks.1.attn": [False, False, True, True]}
    assert report.notes == ["blocks.0.attn: would be pruned to zero; kept its 1 highest-scoring entries"]


def test_a_removed_head_zeroes_exactly_its_q_k_v_rows_and_proj_columns() -> None:
    model, strategy = gpt(), heads()
    keep = torch.tensor([True, False, True, False])
    masks = strategy.to_param_masks(model, {"blocks.0.attn": keep})
    rows = torch.tensor([True, True, False, False, True, True, False, False])
    expected = {**{f"blocks.0.attn.{k}.weight": rows[:, None].expand(8, 8) for k in "qkv"},
                **{f"blocks.0.attn.{k}.bias": rows for k in "qkv"},
                "blocks.0.attn.proj.weight": rows[None, :].expand(8, 8)}
    assert set(masks) == set(expected)  # proj's bias belongs to no head
    assert all(torch.equal(masks[name], expected[name]) for name in expected)


def test_the_compacted_copy_cuts_the_heads_and_computes_what_the_masked_model_does(tmp_path: Path) -> None:
    from progprune_cli.checkpoints import load_checkpoint
    from progprune_cli.pruning.compacted import rebuild_compacted, save_compacted
    from progprune_cli.pruning.masks import apply_masks

    model, strategy = gpt(), heads()
    unit_masks = {"blocks.0.attn": torch.tensor([True, False, True, False]),
                  "blocks.1.attn": torch.tensor([False, False, False, True])}
    small = strategy.compact(model, unit_masks, INFO)
    attn = small.blocks[1].attn
    assert (attn.q.weight.shape, attn.v.bias.shape, attn.proj.weight.shape) == ((2, 8), (2,), (8, 2))
    # Dense: embeddings 5·8 + 4·8, per block 2·8 (ln_1) + 4·(8·8 + 8) (q, k, v, proj) + 2·8 (ln_2) +
    # (8·32 + 32) + (32·8 + 8) (mlp), ln_f 2·8, lm_head 8·5. A head is 3·(2·8 + 2) + 8·2 = 70 of them; 5 go.
    assert sum(p.numel() for p in model.parameters()) == 72 + 2 * 872 + 16 + 40 == 1_872
    assert sum(p.numel() for p in small.parameters()) == 1_872 - 5 * 70 == 1_522
    masked = copy.deepcopy(model)
    apply_masks(masked, strategy.to_param_masks(model, unit_masks))
    assert output_gap(masked, small, INFO.example) <= 1e-5
    assert output_gap(model, small, INFO.example) > 1e-3  # the heads did matter
    path = save_compacted(tmp_path / "compacted.pt", small, unit_masks, component("model", "gpt", n_layer=2,
                          n_embd=8, n_head=4), INFO, granularity="head")
    assert load_checkpoint(path)["granularity"] == "head"  # what the rebuild removes from a fresh model
    rebuilt = rebuild_compacted(load_checkpoint(path), path)
    assert output_gap(small, rebuilt, INFO.example) == 0.0


@pytest.mark.parametrize("values, model, error", [
    ({}, "mlp", f"strategy=heads: Sequential has no attention layer it can remove heads from ({SUPPORTED})"),
    ({"exclude": ["blocks.*"]}, "gpt", "strategy=heads: every attention layer is in strategy.exclude=['blocks.*']"),
    ({"layers": {"blocks.0": 0.5}}, "gpt", "strategy.layers.blocks.0: no such attention layer; choose from "
                                           "blocks.0.attn, blocks.1.attn"),
])
def test_what_it_cannot_prune_is_one_line(values: dict, model: str, error: str) -> None:
    images = DataInfo(channels=3, height=8, width=8, num_classes=10)
    built = gpt() if model == "gpt" else model_of(model, {"patch_size": 4} if model == "vit" else {}, images)
    with pytest.raises(UserError) as caught:
        heads(**values).check(built, INFO if model == "gpt" else images)
    assert str(caught.value) == error


@pytest.mark.parametrize("values, error", [
    ({"target": {"params": 0.5}}, "strategy.target.params=0.5: strategy=heads takes no budget yet; set "
                                  "strategy.sparsity (the fraction of heads removed)"),
    ({"pattern": "2:4"}, "strategy.pattern: 2:4 groups single weights; strategy=heads prunes whole heads here; set "
                         "strategy.pattern=null"),
    ({"scope": "lamp"}, "strategy.scope: lamp ranks single weights; strategy=heads prunes whole heads here; use "
                        "scope layer or global"),
    ({"criterion": "taylor", "batches": 0}, "strategy.batches: got 0; strategy.criterion=taylor needs at least 1 "
                                            "calibration batch"),
])
def test_keys_it_cannot_take_are_one_line(values: dict, error: str) -> None:
    with pytest.raises(UserError) as caught:
        heads(**values)
    assert str(caught.value) == error


def test_the_cli_refuses_a_model_without_attention(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    err = refused("train", "dataset=synthetic", "model=mlp", "+strategy=heads", cwd=tmp_path,
                  monkeypatch=monkeypatch, capsys=capsys)
    assert err == (f"progprune: error: strategy=heads: Sequential has no attention layer it can remove heads from "
                   f"({SUPPORTED})\n")
    assert not (tmp_path / "runs").exists()


def test_a_language_model_run_compacts_its_heads(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    done = progprune("train", "dataset=text", "model=gpt", "model.n_layer=1", "model.n_embd=16", "model.n_head=4",
                     "dataset.block_size=16", "+strategy=heads", "strategy.sparsity=0.5", "train.epochs=1",
                     "prune.epochs=1", "finetune.epochs=1", "evaluate.repeats=2", "evaluate.warmup=1",
                     "evaluate.dense_baseline=false", "evaluate.scratch_baseline=true", f"dataset.root={corpus}",
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "run"
    models = json.loads((run / "results.json").read_text())["models"]
    # 2 of 4 heads of dimension 4 go: 3·(4·16 + 4) rows and 16·4 proj columns each, 536 in all.
    assert (models["finetuned"]["params"]["physical"], models["compacted"]["params"]["physical"]) == (4_496, 3_960)
    assert models["compacted"]["params"]["nonzero"] == models["finetuned"]["params"]["nonzero"] == 3_960
    assert models["scratch"]["params"]["physical"] == 3_960  # the compacted architecture, trained from random init
    assert "## Perplexity" in (run / "results.md").read_text()
    from progprune_cli.export import load_model

    loaded = load_model(run, which="compacted")  # as `progprune export` reads it
    assert (loaded.blocks[0].attn.q.out_features, loaded.blocks[0].attn.proj.in_features) == (8, 8)
