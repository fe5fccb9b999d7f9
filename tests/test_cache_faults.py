"""Damaged files that a run can rebuild: a dense-cache entry that does not load or does not fit is a miss (trained
again and replaced), a decode cache with impossible labels is decoded again, metric logs come back from the
checkpoints, and a checkpoint of random bytes is unreadable (redone), not "code"."""

from __future__ import annotations

import io
import random
import shutil
from pathlib import Path

import pytest
import torch

from conftest import TINY, dataset_splits, finished_run, progprune, resumable_copy
from progprune_cli.errors import UserError
from progprune_cli.export import load_model
from progprune_cli.checkpoints import NotACheckpoint, load_checkpoint
from test_data_loaders import write_mnist

FAST = [*TINY, "evaluate.dense_baseline=false"]


def _save(path: Path, value: object) -> None:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    path.write_bytes(buffer.getvalue())


def _damage(entry: Path, how: str) -> str:
    """Damage a cache entry's checkpoint; the reason run.log must give for not using it."""
    if how == "truncated":
        entry.write_bytes(entry.read_bytes()[:100])
        return "RuntimeError: PytorchStreamReader failed reading zip archive: failed finding central directory"
    if how == "wrong weights":
        _save(entry, {"model": {"conv9.weight": torch.ones(2)}, "rows": []})
        return "RuntimeError: Error(s) in loading state_dict for TwoConvCNN: Missing key(s) in state_dict:"
    state = torch.load(entry, weights_only=True)
    _save(entry, {**state, "rows": "not rows"})
    return "ValueError: rows: expected a list, found str"


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished dense run; the folder it ran in holds its dense cache entry (runs/.cache)."""
    return finished_run(tmp_path_factory, *FAST)


@pytest.mark.parametrize("how", ["truncated", "wrong weights", "wrong rows"])
def test_a_bad_dense_cache_entry_is_a_miss_trained_again_and_replaced(how: str, dense_run: Path,
                                                                      tmp_path: Path) -> None:
    shutil.copytree(dense_run, tmp_path / "first")
    shutil.copytree(dense_run.parent / "runs" / ".cache", tmp_path / "runs" / ".cache")
    (entry,) = (tmp_path / "runs" / ".cache").glob("*/checkpoint.pt")
    why = _damage(entry, how)
    again = progprune("train", *FAST, "hydra.run.dir=again", cwd=tmp_path)
    assert (again.returncode, again.stderr) == (0, "")
    log = (tmp_path / "again" / "run.log").read_text()
    line = next(line for line in log.splitlines() if "unusable" in line)
    assert line.startswith(f"train: the cached dense model in {entry.parent} is unusable ({why}")
    assert line.endswith("); training it again and replacing it")
    # Replaced atomically with the model trained again, which is the first run's (same settings, same seed).
    replaced = load_checkpoint(entry)["model"]
    original = load_checkpoint(tmp_path / "first" / "checkpoints" / "original.pt")["model"]
    assert all(torch.equal(replaced[k], original[k]) for k in original)
    assert (tmp_path / "again" / "metrics.csv").read_text() == (tmp_path / "first" / "metrics.csv").read_text()


def test_a_decode_cache_with_labels_past_the_classes_is_decoded_again(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    first = dataset_splits("mnist", {"root": str(tmp_path)}, 0)
    for path in (tmp_path / ".progprune").glob("*.pt"):
        data = torch.load(path, weights_only=True)
        torch.save({**data, "labels": data["labels"] + 100}, path)
    again = dataset_splits("mnist", {"root": str(tmp_path)}, 0)
    assert torch.equal(again.train.labels, first.train.labels) and int(again.test.labels.max()) < 10


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return finished_run(tmp_path_factory, *FAST, "+strategy=weight", "train.reuse=false")


def test_corrupt_logs_are_rebuilt_and_a_random_bytes_checkpoint_is_redone_on_resume(finished: Path,
                                                                                   tmp_path: Path) -> None:
    # One resume for both faults: logs/*.csv and metrics.csv garbled, finetuned.pt random bytes.
    run = resumable_copy(finished, tmp_path)
    for stage in ("train", "prune", "finetune"):
        (run / "logs" / f"{stage}.csv").write_bytes(random.Random(stage).randbytes(300))
    (run / "metrics.csv").write_text("garbage\n")
    expected = load_checkpoint(run / "checkpoints" / "finetuned.pt")["model"]
    (run / "checkpoints" / "finetuned.pt").write_bytes(random.Random(0).randbytes(5000))
    with pytest.raises(UserError) as caught:
        load_model(run, which="finetuned")
    assert str(caught.value) == (f"{run / 'checkpoints' / 'finetuned.pt'}: not a readable torch checkpoint "
                                 "(neither a torch archive nor a pickle of plain values)")
    done = progprune("train", *FAST, "+strategy=weight", "train.reuse=false", f"hydra.run.dir={run}",
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert ("checkpoints/finetuned.pt is unreadable (neither a torch archive nor a pickle of plain values); not "
            "using it") in (run / "run.log").read_text()
    again = load_checkpoint(run / "checkpoints" / "finetuned.pt")["model"]
    assert all(torch.equal(again[k], expected[k]) for k in expected)
    assert (run / "metrics.csv").read_text() == (finished / "metrics.csv").read_text()
    for stage in ("train", "prune", "finetune"):
        assert (run / "logs" / f"{stage}.csv").read_text() == (finished / "logs" / f"{stage}.csv").read_text()


def test_any_random_bytes_get_the_same_one_line_reason(tmp_path: Path) -> None:
    """Whichever byte the unpickler trips on first (UnpicklingError, UnicodeDecodeError, EOFError, ...), random bytes
    read as one reason; a damaged torch archive keeps torch's own."""
    path = tmp_path / "x.pt"
    for seed in range(300):
        path.write_bytes(random.Random(seed).randbytes(64 + seed))
        with pytest.raises(NotACheckpoint) as caught:
            load_checkpoint(path)
        assert caught.value.reason == "neither a torch archive nor a pickle of plain values", seed
    _save(path, {"w": torch.ones(2)})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(NotACheckpoint) as caught:
        load_checkpoint(path)
    assert caught.value.reason.startswith("RuntimeError: PytorchStreamReader failed reading zip archive")
