"""Faults: a locked folder, a user's folder, divergence, a full disk, and pickles planted in checkpoints or the
dense cache all end in one line, leave nothing that looks like success, and lose nothing a user had."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from rich.console import Console

from conftest import PROGPRUNE, TINY, finished_run, progprune, resumable_copy
from progprune_cli import atomic, checkpoints
from progprune_cli.config import load_run_config
from progprune_cli.errors import UserError
from progprune_cli.results import status as status_module
from progprune_cli.results.status import RunLock
from progprune_cli.signals import Interrupted, StopRequest

FAST = [*TINY, "evaluate.dense_baseline=false"]


class Payload:
    """Unpickling this runs code: it writes a marker file (the attack a weights_only load must refuse)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.write_text, (self.marker, "the payload ran"))


def plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"model": Payload(marker)}, buffer)
    path.write_bytes(buffer.getvalue())


WEIGHT = [*FAST, "+strategy=weight"]


@pytest.fixture(scope="module")
def weight_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished weight run; its folder's runs/.cache holds the dense model of FAST's settings."""
    return finished_run(tmp_path_factory, *WEIGHT)


def test_a_run_folder_in_use_is_refused(weight_run: Path, workdir: Path) -> None:
    run_dir = resumable_copy(weight_run, workdir)  # resumable, then its lock held as a running run would
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        second = progprune("train", *WEIGHT, f"hydra.run.dir={run_dir}", cwd=workdir)
    finally:
        lock.release()
    assert second.returncode == 2
    assert second.stderr == (f"progprune: error: hydra.run.dir: {run_dir} is in use by another progprune run "
                             f"(pid {os.getpid()} on {os.uname().nodename}); wait for it or choose a new folder\n")


def test_a_users_own_folder_is_refused_and_left_untouched(workdir: Path) -> None:
    mine = workdir / "my-results"
    (mine / "plots").mkdir(parents=True)
    files = {"results.md": "my notes\n", "metrics.csv": "a,b\n1,2\n", "plots/fig.png": "not really a png"}
    for name, text in files.items():
        (mine / name).write_text(text)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in mine.rglob("*") if p.is_file()}
    done = progprune("train", *FAST, f"hydra.run.dir={mine}", cwd=workdir)
    assert done.returncode == 2
    assert done.stderr == (f"progprune: error: hydra.run.dir: {mine} is not empty and is not a progprune run folder "
                           "(no status.json); nothing in it was touched; choose a new or empty folder\n")
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in mine.rglob("*") if p.is_file()} == before
    assert not (mine / ".hydra").exists()


def test_divergence_fails_in_its_stage_and_keeps_the_last_good_checkpoint(workdir: Path) -> None:
    run_dir = workdir / "run"
    done = progprune("train", *FAST, "+strategy=weight", "optimizer=sgd", "finetune.lr=1e12",
                     f"hydra.run.dir={run_dir}", cwd=workdir)
    assert done.returncode == 2
    line = done.stderr.strip()
    assert "\n" not in line and line.startswith("progprune: error: finetune epoch 1, step ")
    assert "training diverged (lower finetune.lr, now 1e+12" in line and "the last good checkpoint is kept" in line
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and status["stage"] == "finetune"
    assert not (run_dir / "results.json").exists()
    pruned = torch.load(run_dir / "checkpoints" / "pruned.pt", weights_only=True)
    assert all(bool(torch.isfinite(v).all()) for v in pruned["model"].values())
    assert not (run_dir / "checkpoints" / "finetuned.pt").exists()


def _config(*overrides: str) -> dict:
    with initialize_config_module(config_module="progprune_cli.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*FAST, "+strategy=weight", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def test_disk_full_says_so_and_resume_afterwards_needs_no_hand_editing(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from progprune_cli.runner import run

    data = _config()
    cfg = load_run_config(data)
    run_dir = tmp_path / "run"
    real = atomic.write_atomic

    def full_for_finetune(path: Path, payload: bytes | str) -> None:
        if Path(path).name == "finetuned.pt":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, payload)

    def full_for_big_status(path: Path, payload: bytes | str) -> None:
        if "disk full" in str(payload) and "\n" in str(payload):  # the pretty status does not fit; compact does
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, payload)

    monkeypatch.setattr(checkpoints, "write_atomic", full_for_finetune)
    monkeypatch.setattr(status_module, "write_atomic", full_for_big_status)
    with pytest.raises(UserError, match=r"^disk full while writing the run folder .*; free space and continue with: "
                                        r"progprune resume "):
        run(cfg, data, [], run_dir, Console(file=io.StringIO()), None)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and status["stage"] == "finetune"
    assert status["error"].startswith("disk full: [Errno 28] No space left on device")
    assert torch.load(run_dir / "checkpoints" / "pruned.pt", weights_only=True)["stage"] == "prune"
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))  # no half-written temporary left behind
    monkeypatch.undo()
    results = run(cfg, data, [], run_dir, Console(file=io.StringIO()), None)
    assert results["status"] == "complete" if isinstance(results, dict) else results.status == "complete"
    log = (run_dir / "run.log").read_text()
    assert "prune: finished in an earlier attempt (checkpoints/pruned.pt); skipped" in log


def test_a_truncated_final_checkpoint_means_the_stage_runs_again(tmp_path: Path) -> None:
    from progprune_cli.runner import run

    data = _config()
    cfg = load_run_config(data)
    run_dir = tmp_path / "run"
    run(cfg, data, [], run_dir, Console(file=io.StringIO()), None)
    (run_dir / "results.json").unlink()
    finetuned = run_dir / "checkpoints" / "finetuned.pt"
    expected = torch.load(finetuned, weights_only=True)["model"]
    finetuned.write_bytes(finetuned.read_bytes()[:100])  # what a full disk did to a non-atomic copy
    run(cfg, data, [], run_dir, Console(file=io.StringIO()), None)
    assert "checkpoints/finetuned.pt is unreadable" in (run_dir / "run.log").read_text()
    again = torch.load(finetuned, weights_only=True)["model"]
    assert all(torch.equal(again[k], expected[k]) for k in expected)


def test_a_planted_pickle_in_an_interrupted_run_is_refused_and_never_runs(weight_run: Path, workdir: Path) -> None:
    run_dir = resumable_copy(weight_run, workdir)
    marker = workdir / "pwned"
    plant(run_dir / "checkpoints" / "pruned.pt", marker)
    resumed = progprune("resume", str(run_dir), cwd=workdir)
    assert resumed.returncode == 2
    assert resumed.stderr == (f"progprune: error: {run_dir / 'checkpoints' / 'pruned.pt'}: refused to load: it "
                              "holds pickled objects that would run code when read, not plain tensors; delete it "
                              "(or the run folder) if you did not put it there\n")
    for command in (["report", str(run_dir)], ["compare", str(run_dir)]):
        assert progprune(*command, cwd=workdir).returncode in (0, 1)
    assert not marker.exists()


def test_a_planted_pickle_in_the_dense_cache_is_refused_and_never_runs(weight_run: Path, workdir: Path) -> None:
    dense = [*FAST, "train.epochs=1"]
    # The finished run's dense cache entry (the key leaves the strategy out): a dense run of FAST would reuse it.
    shutil.copytree(weight_run.parent / "runs" / ".cache", workdir / "runs" / ".cache")
    (entry,) = (workdir / "runs" / ".cache").glob("*/checkpoint.pt")
    marker = workdir / "pwned"
    plant(entry, marker)
    again = progprune("train", *dense, cwd=workdir)
    assert again.returncode == 2
    assert again.stderr == (f"progprune: error: {entry}: refused to load: it holds pickled objects that would run "
                            "code when read, not plain tensors; delete it (or the run folder) if you did not put it "
                            "there\n")
    assert not marker.exists()


def test_first_signal_asks_to_stop_second_ctrl_c_stops_at_once(default_signals: None) -> None:
    stop = StopRequest()
    with stop.installed(), stop.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_outside_a_training_loop_a_signal_stops_at_once_naming_the_phase(default_signals: None) -> None:
    stop = StopRequest(phase="evaluate")
    with stop.installed():
        with pytest.raises(Interrupted) as caught:
            os.kill(os.getpid(), signal.SIGINT)
        assert (caught.value.signum, caught.value.where, caught.value.exit_code) == (signal.SIGINT,
                                                                                     "the evaluate phase", 130)
        os.kill(os.getpid(), signal.SIGTERM)  # a stop is under way: a repeated SIGTERM changes nothing
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # but a second Ctrl-C still stops at once


def test_an_ignored_sigint_stays_ignored() -> None:
    """A run started in the background of a script inherits SIGINT ignored; the terminal's Ctrl-C is not its."""
    code = ("import signal, os\nfrom progprune_cli.signals import Interrupted, StopRequest\ns = StopRequest()\n"
            "with s.installed():\n    os.kill(os.getpid(), signal.SIGINT)\nprint(s.requested)\n")
    out = subprocess.run([str(Path(PROGPRUNE).parent / "python"), "-c", code], capture_output=True, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert out.stdout == "False\n"
