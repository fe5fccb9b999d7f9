"""dataset=text: tokenizers, contiguous splits and windows, the one-line refusals, perplexity in results and tables,
and a language-model run killed mid-epoch that resumes byte-identical."""

from __future__ import annotations

import json
import math
import signal
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import PROGPRUNE, component, composed, dataset_splits, progprune, refused

TEXT = "the quick brown fox jumps over the lazy dog. " * 40  # 1,800 characters


def text_file(where: Path, text: str = TEXT, name: str = "corpus.txt") -> Path:
    path = where / name
    path.write_text(text, encoding="utf-8")
    return path


def splits(root: Path | str | None, **values):
    return dataset_splits("text", {"root": None if root is None else str(root), **values}, seed=0)


def test_char_vocabulary_comes_from_the_training_split_and_unseen_characters_are_unknown(tmp_path: Path) -> None:
    # 80 characters: train is the first 64 ("ab" repeated), val the next 8 ("ab" with a "c"), test the last 8.
    text = "ab" * 32 + "abcababa" + "babababa"
    data = splits(text_file(tmp_path, text), tokenizer="char", block_size=3, val_fraction=0.1, test_fraction=0.1)
    assert data.info.classes == ("a", "b", "\ufffd") and data.info.vocab == data.info.num_classes == 3
    assert data.info.shape == (3,) and data.info.output_shape(2) == (2, 3, 3)
    # val: "abcababa" → ids 0 1 2 0 1 0 1 0; windows of 3 at stride 3, targets one token later.
    x, y = data.val.tensors
    assert x.tolist() == [[0, 1, 2], [0, 1, 0]] and y.tolist() == [[1, 2, 0], [1, 0, 1]]
    assert len(data.train) == (64 - 1) // 3 and data.test.tensors[0].tolist() == [[1, 0, 1], [0, 1, 0]]


def test_byte_tokens_are_the_utf8_bytes_and_split_where_the_characters_split(tmp_path: Path) -> None:
    text = "é" * 40 + "xyz" * 10  # 70 characters; "é" is two bytes
    data = splits(text_file(tmp_path, text), tokenizer="byte", block_size=4, val_fraction=0.2, test_fraction=0.2)
    assert data.info.vocab == 256 and data.info.classes[0xC3] == "\u00c3"
    # train: characters 0..41 = 40 × "é" + "xy" → 82 bytes; val: characters 42..55 as bytes.
    assert data.train.tensors[0][0].tolist() == [0xC3, 0xA9, 0xC3, 0xA9] and len(data.train) == (82 - 1) // 4
    assert bytes(data.val.tensors[0].flatten().tolist()) == "zxyzxyzxyzxy".encode()


def test_a_folder_is_its_txt_files_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    text_file(tmp_path / "b", "2" * 39, "z.txt")
    text_file(tmp_path, "1" * 59 + "2", "a.txt")
    text_file(tmp_path, "ignored", "notes.md")
    data = splits(tmp_path, tokenizer="char", block_size=4, val_fraction=0.2, test_fraction=0.2)
    # 100 characters: a.txt, a newline, b/z.txt. Train (60) is a.txt, so the newline is unknown (id 2) in val.
    assert data.info.classes == ("1", "2", "\ufffd")
    assert data.val.tensors[0].flatten().tolist() == [2] + [1] * 15


def test_the_embedded_default_is_pythons_documentation_topics() -> None:
    import pydoc_data.topics

    data = splits(None, tokenizer="char", block_size=64, val_fraction=0.05, test_fraction=0.05)
    topics = pydoc_data.topics.topics
    first = topics[sorted(topics)[0]]
    assert "".join(data.info.classes[i] for i in data.train.tensors[0][0].tolist()) == first[:64]
    assert data.fingerprint is not None and len(data.train) > 5000


