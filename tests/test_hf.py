"""model=hf (a local Hugging Face causal LM) and `progprune export RUN_DIR --format hf` (issue 18): tiny random
transformers models saved to tmp_path; nothing is downloaded."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml

from progprune_cli.data import DataInfo
from progprune_cli.errors import UserError
from conftest import component, composed, model_of, progprune

transformers = pytest.importorskip("transformers")

BYTES16 = DataInfo(channels=1, height=1, width=16, num_classes=256, vocab=256)  # byte tokens, block 16


def tiny(folder: Path, **config: Any) -> Path:
    """A 1-layer GPT-2 of vocabulary 300 and 64 positions, initialised at random (seeded), saved as safetensors."""
    return saved(folder, transformers.GPT2Config(**{"n_layer": 1, "n_head": 2, "n_embd": 16, "vocab_size": 300,
                                                    "n_positions": 64, "bos_token_id": 0, "eos_token_id": 0,
                                                    **config}))


def tiny_decoder(folder: Path, arch: str, kv_heads: int) -> Path:
    """A 1-layer `arch` (Llama, Mistral) of width 16, 4 query heads, MLP 64 wide, vocabulary 300, 64 positions."""
    return saved(folder, getattr(transformers, f"{arch}Config")(
        vocab_size=300, hidden_size=16, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=kv_heads, max_position_embeddings=64))


def saved(folder: Path, config: Any) -> Path:
    """A model of `config` initialised at random (seeded), saved in `folder` as safetensors."""
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny(tmp_path_factory.mktemp("hf") / "tiny")


def reloaded(path: Path) -> Any:
    return transformers.AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()


def test_built_from_the_folder_it_gives_the_saved_models_logits_cut_to_the_datas_vocabulary(folder: Path) -> None:
    model = model_of("hf", {"path": str(folder)}, BYTES16).eval()
    ids = BYTES16.example(3, seed=1)
    with torch.no_grad():
        expected = reloaded(folder)(input_ids=ids).logits
        got = model(ids)
    assert got.shape == (3, 16, 256) and expected.shape == (3, 16, 300)
    assert torch.equal(got, expected[..., :256])
    # The HF module's own names, under the wrapper's `model.` prefix: what masks and layer tables name.
    assert "model.transformer.h.0.attn.c_attn.weight" in dict(model.named_parameters())


def test_its_source_weights_and_cache_identity_are_the_folders_content(folder: Path, tmp_path: Path) -> None:
    from progprune_cli.models.weights import code_identity, load_weights, source_of
    from progprune_cli.stages.train import dense_settings

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)

    def settings(path: Path) -> dict[str, Any]:
        """The dense cache's settings of a run of the folder at `path`."""
        cfg = component("model", "hf", path=str(path))
        fitted = load_weights(torch.nn.Linear(1, 1), cfg, BYTES16)  # the folder's own: nothing loaded into this
        origin = SimpleNamespace(source=source_of(cfg), code=code_identity(cfg), weights=fitted)
        parts = SimpleNamespace(cfg=dataclasses.replace(base, model=cfg), origin=origin,
                                data=SimpleNamespace(fingerprint=None), device=torch.device("cpu"))
        return dense_settings(parts, 1)  # type: ignore[arg-type]

    import progprune_cli.catalog  # noqa: F401  (the schemas that type a run's config)
    from progprune_cli.config import load_run_config

    base = load_run_config(composed("dataset=text", "dataset.tokenizer=byte", "model=hf", f"model.path={folder}"))
    cfg = component("model", "hf", path=str(folder))
    assert source_of(cfg) == f"hf:{folder.resolve()}"
    weights = load_weights(torch.nn.Linear(1, 1), cfg, BYTES16)
    assert weights is not None and weights.file == str(folder.resolve() / "model.safetensors")
    config_sha = hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()
    assert code_identity(cfg) == f"transformers {transformers.__version__}, config.json sha256:{config_sha}"
    here, there = settings(folder), settings(copy)
    assert here == there and "path" not in here["model"]  # a copy elsewhere is the same model
    assert here["model"]["weights_sha256"] == weights.sha256
    tiny(copy, n_embd=8)  # the same path, other weights: another model
    assert settings(copy)["model"]["weights_sha256"] != weights.sha256


