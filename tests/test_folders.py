"""Whose folder is it: a run folder is locked before Hydra writes into it, and a sweep never writes into a folder
of the user's."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import TINY, progprune
from progprune_cli.results.status import RunLock


def test_a_second_run_into_a_folder_being_started_is_refused_before_hydra_writes(tmp_path: Path) -> None:
    """The first run has locked its folder and Hydra has written its .hydra/, but status.json does not exist yet
    (the state 0-0.2 s after a start): a second run started into the same folder must not rewrite .hydra/."""
    run_dir = tmp_path / "run"
    first = RunLock(run_dir)
    first.acquire()
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "overrides.yaml").write_text("- seed=1\n")  # the first run's
    try:
        second = progprune("train", *TINY, "seed=2", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    finally:
        first.release()
    assert second.returncode == 2
    assert second.stderr == (f"progprune: error: hydra.run.dir: {run_dir} is in use by another progprune run (pid "
                             f"{os.getpid()} on {os.uname().nodename}); wait for it or choose a new folder\n")
    assert (run_dir / ".hydra" / "overrides.yaml").read_text() == "- seed=1\n"
    assert sorted(p.name for p in run_dir.iterdir()) == [".hydra", ".lock"]


def test_a_sweep_into_a_users_folder_is_refused_and_leaves_it_untouched(tmp_path: Path) -> None:
    mine = tmp_path / "my-sweep"
    mine.mkdir()
    (mine / "summary.md").write_text("my own summary\n")
    done = progprune("train", "-m", *TINY, "seed=0,1", f"hydra.sweep.dir={mine}", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, f"progprune: error: hydra.sweep.dir: {mine} is not empty and is "
                                                 "not a progprune sweep folder; nothing in it was touched; choose a "
                                                 "new or empty folder\n")
    assert [p.name for p in mine.iterdir()] == ["summary.md"]
    assert (mine / "summary.md").read_text() == "my own summary\n"


def test_a_sweep_into_an_existing_sweep_folder_points_to_resume(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    done = progprune("train", "-m", *TINY, "seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, f"progprune: error: hydra.sweep.dir: {sweep} already holds a sweep; "
                                                 f"continue it with progprune resume {sweep}, or choose a new "
                                                 "folder\n")