@pytest.mark.parametrize("make, expected", [
    (lambda d: d / "nope.txt", "dataset.root: {d}/nope.txt does not exist; give a .txt file or a folder of them"),
    (lambda d: text_file(d, "  \n"), "dataset.root: {d}/corpus.txt is empty; it needs text to train on"),
    (lambda d: d, "dataset.root: {d} holds no .txt file; give a .txt file or a folder of them"),
    (lambda d: (d / "bad.txt").write_bytes(b"ok\xff") and d / "bad.txt",
     "dataset.root: {d}/bad.txt is not UTF-8 text (byte 2: b'\\xff'); convert it to UTF-8"),
    (lambda d: text_file(d, "x" * 30),
     "dataset.block_size: got 64; the train split of {d}/corpus.txt has only 27 tokens, and a sample needs "
     "block_size + 1"),
])
def test_bad_text_is_one_line_before_any_run(make, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    root = make(data)
    err = refused("train", "dataset=text", f"dataset.root={root}", "model=gpt",
                  cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert err == f"progprune: error: {expected.format(d=data)}\n"
    assert not (tmp_path / "runs").exists()


def test_an_edited_text_is_another_dense_model(tmp_path: Path) -> None:
    from progprune_cli.config.load import load_run_config
    from progprune_cli.stages.train import dense_settings

    path = text_file(tmp_path)
    cfg = load_run_config(composed("dataset=text", f"dataset.root={path}", "dataset.block_size=8"))
    keys = []
    for text in (TEXT, TEXT.upper()):
        path.write_text(text)
        parts = SimpleNamespace(cfg=cfg, origin=None, device=torch.device("cpu"),
                                data=splits(path, block_size=8))
        keys.append(dense_settings(parts, 1)["dataset"])
    assert keys[0]["content"] != keys[1]["content"] and keys[0]["root"] == keys[1]["root"]


def test_the_perplexity_table_and_answer(tmp_path: Path) -> None:
    from progprune_cli.report.tables import accuracy_table, answers
    from progprune_cli.results.schema import SCHEMA_VERSION, ModelRecord, Results, Splits

    def lm(loss: float, acc: float) -> ModelRecord:
        return ModelRecord(accuracy=Splits(0.5, 0.4, acc), loss=Splits(1.0, 1.0, loss),
                           perplexity=Splits(math.e, math.e, math.exp(loss)))

    results = Results.from_json({"models": {"original": lm(2.0, 0.3).to_json(), "finetuned": lm(2.5, 0.25).to_json()},
                                 "pruning": {"strategy": "weight"}, "schema_version": SCHEMA_VERSION})
    table = accuracy_table(results)
    assert table.title == "Perplexity" and table.rows == [
        ["original", "2.72", "2.72", "7.39", "2.885", "30.0%", "—"],
        ["pruned+finetuned", "2.72", "2.72", "12.18", "3.607", "25.0%", "+4.79"]]
    assert answers(results)[0] == ("perplexity cost of pruning: pruned+finetuned 12.18 test vs original 7.39 "
                                   "(+4.79)")


# A language-model run small enough for the suite: 4 optimizer steps per epoch, a checkpoint every 2.
def lm_run(corpus: Path) -> list[str]:
    return ["dataset=text", f"dataset.root={corpus}", "dataset.block_size=16", "dataset.val_fraction=0.1",
            "dataset.test_fraction=0.1", "train.batch_size=22", "model=gpt", "model.n_layer=1", "model.n_embd=16",
            "model.n_head=2",
            "+strategy=weight", "train.epochs=1", "prune.epochs=2", "finetune.epochs=1", "checkpoint.every_steps=2",
            "train.reuse=false", "evaluate.dense_baseline=false", "evaluate.repeats=2", "evaluate.warmup=1"]


def test_a_language_model_run_reports_perplexity_and_resumes_byte_identical(tmp_path: Path) -> None:
    corpus = text_file(tmp_path, TEXT * 1)
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    overrides = lm_run(corpus)
    done = progprune("train", *overrides, f"hydra.run.dir={reference}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Perplexity" in done.stdout and "perplexity cost of pruning" in done.stdout
    results = json.loads((reference / "results.json").read_text())
    for record in results["models"].values():
        assert record["perplexity"] == {k: math.exp(v) for k, v in record["loss"].items()}
    # Each pruning step's own cost, in results and in run.log.
    seconds = [step["seconds"] for step in results["pruning"]["steps"]]
    assert len(seconds) == 2 and all(s >= 0 for s in seconds)
    assert f"sparsity now 50.00% ({seconds[-1]:.2f} s)" in (reference / "run.log").read_text()
    # Killed right after prune's first epoch (a mid-stage checkpoint), then resumed.
    proc = subprocess.Popen([PROGPRUNE, "train", *overrides, f"hydra.run.dir={killed}"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    for line in proc.stdout:
        if "prune epoch 1:" in line:
            break
    proc.kill()
    proc.wait()
    resumed = progprune("resume", str(killed), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "prune: resumed from checkpoints/prune.progress.pt at epoch" in (killed / "run.log").read_text()
    ours, theirs = (json.loads((d / "results.json").read_text())["models"] for d in (killed, reference))
    assert {k: (v["loss"], v["perplexity"]) for k, v in ours.items()} == \
        {k: (v["loss"], v["perplexity"]) for k, v in theirs.items()}
    for name in ("pruned", "finetuned"):
        a, b = (torch.load(d / "checkpoints" / f"{name}.pt", weights_only=True)["model"] for d in (killed, reference))
        assert all(torch.equal(a[k], b[k]) for k in b)


def test_channel_strategies_refuse_a_language_model_without_attention(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    corpus = text_file(tmp_path)
    overrides = [o for o in lm_run(corpus) if not o.startswith(("+strategy", "model"))]
    err = refused("train", *overrides, "model=lstm", "+strategy=structured", cwd=tmp_path, monkeypatch=monkeypatch,
                  capsys=capsys)
    assert err == ("progprune: error: strategy=structured: removing channels of a language model is supported on "
                   "transformers' MLP hidden layers only (model=gpt or hf); prune its weights (+strategy=weight, "
                   "wanda or sparsegpt, or strategy.granularity=weight)\n")


def test_the_text_yaml_composes() -> None:
    cfg = component("dataset", "text")
    assert (cfg.root, cfg.tokenizer, cfg.block_size) == (None, "char", 64)
