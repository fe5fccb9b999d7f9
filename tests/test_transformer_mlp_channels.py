"""Channel strategies on transformers (issue 18): only the hidden neurons of each MLP go (gpt, vit); masks, the
compacted model, budgets and one language-model run, Hugging Face GPT-2's Conv1D MLPs (its MAC budget:
test_conv1d_macs.py), and the one-line refusals."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import component, model_of, progprune
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from progprune_cli.checkpoints import load_checkpoint
from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError
from progprune_cli.pruning.budget import find_budget
from progprune_cli.pruning.compacted import rebuild_compacted
from progprune_cli.pruning.masks import Masks, apply_masks
from progprune_cli.pruning.strategies import PruneContext, Strategy, build_strategy
from progprune_cli.pruning.strategies import channel_graph as cg
from progprune_cli.pruning.strategies.channels import TOLERANCE

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = DataInfo(channels=1, height=1, width=16, num_classes=11, vocab=11)  # block 16, vocabulary 11
IMAGES = DataInfo(channels=3, height=16, width=16, num_classes=10)
E, HIDDEN = 8, 32  # gpt: n_embd and its MLP's 4·n_embd hidden width
VIT_E, VIT_HIDDEN = 8, 16  # vit: hidden_dim and mlp_dim
GPT_MLPS = ["blocks.0.mlp.0", "blocks.1.mlp.0"]
VIT_MLPS = ["encoder.layers.encoder_layer_0.mlp.0", "encoder.layers.encoder_layer_1.mlp.0"]
# Per MLP: its first layer (whose output channels are the unit) → the second, which loses the same inputs.
SECOND = {**{f"blocks.{i}.mlp.0": f"blocks.{i}.mlp.2" for i in range(2)},
          **{f"encoder.layers.encoder_layer_{i}.mlp.0": f"encoder.layers.encoder_layer_{i}.mlp.3" for i in range(2)}}


def gpt() -> nn.Module:
    torch.manual_seed(0)
    return model_of("gpt", {"n_layer": 2, "n_head": 2, "n_embd": E}, TEXT)


def vit() -> nn.Module:
    torch.manual_seed(0)
    return model_of("vit", {"patch_size": 8, "layers": 2, "heads": 2, "hidden_dim": VIT_E, "mlp_dim": VIT_HIDDEN},
                    IMAGES)


def context(info: DataInfo) -> PruneContext:
    """Two calibration samples, and a loss that reads every output (a language model's is (batch, block, vocab))."""
    x = info.example(2, seed=0)
    loader = DataLoader(TensorDataset(x, torch.zeros(2, dtype=torch.long)), batch_size=2)
    return PruneContext(loader, lambda out, y: out.square().sum(), torch.device("cpu"), seed=0)


def strategy(name: str, **values: Any) -> Strategy:
    return build_strategy(component("strategy", name, **values))


def step(s: Strategy, model: nn.Module, info: DataInfo, sparsity: float) -> tuple[Masks, list[str]]:
    s.check(model, info)
    masks, report = s.step(model, s.initial_masks(model, info), sparsity, 1.0, context(info))
    return masks, report.notes


# --- the units and their masks ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("build, info, units, width", [(gpt, TEXT, GPT_MLPS, HIDDEN),
                                                       (vit, IMAGES, VIT_MLPS, VIT_HIDDEN)], ids=["gpt", "vit"])
def test_a_structured_step_masks_exactly_the_weakest_mlp_hidden_neurons(build: Any, info: DataInfo, units: list[str],
                                                                       width: int) -> None:
    model = build()
    s = strategy("structured", sparsity=0.25, keep_first=False)
    masks, notes = step(s, model, info, 0.25)
    # Nothing named as left dense: the residual stream (which the patch conv or embeddings write, the first layer
    # seeing the input here) and q/k/v are no candidates at all, whatever strategy.keep_first says.
    assert list(masks) == units and notes == []
    modules = dict(model.named_modules())
    expected: dict[str, torch.Tensor] = {}
    for unit, mask in masks.items():
        # Layer scope: round(0.25 · width) neurons go, those whose first-layer rows have the smallest L1 norms.
        norms = modules[unit].weight.detach().abs().sum(1)
        assert set((~mask).nonzero().flatten().tolist()) == set(norms.argsort()[: round(0.25 * width)].tolist())
        expected |= {f"{unit}.weight": mask[:, None].expand(width, modules[unit].in_features),
                     f"{unit}.bias": mask,
                     f"{SECOND[unit]}.weight": mask[None, :].expand(modules[SECOND[unit]].out_features, width)}
    params = s.to_param_masks(model, masks)
    assert {name for name, m in params.items() if not m.all()} == set(expected)
    assert all(torch.equal(params[name], m) for name, m in expected.items())


