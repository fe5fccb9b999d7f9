"""strategy=heads beyond model=gpt (issue 18): model=vit's nn.MultiheadAttention (packed in_proj) cut into a smaller
PrunedMultiheadAttention, model=hf's GPT2Attention (transposed Conv1D c_attn/c_proj) and LlamaAttention cut in place:
the entries a head's mask zeroes, L1 and Taylor scores by hand, the compacted copy (exact parameter counts, the masked
model's outputs in float64), its save and rebuild, the one-line refusals, and a whole vit run that compacts."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import TINY, component, model_of, progprune

from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError
from progprune_cli.pruning.masks import apply_masks
from progprune_cli.pruning.strategies import PruneContext, build_strategy
from progprune_cli.pruning.strategies.channel_graph import output_gap
from progprune_cli.pruning.strategies.heads_attention import SUPPORTED, PrunedMultiheadAttention

IMAGES = DataInfo(channels=3, height=8, width=8, num_classes=10)
TOKENS = DataInfo(channels=1, height=1, width=16, num_classes=256, vocab=256)  # byte tokens, block 16
VIT = "encoder.layers.encoder_layer_{}.self_attention"
GPT2 = "model.transformer.h.{}.attn"
REMOVED = ([True, False, True, False], [False, False, False, True])  # per layer, heads kept: 5 of 8 go
# E = 16, 4 heads of dimension 4. A head is 4 rows × (16 weights + 1 bias) of each of q, k, v and 16 × 4 columns of
# the output projection: 3·68 + 64 = 268 parameters.
HEAD = 3 * (4 * 16 + 4) + 16 * 4


def heads(**values: object):
    return build_strategy(component("strategy", "heads", **values))


def vit() -> nn.Module:
    """Two encoder blocks of 4 heads on 3×8×8 images (patch 4: 5 tokens), every weight random (torchvision zeroes
    the classifier's, which would hide every difference)."""
    torch.manual_seed(0)
    model = model_of("vit", {"patch_size": 4, "layers": 2, "heads": 4, "hidden_dim": 16, "mlp_dim": 32}, IMAGES)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return model


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer GPT-2 of 4 heads of dimension 4, random (seeded) and saved as safetensors."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_head=4, n_embd=16, vocab_size=300, n_positions=64, bos_token_id=0,
                                  eos_token_id=0)
    folder = tmp_path_factory.mktemp("hf") / "gpt2"
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(folder, safe_serialization=True)
    return folder