@pytest.mark.parametrize("make, info, expected", [
    ("tiny", DataInfo(channels=1, height=8, width=8, num_classes=10),
     "model=hf: needs token data (dataset=text); got 1×8×8 images"),
    ("tiny", DataInfo(channels=1, height=1, width=16, num_classes=400, vocab=400),
     "dataset.tokenizer: the data's vocabulary has 400 tokens, more than the 300 of the model at {dir} (config.json "
     "vocab_size); choose a tokenizer with at most 300 (byte: 256)"),
    ("tiny", DataInfo(channels=1, height=1, width=128, num_classes=256, vocab=256),
     "dataset.block_size: 128 is longer than the model at {dir} takes (64 positions, config.json n_positions); set "
     "dataset.block_size <= 64"),
    ("none", BYTES16, "model.path: {given}: no such folder"),
    ("file", BYTES16, "model.path: {given}: not a folder (a Hugging Face model folder holds config.json and "
                      "model.safetensors)"),
    ("empty", BYTES16, "model.path: {dir} has no config.json (not a Hugging Face model folder)"),
    ("auto_map", BYTES16, "model.path: {dir}/config.json names the folder's own code (auto_map); progprune never "
                          "runs a model folder's code (trust_remote_code): use a model transformers itself implements"),
    ("bin", BYTES16, "model.path: {dir} has pytorch_model.bin but no model.safetensors; progprune reads safetensors "
                     "only (a .bin is a pickle): save it with save_pretrained(DIR, safe_serialization=True)"),
    ("no_weights", BYTES16, "model.path: {dir} has no model.safetensors"),
    ("narrower", BYTES16, "model.path: {dir}/model.safetensors does not fit its config.json: shapes differ: "
                          "transformer.h.0.attn.c_attn.bias [48] in the file vs [24] in the config, "
                          "transformer.h.0.attn.c_attn.weight [16, 48] in the file vs [8, 24] in the config, "
                          "transformer.h.0.attn.c_proj.bias [16] in the file vs [8] in the config (+13 more)"),
    ("missing", BYTES16, "model.path: {dir}/model.safetensors does not fit its config.json: missing keys "
                         "transformer.h.0.mlp.c_fc.weight"),
])
def test_a_folder_or_data_that_does_not_fit_is_one_line(make: str, info: DataInfo, expected: str, folder: Path,
                                                       tmp_path: Path) -> None:
    given = tmp_path / "model"
    if make == "tiny":
        given = folder
    elif make == "file":
        given.write_text("not a folder")
    elif make != "none":
        given.mkdir()
        if make in ("auto_map", "bin", "no_weights", "narrower", "missing"):
            keys = json.loads((folder / "config.json").read_text())
            if make in ("narrower", "missing"):
                from safetensors.torch import load_file, save_file  # a dependency of transformers

                state = load_file(folder / "model.safetensors")
                if make == "missing":
                    del state["transformer.h.0.mlp.c_fc.weight"]
                else:
                    keys["n_embd"] = 8  # the file's tensors are 16 wide
                save_file(state, given / "model.safetensors", metadata={"format": "pt"})
            if make == "auto_map":
                keys["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.Evil"}
                shutil.copy(folder / "model.safetensors", given)
                (given / "modeling_evil.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w')\n")
            if make == "bin":
                (given / "pytorch_model.bin").write_bytes(b"a pickle")
            (given / "config.json").write_text(json.dumps(keys))
    with pytest.raises(UserError) as caught:
        model_of("hf", {"path": str(given)}, info)
    assert str(caught.value) == expected.format(dir=given.resolve(), given=given)
    assert not (tmp_path / "ran").exists()