@pytest.mark.parametrize("name, values", [("activation", {"batches": 1}),
                                          ("taylor", {"granularity": "channel", "batches": 1}),
                                          ("random", {"granularity": "channel"})])
def test_every_channel_strategy_prunes_only_the_gpt_mlps_and_compacts_exactly(name: str, values: dict) -> None:
    model = gpt()
    s = strategy(name, sparsity=0.5, **values)
    masks, _ = step(s, model, TEXT, 0.5)
    assert {unit: int(mask.sum()) for unit, mask in masks.items()} == {unit: HIDDEN // 2 for unit in GPT_MLPS}
    assert s.compact(model, masks, TEXT) is not None  # compact() itself checks the masked model's outputs


# --- compaction ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("build, info, embed, width", [(gpt, TEXT, E, HIDDEN), (vit, IMAGES, VIT_E, VIT_HIDDEN)],
                         ids=["gpt", "vit"])
def test_the_compacted_transformer_computes_the_masked_one_and_loses_only_mlp_neurons(
        build: Any, info: DataInfo, embed: int, width: int) -> None:
    model = build()
    s = strategy("structured", sparsity=0.25)
    masks, _ = step(s, model, info, 0.25)
    small = s.compact(model, masks, info)
    masked = copy.deepcopy(model)
    apply_masks(masked, s.to_param_masks(model, masks))
    assert cg.output_gap(masked, small, info.example) <= TOLERANCE  # float64, seeded examples (token ids for gpt)
    gone = round(0.25 * width)
    # Per MLP: `gone` rows of the first layer's weight and bias, and as many columns of the second's weight.
    assert sum(p.numel() for p in small.parameters()) == \
        sum(p.numel() for p in model.parameters()) - 2 * gone * (embed + 1 + embed)
    kept = {name: p.shape for name, p in small.named_parameters()}
    for name, p in model.named_parameters():
        layer = name.rsplit(".", 1)[0]
        if layer in masks:
            assert kept[name] == (width - gone, *p.shape[1:])
        elif layer in {SECOND[unit] for unit in masks} and name.endswith("weight"):
            assert kept[name] == (embed, width - gone)
        else:  # embeddings, q/k/v/proj or attention, norms, patch conv, class token, heads: whole
            assert kept[name] == p.shape, name


