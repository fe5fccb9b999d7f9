"""Bad input that used to get past the pre-run check (a failed run folder left behind, or a traceback): each is now
one line naming the key, exit 2, and no folder; a closed stdout or an unwritable place is said, not a traceback."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import PROGPRUNE, TINY, progprune, refused
from progprune_cli import preflight
from progprune_cli.edge import exit_codes
from progprune_cli.errors import UserError
from progprune_cli.pruning.strategies import STRATEGIES

LAUNCHERS = "basic, joblib, parallel, slurm, submitit_local, submitit_slurm"
STRUCTURED_KEYS = ("exclude, include_bias, keep_first, layers, layers_from, name, norm, pattern, scope, sparsity, "
                   "target, threshold")
LAYERS = "conv1, conv1.weight, conv2, conv2.weight, fc, fc.weight"

CASES = [
    (["=1"], "=1: not an override (no key before '='); write KEY=VALUE, +KEY=VALUE or GROUP=NAME"),
    (["++train=5"], "train: got 5; expected a mapping of train keys"),
    (["optimizer.lr=nan"], "optimizer.lr: got nan; expected a finite number"),
    (["+strategy=weight", "+strategy.layers.nosuch=0.3"],
     f"strategy.layers.nosuch: no such prunable layer; choose from {LAYERS}"),
    (["+strategy=structured", "strategy.budget.macs=2"],
     f"strategy.budget: unknown key; allowed keys are {STRUCTURED_KEYS}"),
    (["hydra.run.dir='unterminated"],
     "hydra.run.dir='unterminated: not an override; write KEY=VALUE, +KEY=VALUE or GROUP=NAME"),
    (["hydra/launcher=nosuch"], f"hydra/launcher=nosuch: unknown hydra/launcher; choose one of {LAUNCHERS}"),
    (["hydra.rundir=x"], "hydra.rundir: unknown key; allowed keys are callbacks, defaults, help, hydra_help, "
                         "hydra_logging, job, job_logging, launcher, mode, output_subdir, overrides, run, runtime, "
                         "searchpath, sweep, sweeper, verbose"),
]


@pytest.mark.parametrize(("overrides", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_one_line_before_any_folder(overrides: list[str], message: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    err = refused("train", *TINY, *overrides, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert err == f"progprune: error: {message}\n"
    assert not (tmp_path / "runs").exists()


def test_a_hydra_override_the_installed_command_refuses(tmp_path: Path) -> None:
    overrides, message = CASES[6]  # hydra/launcher=nosuch: refused before Hydra starts
    done = progprune("train", *TINY, *overrides, cwd=tmp_path)
    assert (done.returncode, done.stderr, done.stdout) == (2, f"progprune: error: {message}\n", "")
    assert not (tmp_path / "runs").exists()


def test_a_layers_from_file_naming_an_unknown_layer_is_refused_before_any_folder(tmp_path: Path) -> None:
    (tmp_path / "layers.yaml").write_text("conv1: 0.2\nnosuch: 0.5\n")
    done = progprune("train", *TINY, "+strategy=weight", "+strategy.layers_from=layers.yaml", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, "progprune: error: strategy.layers.nosuch: no such prunable "
                                                 f"layer; choose from {LAYERS}\n")
    assert not (tmp_path / "runs").exists()


def test_a_strategy_key_without_a_strategy_still_says_so() -> None:
    with pytest.raises(UserError) as caught:
        preflight.check(["strategy.target.macs=2"], multirun=False)
    assert str(caught.value) == ("strategy.target.macs: no strategy chosen; add +strategy=NAME first (one of "
                                 f"{', '.join(STRATEGIES.names())})")


def test_a_read_only_folder_or_a_full_disk_is_one_line_before_hydra_writes(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # This suite runs as root here, where permissions do not stop a write: the checks' inputs are faked instead.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(preflight.os, "access", lambda path, mode: False)
    with pytest.raises(UserError) as caught:
        preflight.check([*TINY, f"hydra.run.dir={tmp_path / 'a' / 'b'}"], multirun=False)
    assert str(caught.value) == (f"hydra.run.dir: cannot write into {tmp_path} (permission denied or a read-only "
                                 "filesystem); choose another folder")
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 4096))
    with pytest.raises(UserError) as caught:
        preflight.check([*TINY, "seed=0,1"], multirun=True)
    assert str(caught.value) == (f"hydra.sweep.dir: the disk holding {tmp_path} is full (4 KB free); free some "
                                 "space or choose another folder")


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_a_write_refused_during_a_run_is_one_line(code: int, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as caught:
        with exit_codes(multirun=False, sweep_failed=str):
            raise OSError(code, "Read-only file system" if code == errno.EROFS else "Permission denied",
                          "/runs/x/results.md")
    assert caught.value.code == 2
    why = "Read-only file system" if code == errno.EROFS else "Permission denied"
    assert capsys.readouterr().err == f"progprune: error: cannot write /runs/x/results.md ({why})\n"


def test_a_closed_stdout_does_not_stop_the_run(tmp_path: Path) -> None:
    """`progprune train | head -1`: the reader goes away after one line; the run finishes, run.log has it all."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([PROGPRUNE, "train", *TINY, "+strategy=weight", f"hydra.run.dir={run_dir}"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=300)
    assert (proc.returncode, err) == (0, b"")
    assert json.loads((run_dir / "status.json").read_text())["status"] == "complete"
    assert "evaluate: measuring took" in (run_dir / "run.log").read_text()