def test_a_missing_transformers_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # what `import transformers` meets where it is missing
    with pytest.raises(UserError) as caught:
        model_of("hf", {"path": str(folder)}, BYTES16)
    assert str(caught.value) == ("model=hf needs the transformers package: pip install 'progprune[models]' (in a "
                                 "checkout: pip install -e '.[models]')")


def test_format_hf_needs_a_model_hf_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from progprune_cli.export import cli as export_cli

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    config = composed("dataset=text", "model=gpt", "+strategy=weight")
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    assert export_cli.main([str(run), "--format", "hf"]) == 2
    assert capsys.readouterr().err == (f"progprune export: error: --format hf: needs a model=hf run; {run} ran "
                                       "model=gpt\n")


def byte_run(folder: Path, tmp_path: Path, *strategy: str) -> Path:
    """A finished run of the installed command: the GPT-2 in `folder` on about 3,000 bytes of text, one epoch a
    stage, pruned by `strategy`."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" ".join(f"word{i % 37} and {i % 11}" for i in range(250)))
    run = tmp_path / "run"
    done = progprune("train", "dataset=text", "dataset.tokenizer=byte", f"dataset.root={corpus}",
                     "dataset.block_size=16", "model=hf", f"model.path={folder}", *strategy, "train.epochs=1",
                     "prune.epochs=1", "finetune.epochs=1", "evaluate.repeats=2", "evaluate.warmup=1",
                     "evaluate.dense_baseline=false", f"hydra.run.dir={run}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return run


def test_a_run_of_a_local_hf_model_is_pruned_exported_and_reloads_with_transformers(
        folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from progprune_cli.export import cli as export_cli
    from progprune_cli.export import hf as export_hf
    from progprune_cli.export import load_model

    run = byte_run(folder, tmp_path, "+strategy=weight")
    results = json.loads((run / "results.json").read_text())
    assert results["run"]["model_source"] == f"hf:{folder.resolve()}"
    assert results["run"]["weights"]["file"] == str(folder.resolve() / "model.safetensors")

    out = tmp_path / "X"
    assert export_cli.main([str(run), "--format", "hf", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out} (finetuned hf, Hugging Face folder")
    assert {"config.json", "model.safetensors", "progprune.json"} <= {p.name for p in out.iterdir()}
    exported = reloaded(out)
    finetuned = load_model(run, "finetuned")
    ids = BYTES16.example(4, seed=2)
    with torch.no_grad():
        assert (exported(input_ids=ids).logits[..., :256] - finetuned(ids)).abs().max() <= 1e-5
    nonzero = sum(int(torch.count_nonzero(p)) for p in exported.parameters())
    assert nonzero == results["models"]["finetuned"]["params"]["nonzero"] < results["models"]["original"]["params"][
        "nonzero"]
    side = json.loads((out / "progprune.json").read_text())
    assert (side["format"], side["model"], side["run_id"], side["nonzero"]) == ("hf", "finetuned", "run", nonzero)
    assert side["sparsity"] == pytest.approx(results["models"]["finetuned"]["params"]["sparsity"])

    before = sorted(p.name for p in tmp_path.iterdir())  # never over an existing folder; nothing else left
    assert export_cli.main([str(run), "--format", "hf", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"progprune export: error: --out: {out} already exists and is not empty; "
                                       "--format hf writes a new folder: choose another --out\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    # A reload that disagrees with the run's model: refused, and nothing written (no temporary folder either).
    monkeypatch.setattr(export_hf, "largest_diff", lambda model, folder, ids: 0.5)
    assert export_cli.main([str(run), "--format", "hf", "--out", str(tmp_path / "Y")]) == 2
    assert capsys.readouterr().err == ("progprune export: error: --format hf: the reloaded folder's logits differ from "
                                       "the run's finetuned model by 0.5 (> 1e-05) on 9 test windows; nothing "
                                       "written\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_structured_run_exports_its_compacted_model_with_the_mlp_width_in_config_json(
        folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from progprune_cli.export import cli as export_cli
    from progprune_cli.export import load_model

    run = byte_run(folder, tmp_path, "+strategy=structured", "strategy.sparsity=0.25")
    # The default model, compacted: its one MLP kept 48 of 64 neurons, which config.json's n_inner now says.
    assert export_cli.main([str(run), "--format", "hf"]) == 0
    out = run / "export" / "compacted-hf"
    assert capsys.readouterr().out.startswith(f"wrote {out} (compacted hf, Hugging Face folder: config.json, "
                                              "model.safetensors, progprune.json, config.json's n_inner set to 48)")
    exported = reloaded(out)
    assert exported.config.n_inner == 48
    # 16 neurons gone, each 16 weights in, a bias and 16 weights out.
    assert exported.num_parameters() == reloaded(folder).num_parameters() - 16 * (16 + 1 + 16)
    ids = BYTES16.example(4, seed=2)
    with torch.no_grad():
        assert (exported(input_ids=ids).logits[..., :256] - load_model(run, "compacted")(ids)).abs().max() <= 1e-5
    side = json.loads((out / "progprune.json").read_text())
    assert (side["model"], side["config_changed"]) == ("compacted", {"n_inner": 48})


def test_a_llama_runs_gated_mlps_are_cut_and_exported_with_intermediate_size(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from progprune_cli.export import cli as export_cli
    from progprune_cli.export import load_model

    folder = tiny_decoder(tmp_path / "llama", "Llama", kv_heads=4)
    run = byte_run(folder, tmp_path, "+strategy=structured", "strategy.sparsity=0.25")
    assert export_cli.main([str(run), "--format", "hf"]) == 0
    out = run / "export" / "compacted-hf"
    assert capsys.readouterr().out.startswith(f"wrote {out} (compacted hf, Hugging Face folder: config.json, "
                                              "model.safetensors, progprune.json, config.json's intermediate_size "
                                              "set to 48)")
    exported = reloaded(out)
    # 16 neurons gone, each a row of gate_proj and of up_proj and a column of down_proj, 16 weights each.
    assert exported.num_parameters() == reloaded(folder).num_parameters() - 16 * 3 * 16
    ids = BYTES16.example(4, seed=2)
    with torch.no_grad():
        assert (exported(input_ids=ids).logits[..., :256] - load_model(run, "compacted")(ids)).abs().max() <= 1e-5


def test_a_run_removes_grouped_key_value_heads_with_their_query_heads(tmp_path: Path) -> None:
    from progprune_cli.export import load_model

    folder = tiny_decoder(tmp_path / "mistral", "Mistral", kv_heads=2)
    run = byte_run(folder, tmp_path, "+strategy=heads", "strategy.sparsity=0.5")
    params = json.loads((run / "results.json").read_text())["models"]["compacted"]["params"]
    # One of the 2 key/value heads goes with its 2 query heads: 8 rows of q, 4 of k and of v, 8 columns of o.
    assert params["physical"] == params["total"] - (8 + 4 + 4) * 16 - 16 * 8
    attn = load_model(run, "compacted").model.model.layers[0].self_attn  # rebuilt as `progprune export` reads it
    assert (attn.q_proj.out_features, attn.k_proj.out_features, attn.o_proj.in_features) == (8, 4, 8)


def test_importing_the_models_does_not_import_transformers() -> None:
    import subprocess

    # Nor do the pruning strategies and the MAC counter, which know transformers' Conv1D (pruning/layout.py).
    code = ("import sys; import progprune_cli.models, progprune_cli.pruning.strategies, progprune_cli.measure; "
            "print('transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "False\n"