def test_gpt_compaction_keeps_the_embedding_width() -> None:
    model = gpt()
    s = strategy("structured", sparsity=0.5)
    masks, _ = step(s, model, TEXT, 0.5)
    small = s.compact(model, masks, TEXT)
    assert (small.tok.weight.shape, small.pos.weight.shape, small.lm_head.weight.shape) == ((11, E), (16, E), (11, E))
    assert [block.mlp[0].out_features for block in small.blocks] == [HIDDEN // 2] * 2


# --- budgets ---------------------------------------------------------------------------------------------------------

def test_a_parameter_budget_on_gpt_counts_only_mlp_neurons() -> None:
    model = gpt()
    s = strategy("structured", target={"params": 0.9})
    s.check(model, TEXT)
    fit = find_budget(s, model, TEXT)
    assert fit is not None
    # 2064 parameters; each neuron of either MLP is 8 + 1 + 8 of them. Sparsity 0.2 removes round(6.4) = 6 per MLP.
    assert (fit.sparsity, fit.achieved) == (0.2, 1 - 2 * 6 * (E + 1 + E) / 2064)


# --- refusals --------------------------------------------------------------------------------------------------------

def test_strategy_layers_naming_an_attention_layer_is_a_one_line_error() -> None:
    s = strategy("structured", layers={"blocks.0.attn.q": 0.5})
    with pytest.raises(UserError) as error:
        s.check(gpt(), TEXT)
    assert str(error.value) == ("strategy.layers.blocks.0.attn.q: not an MLP hidden layer, the only layers pruned in a "
                                "transformer; choose from blocks.0.mlp.0, blocks.1.mlp.0")


# --- Hugging Face GPT-2: MLPs of transformers' Conv1D layers, weights stored (in, out) --------------------------------

def hf_gpt2() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    from progprune_cli.models.hf import CausalLM

    config = transformers.GPT2Config(vocab_size=11, n_positions=16, n_embd=E, n_layer=2, n_head=2, bos_token_id=0,
                                     eos_token_id=0)
    torch.manual_seed(0)
    return CausalLM(transformers.GPT2LMHeadModel(config), 11)


def test_hugging_face_gpt2_loses_exactly_the_weakest_conv1d_mlp_neurons_and_compacts_exactly() -> None:
    model = hf_gpt2()
    s = strategy("structured", sparsity=0.25)
    masks, notes = step(s, model, TEXT, 0.25)
    units = [f"model.transformer.h.{i}.mlp.c_fc" for i in range(2)]
    assert list(masks) == units and notes == []
    modules = dict(model.named_modules())
    expected: dict[str, torch.Tensor] = {}
    for unit, mask in masks.items():
        # A neuron is a column of c_fc's (in, out) weight: its L1 norm ranks it; c_proj loses the same rows.
        norms = modules[unit].weight.detach().abs().sum(0)
        assert set((~mask).nonzero().flatten().tolist()) == set(norms.argsort()[: round(0.25 * HIDDEN)].tolist())
        c_proj = unit.replace("c_fc", "c_proj")
        expected |= {f"{unit}.weight": mask[None, :].expand(E, HIDDEN), f"{unit}.bias": mask,
                     f"{c_proj}.weight": mask[:, None].expand(HIDDEN, E)}
    params = s.to_param_masks(model, masks)
    assert {name for name, m in params.items() if not m.all()} == set(expected)
    assert all(torch.equal(params[name], m) for name, m in expected.items())
    small = s.compact(model, masks, TEXT)
    masked = copy.deepcopy(model)
    apply_masks(masked, params)
    assert cg.output_gap(masked, small, TEXT.example) <= TOLERANCE
    assert sum(p.numel() for p in small.parameters()) == \
        sum(p.numel() for p in model.parameters()) - 2 * 8 * (E + 1 + E)
    assert [(b.mlp.c_fc.nf, b.mlp.c_proj.nx) for b in small.model.transformer.h] == [(HIDDEN - 8, HIDDEN - 8)] * 2
    assert small.model.transformer.wte.weight.shape == (11, E)


def hf_llama() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    from progprune_cli.models.hf import CausalLM

    config = transformers.LlamaConfig(vocab_size=11, hidden_size=E, intermediate_size=HIDDEN, num_hidden_layers=2,
                                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16)
    torch.manual_seed(0)
    return CausalLM(transformers.LlamaForCausalLM(config), 11)


def test_a_gated_llama_mlp_loses_the_same_neurons_from_gate_up_and_down_and_compacts_exactly(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from progprune_cli.export.hf import fit_mlp_width

    model = hf_llama()
    s = strategy("structured", sparsity=0.25)
    masks, notes = step(s, model, TEXT, 0.25)
    # Each layer's MLP is down(silu(gate(x)) * up(x)): a neuron is a row of gate_proj and of up_proj and a column of
    # down_proj. Attention's q, k and v are coupled through attention ops, never a unit.
    assert list(masks) == [f"model.model.layers.{i}.mlp.gate_proj" for i in range(2)] and notes == []
    modules = dict(model.named_modules())
    for unit, mask in masks.items():
        gate, up = modules[unit].weight.detach(), modules[unit.replace("gate", "up")].weight.detach()
        norms = (gate.abs().sum(1) + up.abs().sum(1)) / 2  # the unit's score: the mean of its two layers' L1 norms
        assert set((~mask).nonzero().flatten().tolist()) == set(norms.argsort()[: round(0.25 * HIDDEN)].tolist())
    params = s.to_param_masks(model, masks)
    assert {name for name, m in params.items() if not m.all()} == {
        f"model.model.layers.{i}.mlp.{p}.weight" for i in range(2) for p in ("gate_proj", "up_proj", "down_proj")}
    small = s.compact(model, masks, TEXT)
    masked = copy.deepcopy(model)
    apply_masks(masked, params)
    assert cg.output_gap(masked, small, TEXT.example) <= TOLERANCE
    assert [(b.mlp.gate_proj.out_features, b.mlp.up_proj.out_features, b.mlp.down_proj.in_features)
            for b in small.model.model.layers] == [(HIDDEN - 8,) * 3] * 2
    assert sum(p.numel() for p in small.parameters()) == sum(p.numel() for p in model.parameters()) - 2 * 8 * 3 * E
    # `export --format hf`: Llama's config says the one MLP width as intermediate_size.
    assert fit_mlp_width(small.model) == {"intermediate_size": HIDDEN - 8}
    small.model.save_pretrained(tmp_path / "small", safe_serialization=True)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "small", local_files_only=True).eval()
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=ids).logits, small.model.eval()(input_ids=ids).logits)


