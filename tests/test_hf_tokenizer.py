"""dataset.tokenizer=hf (issue 18): the text tokenized by a Hugging Face folder's own tokenizer.json, by default the
model's (model=hf model.path=DIR); tiny WordLevel tokenizers and GPT-2 models saved to tmp_path, nothing downloaded."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from progprune_cli.errors import UserError
from conftest import component, composed, dataset_splits, model_of, progprune, refused

transformers = pytest.importorskip("transformers")

VOCAB = {"[UNK]": 0, "the": 1, "fox": 2, "dog": 3, "ran": 4, "sat": 5}
# 20 words of 4 characters: with val and test fractions 0.2, train is words 0-11, val 12-15, test 16-19 ("cat" is
# not in VOCAB: [UNK], id 0).
WORDS = "the fox ran the dog sat the cat ran the fox sat the dog ran the fox sat dog the".split()
TEXT = "".join(f"{w} " for w in WORDS)


def with_tokenizer(folder: Path, vocab: dict[str, int] = VOCAB) -> Path:
    """`folder` with a whitespace WordLevel tokenizer of `vocab`, saved as transformers saves a fast tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]").save_pretrained(folder)
    return folder


def gpt2(folder: Path, vocab_size: int = 300) -> Path:
    """A 1-layer GPT-2 of 64 positions, initialised at random (seeded), saved as safetensors."""
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=vocab_size, n_positions=64,
                                  bos_token_id=0, eos_token_id=0)
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_tokenizer(gpt2(tmp_path_factory.mktemp("hf") / "tiny"))


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def run_config(*overrides: str) -> Any:
    import progprune_cli.catalog  # noqa: F401  (the schemas that type a run's config)
    from progprune_cli.config import load_run_config

    return load_run_config(composed("dataset=text", *overrides))


def test_the_model_folders_tokenizer_makes_the_ids_split_where_the_characters_split(folder: Path,
                                                                                     corpus: Path) -> None:
    from progprune_cli.data import build_data

    cfg = run_config("dataset.tokenizer=hf", f"dataset.root={corpus}", "dataset.block_size=3",
                     "dataset.val_fraction=0.2", "dataset.test_fraction=0.2", "model=hf", f"model.path={folder}")
    assert cfg.dataset.tokenizer_path == str(folder)  # model.path, not said twice
    data = build_data(cfg.dataset, 0)
    assert data.info.classes == ("[UNK]", "the", "fox", "dog", "ran", "sat")
    assert data.info.vocab == data.info.num_classes == 6
    # train: the fox ran the dog sat the cat ran the fox sat → 1 2 4 1 3 5 1 0 4 1 2 5, in windows of 3.
    x, y = data.train.tensors
    assert x.tolist() == [[1, 2, 4], [1, 3, 5], [1, 0, 4]] and y.tolist() == [[2, 4, 1], [3, 5, 1], [0, 4, 1]]
    assert [t.tolist() for t in data.val.tensors] == [[[1, 3, 4]], [[3, 4, 1]]]  # the dog ran the
    assert [t.tolist() for t in data.test.tensors] == [[[2, 5, 3]], [[5, 3, 1]]]  # fox sat dog the
    # The dense cache knows the tokenizer by its file's content: not its path, and not as char's text-only key.
    from progprune_cli.stages.train import dense_settings

    parts = SimpleNamespace(cfg=cfg, origin=None, data=data, device=torch.device("cpu"))
    dataset = dense_settings(parts, 1)["dataset"]  # type: ignore[arg-type]
    assert "tokenizer_path" not in dataset and dataset["content"] == data.fingerprint
    assert data.fingerprint != hashlib.sha256(TEXT.encode()).hexdigest()


def test_the_text_key_changes_with_the_tokenizer_file_and_not_with_its_place(folder: Path, corpus: Path,
                                                                            tmp_path: Path) -> None:
    def fingerprint(tokenizer_path: Path, tokenizer: str = "hf") -> str | None:
        values = {"root": str(corpus), "tokenizer": tokenizer, "tokenizer_path": str(tokenizer_path),
                  "block_size": 3, "val_fraction": 0.2, "test_fraction": 0.2}
        return dataset_splits("text", values, 0).fingerprint

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    assert fingerprint(copy) == fingerprint(folder)
    with_tokenizer(copy, {**VOCAB, "cat": 6})  # the same ids for every other word
    assert fingerprint(copy) != fingerprint(folder)
    assert fingerprint(copy, "char") == hashlib.sha256(TEXT.encode()).hexdigest()  # char's key as before


