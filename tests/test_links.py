"""Symbolic links in a run or cache folder are refused in one line, and nothing they point to is written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import TINY, finished_run, progprune, refused, resumable_copy
from progprune_cli.atomic import LinkRefused, append_text, refuse_links, write_atomic

FAST = [*TINY, "evaluate.dense_baseline=false", "+strategy=weight"]
VICTIM = "a file of the user's, far from any run folder\n"


def _refusal(path: Path) -> str:
    return (f"progprune: error: {path} is a symbolic link; progprune never follows links in a run or cache folder "
            "(one could point anywhere); remove it\n")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished run; each test copies it and makes the copy resumable (as an interrupted run is)."""
    return finished_run(tmp_path_factory, *FAST, "train.reuse=false")


@pytest.mark.parametrize("entry", [".lock", "run.log", "status.json", ".hydra/overrides.yaml", "checkpoints"])
def test_a_link_in_a_run_folder_is_refused_and_its_target_untouched(entry: str, finished: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    run = resumable_copy(finished, tmp_path)
    victim = tmp_path / "victim"
    if entry == "checkpoints":  # a whole folder redirected: every checkpoint write would land elsewhere
        victim.mkdir()
        (victim / "mine.txt").write_text(VICTIM)
        os.rename(run / "checkpoints", tmp_path / "moved")
    else:
        victim.write_text(VICTIM)
        (run / entry).unlink(missing_ok=True)
    (run / entry).symlink_to(victim)
    before = sorted(p.name for p in victim.iterdir()) if victim.is_dir() else victim.read_text()
    args = ("train", *FAST, "train.reuse=false", f"hydra.run.dir={run}")
    if entry == ".lock":  # the lock is taken first: this one through the installed command
        done = progprune(*args, cwd=tmp_path)
        assert (done.returncode, done.stderr) == (2, _refusal(run / entry))
    else:
        assert refused(*args, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys) == _refusal(run / entry)
    assert (sorted(p.name for p in victim.iterdir()) if victim.is_dir() else victim.read_text()) == before


def test_a_link_in_a_dense_cache_entry_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    assert progprune("train", *TINY, cwd=tmp_path).returncode == 0
    (entry,) = (tmp_path / "runs" / ".cache").iterdir()
    victim = tmp_path / "victim"
    victim.write_text(VICTIM)
    (entry / "lock").unlink()
    (entry / "lock").symlink_to(victim)
    again = progprune("train", *TINY, "hydra.run.dir=again", cwd=tmp_path)
    assert (again.returncode, again.stderr) == (2, _refusal(entry / "lock"))
    assert victim.read_text() == VICTIM


def test_writes_never_follow_a_final_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text(VICTIM)
    log = tmp_path / "run.log"
    log.symlink_to(victim)
    with pytest.raises(LinkRefused, match="run.log is a symbolic link"):
        append_text(log, "appended\n")
    write_atomic(log, "replaced\n")  # an atomic write replaces the link itself, never what it points to
    assert (victim.read_text(), log.is_symlink(), log.read_text()) == (VICTIM, False, "replaced\n")
    (tmp_path / "deep" / "deeper").mkdir(parents=True)
    (tmp_path / "deep" / "deeper" / "x").symlink_to(victim)
    with pytest.raises(LinkRefused, match=r"deep/deeper/x is a symbolic link"):
        refuse_links(tmp_path / "deep")
