"""torchrun with 2 ranks (gloo, CPU) trains what one process trains with the same global batch: the masks agree on
every rank, only rank 0 writes (one run folder, the same files as a single run's, one console), and an interrupted
run resumes under torchrun to exactly what an uninterrupted one gives."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import PROGPRUNE

TORCHRUN = str(Path(sys.executable).parent / "torchrun")
# A global batch of 25 over 128 training samples: 13 + 12 samples per rank, and a last batch of 3 (2 + 1), so the
# ranks' unequal shares are exercised; every_steps=2 checkpoints mid-epoch too.
RUN = ["+strategy=weight", "dataset=synthetic", "train.epochs=2", "prune.epochs=2", "finetune.epochs=1",
       "train.batch_size=25", "prune.batch_size=25", "finetune.batch_size=25", "optimizer=sgd",
       "optimizer.momentum=0.9", "checkpoint.every_steps=2", "train.reuse=false", "evaluate.dense_baseline=false",
       "evaluate.repeats=1", "evaluate.warmup=0"]
STAGES = ("original", "pruned", "finetuned")
pytestmark = pytest.mark.slow


def torchrun(*args: str, cwd: Path, tmp: Path) -> subprocess.Popen:
    """2 ranks on this machine; TMPDIR points where the other rank's scratch folder must not be left behind."""
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([TORCHRUN, "--nproc_per_node=2", "--standalone", "-m", "progprune_cli", *args],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def files(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}


def checkpoint(run_dir: Path, name: str) -> dict:
    return torch.load(run_dir / "checkpoints" / f"{name}.pt", weights_only=True)


def checksum_lines(log: str, what: str) -> list[tuple[str, str]]:
    """(rank 0's, rank 1's) checksum from each `... <what> checksums (crc32)...: rank 0 X, rank 1 Y` line."""
    return re.findall(rf"{what} checksums \(crc32\)[^:]*: rank 0 ([0-9a-f]{{8}}), rank 1 ([0-9a-f]{{8}})$", log,
                      re.MULTILINE)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same run on 2 ranks and in one process (one after the other: this machine may have 2 cores)."""
    work, tmp = tmp_path_factory.mktemp("work"), tmp_path_factory.mktemp("tmp")
    ddp = torchrun("train", *RUN, f"hydra.run.dir={work / 'ddp'}", cwd=work, tmp=tmp)
    out, err = ddp.communicate(timeout=120)
    assert ddp.returncode == 0, out + err
    single = subprocess.run([PROGPRUNE, "train", *RUN, f"hydra.run.dir={work / 'single'}"], cwd=work,
                            capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stdout + single.stderr
    return {"ddp": work / "ddp", "single": work / "single", "work": work, "tmp": tmp, "stdout": out}  # type: ignore


def test_two_ranks_agree_on_masks_and_weights(runs: dict) -> None:
    log = (runs["ddp"] / "run.log").read_text()
    assert "torchrun: 2 ranks (gloo; rank 0 on cpu)" in log
    masks = checksum_lines(log, "mask")
    weights = checksum_lines(log, "weight")
    # Two pruning steps and the finetune stage's masks; a weight check after each of the 5 epochs.
    assert len(masks) == 3 and len(weights) == 5
    assert all(ours == theirs for ours, theirs in masks + weights), log
    assert "computed different masks" not in log and "weights differ" not in log


def test_only_rank_0_writes(runs: dict) -> None:
    work: Path = runs["work"]
    assert sorted(p.name for p in work.iterdir()) == ["ddp", "single"]  # no runs/ (no cache), no second folder
    assert not list(runs["tmp"].glob("progprune-rank*"))  # rank 1's scratch folder is gone
    assert files(runs["ddp"]) == files(runs["single"])
    stdout = runs["stdout"]
    assert stdout.count("train epoch 1:") == 1 and stdout.count("run folder:") == 1  # one console


def test_two_ranks_equal_one_process_with_the_same_global_batch(runs: dict) -> None:
    """Within float32 rounding: all-reduce sums the ranks' gradients (and evaluation sums) in another order than
    one process sums a batch. Accuracies are counts, so they must agree within 1e-6; losses within 1e-5
    (relative), weights within 1e-5; masks exactly."""
    ddp, single = (json.loads((runs[k] / "results.json").read_text()) for k in ("ddp", "single"))
    assert list(ddp["models"]) == list(single["models"]) == list(STAGES)
    for name in STAGES:
        ours, theirs = ddp["models"][name], single["models"][name]
        for split in ("train", "val", "test"):
            assert ours["accuracy"][split] == pytest.approx(theirs["accuracy"][split], abs=1e-6), (name, split)
            assert ours["loss"][split] == pytest.approx(theirs["loss"][split], rel=1e-5), (name, split)
        assert ours["params"] == theirs["params"]
        a, b = checkpoint(runs["ddp"], name), checkpoint(runs["single"], name)
        for key in b["model"]:
            torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=1e-5, msg=f"{name}: {key}")
        for key in b.get("masks") or {}:
            assert torch.equal(a["masks"][key], b["masks"][key]), f"{name}: mask {key}"
    steps = [{k: s[k] for k in ("epoch", "iteration", "target", "removed")} for s in ddp["pruning"]["steps"]]
    assert steps == [{k: s[k] for k in ("epoch", "iteration", "target", "removed")}
                     for s in single["pruning"]["steps"]]


def test_sigterm_under_torchrun_then_resume_equals_an_uninterrupted_run(runs: dict, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = torchrun("train", *RUN, f"hydra.run.dir={run_dir}", cwd=tmp_path, tmp=runs["tmp"])
    assert proc.stdout is not None
    for line in proc.stdout:  # rank 0's console: the sign that training has reached prune
        if re.search(r"\bprune epoch 1:", line):
            break
    proc.send_signal(signal.SIGTERM)  # torchrun passes it to both ranks; they agree on the step to stop at
    proc.communicate(timeout=120)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and status["stage"] == "prune" and status["signal"] == signal.SIGTERM
    resumed = torchrun("resume", str(run_dir), cwd=tmp_path, tmp=runs["tmp"])
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out + err
    assert "prune: resumed from checkpoints/prune.progress.pt at epoch" in (run_dir / "run.log").read_text()
    assert (run_dir / "metrics.csv").read_text() == (runs["ddp"] / "metrics.csv").read_text()
    for name in STAGES:
        a, b = checkpoint(run_dir, name), checkpoint(runs["ddp"], name)
        for key in b["model"]:
            assert torch.equal(a["model"][key], b["model"][key]), f"{name}: {key} differs after resume"
    assert not list(runs["tmp"].glob("progprune-rank*"))