@pytest.mark.parametrize(("make", "expected"), [
    ("none", "dataset.tokenizer: hf reads a Hugging Face folder's tokenizer and none is given; run with model=hf "
             "model.path=DIR (its tokenizer is used) or set dataset.tokenizer_path=DIR"),
    ("missing", "dataset.tokenizer_path: {given}: no such folder (a Hugging Face folder holding tokenizer.json)"),
    ("model only", "dataset.tokenizer_path: {dir} has no tokenizer.json, the file dataset.tokenizer=hf reads "
                   "(vocab.json, merges.txt or tokenizer.model alone are not read): write it with "
                   "AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR)"),
    ("auto_map", "dataset.tokenizer_path: {dir}/tokenizer_config.json names the folder's own code (auto_map); "
                 "progprune never runs a model folder's code (trust_remote_code): use a tokenizer transformers "
                 "itself implements"),
    ("not a tokenizer", "dataset.tokenizer_path: {dir}/tokenizer.json: not a tokenizer the tokenizers library reads "
                        "(Model missing. at line 1 column 2)"),
])
def test_a_tokenizer_folder_that_cannot_be_read_is_one_line(make: str, expected: str, folder: Path, corpus: Path,
                                                           tmp_path: Path) -> None:
    given = tmp_path / "given"
    if make in ("model only", "auto_map"):
        shutil.copytree(folder, given)
        (given / "tokenizer.json").unlink()
    if make == "not a tokenizer":
        given.mkdir()
        (given / "tokenizer.json").write_text("{}")  # the tokenizers library's own message is quoted
    if make == "auto_map":
        with_tokenizer(given)
        config = json.loads((given / "tokenizer_config.json").read_text())
        config["auto_map"] = {"AutoTokenizer": ["tokenization_evil.Evil", None]}
        (given / "tokenizer_config.json").write_text(json.dumps(config))
    values = {"root": str(corpus), "tokenizer": "hf", "block_size": 3, "val_fraction": 0.2, "test_fraction": 0.2}
    if make != "none":
        values["tokenizer_path"] = str(given)
    with pytest.raises(UserError) as caught:
        dataset_splits("text", values, 0)
    assert str(caught.value) == expected.format(dir=given.resolve(), given=given)


def test_the_cli_refuses_a_model_folder_without_a_tokenizer_before_any_run(folder: Path, corpus: Path,
                                                                          tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(folder, bare, ignore=shutil.ignore_patterns("tokenizer*"))
    err = refused("train", "dataset=text", "dataset.tokenizer=hf", f"dataset.root={corpus}", "dataset.block_size=3",
                  "model=hf", f"model.path={bare}", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert err == (f"progprune: error: dataset.tokenizer_path: {bare.resolve()} has no tokenizer.json, the file "
                   "dataset.tokenizer=hf reads (vocab.json, merges.txt or tokenizer.model alone are not read): write "
                   "it with AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare", "corpus.txt"]


def test_a_tokenizer_larger_than_the_models_vocabulary_is_one_line(corpus: Path, tmp_path: Path) -> None:
    small = with_tokenizer(gpt2(tmp_path / "small", vocab_size=4))
    data = dataset_splits("text", {"root": str(corpus), "tokenizer": "hf", "tokenizer_path": str(small),
                                   "block_size": 3, "val_fraction": 0.2, "test_fraction": 0.2}, 0)
    with pytest.raises(UserError) as caught:
        model_of("hf", {"path": str(small)}, data.info)
    assert str(caught.value) == (f"dataset.tokenizer: hf: the tokenizer at {small.resolve()} has 6 tokens, more than "
                                 f"the 4 of the model at {small.resolve()} (config.json vocab_size); give "
                                 "dataset.tokenizer_path a folder whose tokenizer has at most 4 (or "
                                 "dataset.tokenizer=byte: 256)")


def test_the_yaml_reads_the_tokenizer_from_model_path_only_where_there_is_one() -> None:
    assert component("dataset", "text").tokenizer_path is None  # the dataset's YAML alone: no model
    assert run_config("dataset.tokenizer=hf", "model=gpt").dataset.tokenizer_path is None
    assert run_config("model=hf", "model.path=/m", "dataset.tokenizer_path=/t").dataset.tokenizer_path == "/t"


def test_a_model_hf_run_with_its_own_tokenizer_trains_prunes_with_wanda_and_reports_perplexity(
        folder: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 20, encoding="utf-8")  # 400 tokens
    run = tmp_path / "run"
    done = progprune("train", "dataset=text", "dataset.tokenizer=hf", f"dataset.root={corpus}",
                     "dataset.block_size=8", "model=hf", f"model.path={folder}", "+strategy=wanda",
                     "strategy.batches=1", "train.epochs=1", "prune.epochs=1", "finetune.epochs=1",
                     "evaluate.repeats=2", "evaluate.warmup=1", "evaluate.dense_baseline=false",
                     f"hydra.run.dir={run}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    results = json.loads((run / "results.json").read_text())
    for record in results["models"].values():
        assert record["perplexity"] == {k: math.exp(v) for k, v in record["loss"].items()}
    # GPT-2's Conv1D layers are pruned by Wanda, not left dense.
    layers = results["pruning"]["steps"][-1]["layers"]
    prefix = "model.transformer.h.0."
    assert {unit: layer["achieved"] for unit, layer in layers.items()} == {
        f"{prefix}{name}.weight": 0.5 for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")}
    # Exported as a Hugging Face folder, it carries the tokenizer it was trained with: both load from it.
    from progprune_cli.export import cli as export_cli

    out = tmp_path / "exported"
    assert export_cli.main([str(run), "--format", "hf", "--out", str(out)]) == 0
    assert (out / "tokenizer.json").read_bytes() == (folder / "tokenizer.json").read_bytes()
    files = [name for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
             if (folder / name).is_file()]
    assert "tokenizer.json" in files and json.loads((out / "progprune.json").read_text())["tokenizer_files"] == files
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_file=str(out / "tokenizer.json"))
    assert tokenizer(TEXT)["input_ids"] == transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(folder / "tokenizer.json"))(TEXT)["input_ids"]