def test_a_transformer_with_every_mlp_excluded_is_a_one_line_error() -> None:
    excluded = [f"model.model.layers.{i}.mlp.gate_proj" for i in range(2)]
    with pytest.raises(UserError) as error:
        strategy("structured", exclude=excluded).check(hf_llama(), TEXT)
    assert str(error.value) == ("strategy=structured: no MLP hidden layer left to prune in CausalLM: on a transformer "
                                "only the hidden neurons of MLPs (a linear layer, elementwise ops, a linear layer; or "
                                f"gated) are pruned; strategy.exclude={excluded}")


def test_mlps_cut_to_one_width_are_described_by_the_config_and_reload_with_transformers(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from progprune_cli.export.hf import fit_mlp_width

    model = hf_gpt2()
    s = strategy("structured", sparsity=0.25)
    masks, _ = step(s, model, TEXT, 0.25)
    small = s.compact(model, masks, TEXT).model  # both layers keep HIDDEN - 8 neurons
    assert fit_mlp_width(small) == {"n_inner": HIDDEN - 8} and small.config.n_inner == HIDDEN - 8
    small.save_pretrained(tmp_path / "small", safe_serialization=True)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "small", local_files_only=True).eval()
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=ids).logits, small.eval()(input_ids=ids).logits)
    assert fit_mlp_width(model.model) == {}  # nothing cut: the config describes it as it is

    # Layer 0 keeps 24 neurons, layer 1 all 32: one width cannot describe both, and the config is left alone.
    uneven = {unit: mask if "h.0." in unit else torch.ones_like(mask) for unit, mask in masks.items()}
    assert fit_mlp_width(s.compact(hf_gpt2(), uneven, TEXT).model) is None
    assert small.config.n_inner == HIDDEN - 8 and hf_gpt2().model.config.n_inner is None


def test_export_as_a_hugging_face_folder_takes_the_masked_model_when_no_config_describes_the_cut(monkeypatch) -> None:
    from types import SimpleNamespace

    import progprune_cli.export.saved as saved
    from progprune_cli.errors import UserError
    from progprune_cli.export.hf import hf_model

    monkeypatch.setattr(saved, "read_checkpoint", lambda path, which: {})  # a channel strategy's compacted.pt
    run = SimpleNamespace(checkpoint=lambda which: f"checkpoints/{which}.pt")
    assert hf_model(run, "compacted", chosen=False, described=False) == "finetuned"  # type: ignore[arg-type]
    assert hf_model(run, "compacted", chosen=True, described=True) == "compacted"  # type: ignore[arg-type]
    assert hf_model(run, "pruned", chosen=True, described=False) == "pruned"  # type: ignore[arg-type]
    with pytest.raises(UserError) as caught:
        hf_model(run, "compacted", chosen=True, described=False)  # type: ignore[arg-type]
    assert str(caught.value) == ("--model compacted: its MLP hidden neurons were cut out to widths that differ "
                                 "between layers (a channel strategy), which no config.json describes; export --model "
                                 "finetuned (the same model, its removed neurons masked to zero)")


# --- a run -----------------------------------------------------------------------------------------------------------

def test_a_gpt_run_with_structured_pruning_ends_with_a_compacted_model(tmp_path: Path) -> None:
    (tmp_path / "corpus.txt").write_text("the quick brown fox jumps over the lazy dog. " * 20)
    run = tmp_path / "run"
    done = progprune("train", "dataset=text", "dataset.root=corpus.txt", "dataset.block_size=8",
                     "dataset.val_fraction=0.1", "dataset.test_fraction=0.1", "train.batch_size=64", "model=gpt",
                     "model.n_layer=1", f"model.n_embd={E}", "model.n_head=2", "+strategy=structured",
                     "strategy.sparsity=0.5", "train.epochs=1", "prune.epochs=1", "finetune.epochs=1",
                     "train.reuse=false", "evaluate.dense_baseline=false", "evaluate.repeats=2", "evaluate.warmup=1",
                     f"hydra.run.dir={run}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    params = json.loads((run / "results.json").read_text())["models"]["compacted"]["params"]
    # The one MLP loses 16 of its 32 neurons: 16 · (8 + 1 + 8) parameters.
    assert params["physical"] == params["nonzero"] == params["total"] - 16 * (E + 1 + E)
    path = run / "checkpoints" / "compacted.pt"
    small = rebuild_compacted(load_checkpoint(path), path)
    assert (small.blocks[0].mlp[0].out_features, small.blocks[0].mlp[2].in_features) == (HIDDEN // 2, HIDDEN // 2)
    assert small.tok.embedding_dim == small.blocks[0].attn.q.out_features == small.lm_head.in_features == E
