"""Resume: a run killed with SIGKILL anywhere in train, prune or finetune and resumed equals an uninterrupted run;
SIGTERM and Ctrl-C stop after a checkpoint with status `interrupted` and exit 143 / 130."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import PROGPRUNE, progprune, untimed

# Small but real: 4 optimizer steps per epoch on the synthetic data, a checkpoint every 2 steps (so kills land
# between mid-epoch checkpoints too), no dense cache, no dense_long (it would only repeat train's case).
RUN = ["+strategy=weight", "dataset=synthetic", "train.epochs=3", "prune.epochs=3", "finetune.epochs=3",
       "schedule=linear", "checkpoint.every_steps=2", "train.reuse=false", "evaluate.dense_baseline=false",
       "evaluate.repeats=2", "evaluate.warmup=1"]
STAGE_EPOCHS = {"train": 3, "prune": 3, "finetune": 3}
pytestmark = pytest.mark.slow


def start(run_dir: Path, cwd: Path, *extra: str) -> subprocess.Popen:
    """The installed command in its own process, SIGINT at its default even if this test's was ignored
    (a child of a background job inherits SIG_IGN and would never see Ctrl-C)."""
    return subprocess.Popen([PROGPRUNE, "train", *RUN, *extra, f"hydra.run.dir={run_dir}"], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_line(proc: subprocess.Popen, pattern: str) -> list[str]:
    """Read the child's output until a line matches: the sign that it reached the point we want."""
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if re.search(pattern, line):
            return seen
    raise AssertionError(f"the run ended before printing {pattern!r}:\n{''.join(seen)}")


def figures(run_dir: Path) -> dict:
    """Everything of results.json that must not depend on being resumed (timings and run info aside)."""
    results = json.loads((run_dir / "results.json").read_text())
    models = {name: {k: record[k] for k in ("accuracy", "loss", "params", "macs", "epochs")}
              for name, record in results["models"].items()}
    return {"models": models, "pruning": untimed(results["pruning"]), "layers": results["layers"]}


def tensors(run_dir: Path, name: str) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "checkpoints" / f"{name}.pt", weights_only=True)
    flat = {f"model.{k}": v for k, v in state["model"].items()}
    flat.update({f"mask.{k}": v for k, v in (state.get("masks") or {}).items()})
    return flat


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run, never interrupted."""
    work = tmp_path_factory.mktemp("reference")
    done = progprune("train", *RUN, f"hydra.run.dir={work / 'run'}", cwd=work)
    assert done.returncode == 0, done.stderr
    return work / "run"


def assert_same_as(reference: Path, run_dir: Path) -> None:
    assert figures(run_dir) == figures(reference)
    assert (run_dir / "metrics.csv").read_text() == (reference / "metrics.csv").read_text()
    for name in ("original", "pruned", "finetuned"):
        ours, theirs = tensors(run_dir, name), tensors(reference, name)
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert torch.equal(ours[key], theirs[key]), f"{name}: {key} differs after resume"


def test_sigkill_anywhere_then_resume_equals_an_uninterrupted_run(reference: Path, tmp_path: Path) -> None:
    # One kill point per suite run, drawn afresh each time (the seed is printed to replay it): every stage and epoch
    # gets its turn over runs of the suite, at a third of the cost of killing in all three stages every time.
    seed = int.from_bytes(os.urandom(2), "little")
    stage = random.Random(seed).choice(sorted(STAGE_EPOCHS))
    epoch = random.Random(seed + 1).randint(1, STAGE_EPOCHS[stage] - 1)
    print(f"kill point: SIGKILL right after '{stage} epoch {epoch}:' is printed (seed {seed})")
    run_dir = tmp_path / "run"
    proc = start(run_dir, tmp_path)
    wait_for_line(proc, rf"\b{stage} epoch {epoch}:")
    proc.kill()
    proc.wait()
    assert json.loads((run_dir / "status.json").read_text())["status"] == "running"  # what SIGKILL leaves
    shown = json.loads(progprune("compare", str(run_dir), "--json", cwd=tmp_path).stdout)
    assert shown[0]["status"] == "killed"  # its pid is gone from this host: not "running"
    report = progprune("report", str(run_dir), cwd=tmp_path)
    assert report.stdout.startswith(f"{run_dir}: killed in stage {stage}: pid {proc.pid} on ")
    resumed = progprune("resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{stage}: resumed from checkpoints/{stage}.progress.pt at epoch" in (run_dir / "run.log").read_text()
    assert json.loads((run_dir / "status.json").read_text())["status"] == "complete"
    assert_same_as(reference, run_dir)


def test_sigterm_or_ctrl_c_checkpoints_then_resumes(reference: Path, tmp_path: Path) -> None:
    # SIGTERM (exit 143) or Ctrl-C's SIGINT (exit 130), drawn per suite run like the SIGKILL point (seed printed).
    seed = int.from_bytes(os.urandom(2), "little")
    signum, code = random.Random(seed).choice([(signal.SIGTERM, 143), (signal.SIGINT, 130)])
    print(f"signal: {signal.Signals(signum).name} right after 'prune epoch 1:' is printed (seed {seed})")
    run_dir = tmp_path / "run"
    proc = start(run_dir, tmp_path)
    wait_for_line(proc, r"\bprune epoch 1:")
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == code, out
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and status["stage"] == "prune"
    assert status["signal"] == signum and status["pid"] == proc.pid
    assert re.fullmatch(r"prune epoch [23], step [1-4] of 4", status["at"]), status["at"]
    assert (run_dir / "checkpoints" / "prune.progress.pt").exists()
    assert not (run_dir / "results.json").exists()
    resumed = progprune("resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_same_as(reference, run_dir)


def test_resume_refuses_another_config_naming_the_keys(reference: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    (run_dir / "results.json").unlink()  # an unfinished run, as far as a resume can tell
    other = progprune("train", *RUN, "optimizer.lr=0.5", "seed=3", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert other.returncode == 2
    assert other.stderr == (f"progprune: error: hydra.run.dir: {run_dir} holds a run with another config "
                            "(optimizer.lr, seed); resume it with the same config (progprune resume RUN_DIR) or "
                            "choose a new folder\n")


def test_resume_of_a_finished_run_says_so(reference: Path) -> None:
    done = progprune("resume", str(reference), cwd=reference.parent)
    assert done.returncode == 0
    assert done.stdout == f"progprune: {reference} is complete; nothing to resume\n"


def test_resume_needs_a_run_or_sweep_folder(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    done = progprune("resume", str(tmp_path / "notes"), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (f"progprune: error: {tmp_path / 'notes'}: not a run folder (no status.json) or a sweep "
                           "folder of runs\n")
