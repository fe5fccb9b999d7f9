"""evaluate.scratch_baseline: the compacted architecture trained from random initialisation for train + prune +
finetune epochs, its own row in every table; resumable like every stage; refused where nothing is compacted."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import PROGPRUNE, TINY, finished_run, progprune, refused, resumable_copy
from progprune_cli.export import load_model

# TINY trains 1 + 2 + 1 epochs, so scratch trains 4 (dense_long would train 3); a checkpoint every 2 of the 4 steps
# of an epoch, so a kill after an epoch's line always leaves one to resume from.
RUN = [*TINY, "+strategy=structured", "evaluate.scratch_baseline=true", "evaluate.dense_baseline=false",
       "train.reuse=false", "checkpoint.every_steps=2"]
SCRATCH_EPOCHS = 1 + 2 + 1
CHANNEL_ONLY = ("only channel and head strategies compact (structured, activation, heads, or "
                "granularity=channel); set evaluate.scratch_baseline=false")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return finished_run(tmp_path_factory, *RUN)


def _figures(run: Path) -> dict:
    models = json.loads((run / "results.json").read_text())["models"]
    return {name: {k: m[k] for k in ("accuracy", "loss", "params", "macs", "epochs")} for name, m in models.items()}


def _state(run: Path, name: str) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / f"{name}.pt", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_the_scratch_row_is_the_compacted_architecture_trained_from_scratch(finished: Path) -> None:
    results = json.loads((finished / "results.json").read_text())
    models = results["models"]
    assert list(models) == ["original", "pruned", "finetuned", "compacted", "scratch"]
    scratch, compacted = models["scratch"], models["compacted"]
    assert scratch["label"] == "scratch (compacted arch)"
    assert scratch["params"]["physical"] == compacted["params"]["physical"] < models["original"]["params"]["physical"]
    assert scratch["epochs"] == SCRATCH_EPOCHS and compacted["epochs"] == SCRATCH_EPOCHS
    assert scratch["mask_only"] is False and scratch["latency"]["eval_runtime_s"]["median"] > 0
    # The same shapes, other values: trained from its own initialisation, not a copy of the compacted weights.
    ours, theirs = _state(finished, "scratch"), _state(finished, "compacted")
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    assert not all(torch.equal(ours[k], theirs[k]) for k in ours)
    with open(finished / "logs" / "scratch.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == list(range(SCRATCH_EPOCHS))
    assert "scratch (compacted arch)" in (finished / "results.md").read_text()
    model = load_model(finished, which="scratch")
    assert sum(p.numel() for p in model.parameters()) == scratch["params"]["physical"]


@pytest.mark.slow
def test_killed_in_the_scratch_stage_and_resumed_equals_an_uninterrupted_run(finished: Path, tmp_path: Path) -> None:
    # The finished run without scratch.pt: resuming it trains only the scratch stage (the others' checkpoints load).
    run = resumable_copy(finished, tmp_path)
    (run / "checkpoints" / "scratch.pt").unlink()
    proc = subprocess.Popen([PROGPRUNE, "resume", str(run)], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # the sign: scratch's first epoch ended (and its mid-epoch checkpoint exists)
        seen.append(line)
        if "scratch epoch 1:" in line:
            break
    else:
        raise AssertionError("the run ended before scratch's first epoch:\n" + "".join(seen))
    proc.kill()
    proc.wait()
    assert not (run / "checkpoints" / "scratch.pt").exists()
    resumed = progprune("resume", str(run), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "scratch: resumed from checkpoints/scratch.progress.pt at epoch" in (run / "run.log").read_text()
    assert _figures(run) == _figures(finished)
    assert (run / "metrics.csv").read_text() == (finished / "metrics.csv").read_text()
    ours, theirs = _state(run, "scratch"), _state(finished, "scratch")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.parametrize("overrides, message", [
    (["+strategy=weight"], "evaluate.scratch_baseline: strategy weight prunes single weights (mask-only), so there "
                           f"is no compacted architecture; {CHANNEL_ONLY}"),
    (["+strategy=random", "strategy.granularity=weight"],
     f"evaluate.scratch_baseline: strategy random prunes single weights (mask-only), so there is no compacted "
     f"architecture; {CHANNEL_ONLY}"),
    ([], f"evaluate.scratch_baseline: a dense run has no compacted architecture; {CHANNEL_ONLY}"),
])
def test_scratch_baseline_without_a_compacted_model_is_refused_before_any_folder(
        overrides: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    err = refused("train", *TINY, *overrides, "evaluate.scratch_baseline=true", cwd=tmp_path,
                  monkeypatch=monkeypatch, capsys=capsys)
    assert err == f"progprune: error: {message}\n"
    assert list(tmp_path.iterdir()) == []