def unit_masks(name: str) -> dict[str, torch.Tensor]:
    return {name.format(i): torch.tensor(keep) for i, keep in enumerate(REMOVED)}


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def masked(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    copied = copy.deepcopy(model)
    apply_masks(copied, heads().to_param_masks(model, masks))
    return copied


def images_ctx(batches: int) -> PruneContext:
    data = [(IMAGES.example(3, seed=i), torch.tensor([1, 4, 7]) + i) for i in range(batches)]
    return PruneContext(data, F.cross_entropy, torch.device("cpu"), 0)


def test_a_vit_head_zeroes_its_rows_of_each_in_proj_third_and_its_out_proj_columns() -> None:
    model = vit()
    masks = heads().to_param_masks(model, {VIT.format(0): torch.tensor([True, False, True, True])})
    rows = torch.ones(16, dtype=torch.bool)
    rows[4:8] = False  # head 1
    expected = {"in_proj_weight": rows.repeat(3)[:, None].expand(48, 16), "in_proj_bias": rows.repeat(3),
                "out_proj.weight": rows[None, :].expand(16, 16)}
    assert set(masks) == {f"{VIT.format(0)}.{name}" for name in expected}  # out_proj's bias belongs to no head
    assert all(torch.equal(masks[f"{VIT.format(0)}.{name}"], mask) for name, mask in expected.items())


def test_the_compacted_vit_computes_what_the_masked_one_does_and_rebuilds(tmp_path: Path) -> None:
    from progprune_cli.checkpoints import load_checkpoint
    from progprune_cli.pruning.compacted import rebuild_compacted, save_compacted

    model, masks = vit(), unit_masks(VIT)
    small = heads().compact(model, masks, IMAGES)
    attn = small.encoder.layers[1].self_attention
    assert isinstance(attn, PrunedMultiheadAttention)
    assert (attn.q.weight.shape, attn.v.bias.shape, attn.proj.weight.shape) == ((4, 16), (4,), (16, 4))
    # Dense: conv 3·16·16 + 16, class token 16, positions 5·16, per block 2·32 (norms) + 48·16 + 48 + 16·16 + 16
    # (attention) + 16·32 + 32 + 32·16 + 16 (mlp), the final norm 32, the classifier 16·10 + 10.
    assert params(model) == 784 + 16 + 80 + 2 * (64 + 1_088 + 1_072) + 32 + 170 == 5_530
    assert params(small) == 5_530 - 5 * HEAD == 4_190
    assert output_gap(masked(model, masks), small, IMAGES.example) <= 1e-5
    assert output_gap(model, small, IMAGES.example) > 1e-3  # the heads did matter
    small.train()(IMAGES.example(2, seed=3)).sum().backward()  # it trains as it is (the scratch baseline does)
    path = save_compacted(tmp_path / "compacted.pt", small, masks, component("model", "vit", patch_size=4, layers=2,
                          heads=4, hidden_dim=16, mlp_dim=32), IMAGES, granularity="head")
    assert output_gap(small, rebuild_compacted(load_checkpoint(path), path), IMAGES.example) == 0.0


def test_vit_l1_and_taylor_scores_sum_a_heads_entries() -> None:
    model = vit()
    attn = model.encoder.layers[1].self_attention
    w, b, out = attn.in_proj_weight, attn.in_proj_bias, attn.out_proj.weight
    head = slice(8, 12)  # head 2
    l1 = heads().scores(model, heads().initial_masks(model, IMAGES), images_ctx(1))
    wd, outd = w.detach().double(), out.detach().double()
    by_hand = sum(wd[i * 16:(i + 1) * 16][head].abs().sum() for i in range(3)) + outd[:, head].abs().sum()
    torch.testing.assert_close(l1[VIT.format(1)][2], by_hand, rtol=1e-12, atol=0)
    taylor = heads(criterion="taylor", batches=2).scores(model, heads().initial_masks(model, IMAGES), images_ctx(2))
    expected = torch.zeros((), dtype=torch.float64)
    for x, y in images_ctx(2).loader:
        gw, gb, gout = torch.autograd.grad(F.cross_entropy(model.eval()(x), y), [w, b, out])
        term = sum(((w * gw)[i * 16:(i + 1) * 16][head].sum() + (b * gb)[i * 16:(i + 1) * 16][head].sum())
                   for i in range(3)) + (out * gout)[:, head].sum()
        expected += term.double().abs()
    torch.testing.assert_close(taylor[VIT.format(1)][2], expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("batch_first", [True, False])
def test_with_every_head_kept_it_answers_what_nn_multiheadattention_does(batch_first: bool) -> None:
    from progprune_cli.pruning.strategies.heads_attention import MultiheadLayout

    torch.manual_seed(0)
    full = nn.MultiheadAttention(16, 4, batch_first=batch_first).double().eval()
    with torch.no_grad():
        full.in_proj_bias.normal_()
        full.out_proj.bias.normal_()
    cut = MultiheadLayout.cut(copy.deepcopy(full), torch.arange(16))
    x, memory = torch.randn(3, 5, 16, dtype=torch.float64), torch.randn(3, 7, 16, dtype=torch.float64)
    if not batch_first:
        x, memory = x.transpose(0, 1), memory.transpose(0, 1)
    padding = torch.zeros(3, 7, dtype=torch.bool)
    padding[0, 5:] = True
    causal = torch.ones(5, 7, dtype=torch.bool).triu(3)
    calls = [((x, x, x), {"need_weights": False}), ((x, memory, memory), {"key_padding_mask": padding}),
             ((x, memory, memory), {"attn_mask": causal, "average_attn_weights": False}),
             ((x[:, 0] if batch_first else x[0], memory[0] if batch_first else memory[:, 0],
               memory[0] if batch_first else memory[:, 0]), {})]
    with torch.no_grad():
        for args, kwargs in calls:
            (want, want_weights), (got, got_weights) = full(*args, **kwargs), cut(*args, **kwargs)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
            assert (got_weights is None) == (want_weights is None)
            if want_weights is not None:
                torch.testing.assert_close(got_weights, want_weights, rtol=0, atol=1e-12)


def test_the_compacted_gpt2_computes_what_the_masked_one_does_and_rebuilds(gpt2_folder: Path, tmp_path: Path) -> None:
    from progprune_cli.checkpoints import load_checkpoint
    from progprune_cli.pruning.compacted import rebuild_compacted, save_compacted

    model, masks = model_of("hf", {"path": str(gpt2_folder)}, TOKENS), unit_masks(GPT2)
    entries = heads().to_param_masks(model, {GPT2.format(0): torch.tensor([True, True, False, True])})
    rows = torch.ones(16, dtype=torch.bool)
    rows[8:12] = False  # head 2: c_attn's columns of each third, c_proj's rows (Conv1D weights are transposed)
    assert torch.equal(entries[f"{GPT2.format(0)}.c_attn.weight"], rows.repeat(3)[None, :].expand(16, 48))
    assert torch.equal(entries[f"{GPT2.format(0)}.c_attn.bias"], rows.repeat(3))
    assert torch.equal(entries[f"{GPT2.format(0)}.c_proj.weight"], rows[:, None].expand(16, 16))
    assert len(entries) == 3
    small = heads().compact(model, masks, TOKENS)
    attn = small.model.transformer.h[1].attn
    assert (attn.c_attn.weight.shape, attn.c_attn.bias.shape, attn.c_proj.weight.shape) == ((16, 12), (12,), (4, 16))
    assert (attn.split_size, attn.num_heads) == (4, 1)
    # Dense: embeddings 300·16 + 64·16, per block 2·32 (norms) + 16·48 + 48 + 16·16 + 16 (attention) + 16·64 + 64 +
    # 64·16 + 16 (mlp), the final norm 32 (the head is tied to the embeddings).
    assert params(model) == 5_824 + 2 * (64 + 1_088 + 2_128) + 32 == 12_416
    assert params(small) == 12_416 - 5 * HEAD == 11_076
    assert output_gap(masked(model, masks), small, TOKENS.example) <= 1e-5
    assert output_gap(model, small, TOKENS.example) > 1e-3
    inner = model.model.transformer.h[0].attn
    c_attn, c_proj = inner.c_attn.weight.detach().double(), inner.c_proj.weight.detach().double()
    by_hand = c_attn.view(16, 3, 4, 4)[:, :, 2].abs().sum() + c_proj[8:12].abs().sum()
    l1 = heads().scores(model, heads().initial_masks(model, TOKENS), images_ctx(1))
    torch.testing.assert_close(l1[GPT2.format(0)][2], by_hand, rtol=1e-12, atol=0)
    path = save_compacted(tmp_path / "compacted.pt", small, masks, component("model", "hf", path=str(gpt2_folder)),
                          TOKENS, granularity="head")
    assert output_gap(small, rebuild_compacted(load_checkpoint(path), path), TOKENS.example) == 0.0
    # `export --format hf`: no config.json describes heads cut out layer by layer; the masked finetuned model goes.
    from progprune_cli.export.hf import fit_mlp_width, hf_model

    assert fit_mlp_width(small.model) is None and small.model.config.n_inner is None  # no one width describes it
    run = SimpleNamespace(checkpoint=lambda which: path)
    assert hf_model(run, "compacted", chosen=False, described=False) == "finetuned"  # type: ignore[arg-type]
    with pytest.raises(UserError) as caught:
        hf_model(run, "compacted", chosen=True, described=False)  # type: ignore[arg-type]
    assert str(caught.value) == ("--model compacted: its attention heads were cut out (strategy=heads), which no "
                                 "config.json describes; export --model finetuned (the same model, its removed heads "
                                 "masked to zero)")


def llama(kv_heads: int, arch: str = "Llama", **config: object) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    from progprune_cli.models.hf import CausalLM

    torch.manual_seed(0)
    cfg = getattr(transformers, f"{arch}Config")(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                                 num_attention_heads=4, num_key_value_heads=kv_heads, vocab_size=300,
                                                 max_position_embeddings=64, **config)
    return CausalLM(transformers.AutoModelForCausalLM.from_config(cfg).float(), TOKENS.vocab)


def test_a_compacted_llama_computes_what_the_masked_one_does() -> None:
    model, masks = llama(4), unit_masks("model.model.layers.{}.self_attn")
    small = heads().compact(model, masks, TOKENS)
    attn = small.model.model.layers[1].self_attn
    assert (attn.q_proj.out_features, attn.k_proj.out_features, attn.o_proj.in_features) == (4, 4, 4)
    assert params(model) - params(small) == 5 * (4 * 16 * 4)  # no biases: 4 rows of q, k, v and 4 columns of o
    assert output_gap(masked(model, masks), small, TOKENS.example) <= 1e-5
    assert output_gap(model, small, TOKENS.example) > 1e-3


@pytest.mark.parametrize("arch", ["Llama", "Mistral", "Qwen2"])
def test_grouped_key_value_heads_go_with_their_query_heads(arch: str) -> None:
    # 4 query heads share 2 key/value heads (dimension 4): a head of the strategy is a key/value head, its 4 rows of
    # k and v, and its 2 query heads' 8 rows of q and 8 columns of o. Qwen2's q, k and v have biases.
    model = llama(2, arch)
    attn = model.model.model.layers[0].self_attn
    assert type(attn).__name__ == f"{arch}Attention" and heads().initial_masks(model, TOKENS)[
        "model.model.layers.0.self_attn"].shape == (2,)
    masks = {"model.model.layers.0.self_attn": torch.tensor([False, True]),
             "model.model.layers.1.self_attn": torch.tensor([True, False])}
    entries = heads().to_param_masks(model, masks)
    q_kept = torch.arange(16) >= 8
    assert torch.equal(entries["model.model.layers.0.self_attn.q_proj.weight"], q_kept[:, None].expand(16, 16))
    assert torch.equal(entries["model.model.layers.0.self_attn.k_proj.weight"], (torch.arange(8) >= 4)[:, None]
                       .expand(8, 16))
    assert torch.equal(entries["model.model.layers.0.self_attn.o_proj.weight"], q_kept[None, :].expand(16, 16))
    bias = arch == "Qwen2"
    assert ("model.model.layers.0.self_attn.q_proj.bias" in entries) == bias
    small = heads().compact(model, masks, TOKENS)
    for layer in small.model.model.layers:
        cut = layer.self_attn
        assert (cut.q_proj.out_features, cut.k_proj.out_features, cut.v_proj.out_features,
                cut.o_proj.in_features) == (8, 4, 4, 8)
    # Per layer: 8 rows of q, 4 of k and of v (16 weights each, and a bias each for Qwen2), 8 columns of o.
    assert params(model) - params(small) == 2 * ((8 + 4 + 4) * (16 + bias) + 16 * 8)
    assert output_gap(masked(model, masks), small, TOKENS.example) <= 1e-5
    assert output_gap(model, small, TOKENS.example) > 1e-3
    q, k = attn.q_proj.weight.detach().double(), attn.k_proj.weight.detach().double()
    v, o = attn.v_proj.weight.detach().double(), attn.o_proj.weight.detach().double()
    by_hand = q[8:].abs().sum() + k[4:].abs().sum() + v[4:].abs().sum() + o[:, 8:].abs().sum()
    if bias:
        by_hand += sum(layer.bias.detach().double()[rows].abs().sum() for layer, rows in
                       ((attn.q_proj, slice(8, 16)), (attn.k_proj, slice(4, 8)), (attn.v_proj, slice(4, 8))))
    l1 = heads().scores(model, heads().initial_masks(model, TOKENS), images_ctx(1))
    torch.testing.assert_close(l1["model.model.layers.0.self_attn"][1], by_hand, rtol=1e-12, atol=0)


class OtherAttention(nn.Module):
    """An attention module of a kind strategy=heads does not know (as another transformers architecture's)."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)


@pytest.mark.parametrize("make, error", [
    (lambda: nn.Sequential(nn.MultiheadAttention(8, 2, kdim=4, vdim=4)),
     "strategy=heads: 0 (nn.MultiheadAttention) projects keys or values from another width (kdim/vdim); only "
     "packed q/k/v (in_proj_weight) is cut"),
    (lambda: nn.Sequential(nn.MultiheadAttention(8, 2, add_bias_kv=True)),
     "strategy=heads: 0 (nn.MultiheadAttention) adds a key/value of its own (add_bias_kv or add_zero_attn), which "
     "no head's mask covers"),
    (lambda: nn.Sequential(nn.Linear(8, 8), OtherAttention()),
     f"strategy=heads: Sequential's OtherAttention (1) is not an attention it can remove heads from ({SUPPORTED})"),
])
def test_attention_it_cannot_cut_is_one_line(make, error: str) -> None:
    with pytest.raises(UserError) as caught:
        heads().check(make(), TOKENS)
    assert str(caught.value) == error


def test_a_vit_run_compacts_its_heads(tmp_path: Path) -> None:
    done = progprune("train", *TINY, "model=vit", "model.patch_size=4", "model.layers=1", "model.heads=4",
                     "model.hidden_dim=16", "model.mlp_dim=16", "+strategy=heads", "strategy.sparsity=0.5",
                     "evaluate.dense_baseline=false", "evaluate.scratch_baseline=true",
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "run"
    models = json.loads((run / "results.json").read_text())["models"]
    # 1×8×8 images, patch 4: conv 16·16 + 16, class token 16, positions 5·16, the block 64 + 1_088 + 544, the
    # final norm 32, the classifier 16·4 + 4. 2 of 4 heads go: 2·268.
    assert models["finetuned"]["params"]["physical"] == 272 + 16 + 80 + 1_696 + 32 + 68 == 2_164
    assert models["compacted"]["params"]["physical"] == models["scratch"]["params"]["physical"] == 2_164 - 2 * HEAD
    from progprune_cli.export import load_model

    loaded = load_model(run, which="compacted")  # as `progprune export` reads it
    assert isinstance(loaded.encoder.layers[0].self_attention, PrunedMultiheadAttention)
    assert loaded(torch.zeros(2, 1, 8, 8)).shape == (2, 4)
