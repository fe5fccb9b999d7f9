"""Resume takes from a folder only overrides of progprune's own config (a planted Hydra callback, flag or
`_target_` never runs), resumes a run whose status.json is lost, and resumes a killed sweep's jobs that never
started, which its summary counts."""

from __future__ import annotations

import csv
import json
import random
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TINY, finished_run, progprune, refused

sys.path.insert(0, str(Path(__file__).parent))
from run_fixture import make_run  # noqa: E402

from progprune_cli.report import summary  # noqa: E402
from progprune_cli.report.summary import write_sweep_summary  # noqa: E402

FAST = [*TINY, "evaluate.dense_baseline=false"]
SWEEP = ["+strategy=weight", "strategy.sparsity=0.5,0.6,0.7", *FAST]
OVERRIDES = Path(".hydra", "overrides.yaml")
BASIC = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def interrupt(run_dir: Path) -> None:
    """What SIGTERM at the end of training leaves: no results.json, status.json says interrupted and where."""
    (run_dir / "results.json").unlink()
    status = json.loads((run_dir / "status.json").read_text())
    status.update(status="interrupted", stage="train", signal=15, at="the end of training, before evaluate",
                  error=f"interrupted by SIGTERM at the end of training, before evaluate; to continue: progprune "
                        f"resume {run_dir}")
    (run_dir / "status.json").write_text(json.dumps(status, indent=1) + "\n")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real dense run, finished; each test interrupts a copy of it."""
    return finished_run(tmp_path_factory, *FAST)


@pytest.fixture
def run_dir(finished: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    interrupt(copy)
    return copy


def append(run_dir: Path, *lines: str) -> None:
    path = run_dir / OVERRIDES
    path.write_text(yaml.safe_dump([*yaml.safe_load(path.read_text()), *lines]))


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None), so any change in the folder shows."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in folder.rglob("*")}


def test_a_planted_hydra_callback_is_refused_and_never_runs(run_dir: Path, tmp_path: Path) -> None:
    secret, stolen = tmp_path / "secret.txt", tmp_path / "stolen.txt"
    secret.write_text("not for the run folder's author\n")
    append(run_dir, "+hydra.callbacks.x._target_=shutil.copyfile", f"+hydra.callbacks.x.src={secret}",
           f"+hydra.callbacks.x.dst={stolen}")
    before = snapshot(run_dir)
    done = progprune("resume", str(run_dir), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (f"progprune: error: {run_dir / OVERRIDES}: +hydra.callbacks.x._target_=shutil.copyfile: "
                           "a Hydra setting; resume takes none from a folder (Hydra's settings can run code); "
                           "nothing was run\n")
    assert done.stdout == ""
    assert not stolen.exists()
    assert snapshot(run_dir) == before  # status.json and run.log byte-identical, nothing added


@pytest.mark.parametrize("line, reason", [
    ("--config-dir=/elsewhere", "a command-line flag, not an override; resume takes none from a folder"),
    ("hydra/launcher=joblib", "a Hydra setting; resume takes none from a folder (Hydra's settings can run code)"),
    ("model@hydra.callbacks.x=lenet5",
     "a Hydra setting; resume takes none from a folder (Hydra's settings can run code)"),
], ids=["config-dir", "launcher", "group-into-hydra"])
def test_hydra_overrides_and_flags_from_the_folder_are_refused(run_dir: Path, tmp_path: Path, line: str,
                                                                reason: str, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    append(run_dir, line)
    before = snapshot(run_dir)
    err = refused("resume", str(run_dir), cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert err == f"progprune: error: {run_dir / OVERRIDES}: {line}: {reason}; nothing was run\n"
    assert snapshot(run_dir) == before


def test_a_target_needs_trust_targets(run_dir: Path, tmp_path: Path) -> None:
    append(run_dir, "+model._target_=os.system")
    before = snapshot(run_dir)
    done = progprune("resume", str(run_dir), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (f"progprune: error: {run_dir / OVERRIDES}: +model._target_=os.system: sets a _target_ "
                           "(code to import: os.system); resume takes one from a folder only with --trust-targets "
                           f"(progprune resume --trust-targets {run_dir}); nothing was run\n")
    assert snapshot(run_dir) == before
    trusted = progprune("resume", "--trust-targets", str(run_dir), cwd=tmp_path)
    # Said before anything is imported; the run itself then refuses the unknown key (user models come later).
    assert trusted.stderr.splitlines()[0] == f"progprune: resume imports os.system (from {run_dir / OVERRIDES})"


def test_a_symlinked_overrides_file_is_refused(run_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.yaml"
    (run_dir / OVERRIDES).rename(elsewhere)
    (run_dir / OVERRIDES).symlink_to(elsewhere)
    before = snapshot(run_dir)
    done = progprune("resume", str(run_dir), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"progprune: error: {run_dir / OVERRIDES}: a symbolic link (never followed); refused\n"
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("damage", ["deleted", "random bytes"])
def test_a_run_without_a_readable_status_resumes(run_dir: Path, tmp_path: Path, damage: str) -> None:
    if damage == "deleted":
        (run_dir / "status.json").unlink()
    else:
        (run_dir / "status.json").write_bytes(random.Random(0).randbytes(300))
    done = progprune("resume", str(run_dir), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"progprune: resuming {run_dir} (was status.json missing or unreadable; the run "
                                  "writes it again)\n")
    assert json.loads((run_dir / "status.json").read_text())["status"] == "complete"
    assert json.loads((run_dir / "results.json").read_text())["status"] == "complete"


def test_resuming_a_killed_sweep_starts_the_jobs_that_never_started(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    done = progprune("train", "-m", *SWEEP, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    hydras_own = (sweep / "2" / OVERRIDES).read_text()
    # What SIGKILL during job 1 leaves, as far as resume can tell: job 0 complete, job 1 without results.json and
    # status.json still "running" (its process is gone), no folder for job 2 (Hydra never got to it).
    (sweep / "1" / "results.json").unlink()
    status = json.loads((sweep / "1" / "status.json").read_text())
    (sweep / "1" / "status.json").write_text(json.dumps(status | {"status": "running", "stage": "prune"}))
    shutil.rmtree(sweep / "2")
    resumed = progprune("resume", str(sweep), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"progprune: starting job 2 of {sweep} (it never started)\n" in resumed.stdout
    assert [json.loads((sweep / job / "status.json").read_text())["status"] for job in "012"] == ["complete"] * 3
    assert [json.loads((sweep / job / "results.json").read_text())["pruning"]["target"] for job in "012"] == [
        0.5, 0.6, 0.7]
    assert (sweep / "2" / OVERRIDES).read_text() == hydras_own  # the job Hydra would have run, numbered as Hydra does
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [(r["job"], r["strategy.sparsity"], r["status"]) for r in rows] == [
        ("0", "0.5", "complete"), ("1", "0.6", "complete"), ("2", "0.7", "complete")]
    assert "\n3 jobs: 3 complete. " in (sweep / "summary.md").read_text()


def multirun_yaml(sweep: Path, task: list[str], subdir: str = "${hydra.job.num}") -> None:
    """The part of Hydra's multirun.yaml that resume and the summary read (the rest is ignored)."""
    sweep.mkdir(parents=True, exist_ok=True)
    doc = {"hydra": {"overrides": {"hydra": [f"hydra.sweep.dir={sweep}"], "task": task},
                     "sweep": {"dir": str(sweep), "subdir": subdir},
                     "sweeper": {"_target_": BASIC, "max_batch_size": None, "params": None}}, "seed": 0}
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(doc))


@pytest.fixture
def no_png(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summary, "draw_pareto", lambda rows, path: path.write_bytes(b"png"))


def test_a_summary_lists_a_job_that_never_started(tmp_path: Path, no_png: None) -> None:
    sweep = tmp_path / "sweep"
    multirun_yaml(sweep, ["+strategy=weight", "strategy.sparsity=0.5,0.6,0.7"])
    for job, sparsity in ((0, 0.5), (2, 0.7)):
        make_run(sweep / str(job), overrides=["+strategy=weight", f"strategy.sparsity={sparsity}"],
                 config={"strategy.sparsity": sparsity}, sparsity=sparsity)
    text = write_sweep_summary(sweep).read_text()
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [(r["job"], r["strategy.sparsity"], r["status"]) for r in rows] == [
        ("0", "0.5", "complete"), ("1", "0.6", "not started"), ("2", "0.7", "complete")]
    assert "\n3 jobs: 2 complete, 1 not started. " in text


def test_a_summary_without_multirun_yaml_says_whose_jobs_it_lists(tmp_path: Path, no_png: None) -> None:
    sweep = tmp_path / "sweep"
    make_run(sweep / "0", overrides=["seed=0"])
    text = write_sweep_summary(sweep).read_text()
    assert ("\nThe job list is the run folders that exist: no multirun.yaml (an older sweep), so a job that never "
            "started is not listed.\n") in text


@pytest.mark.parametrize("task, subdir, message", [
    (["seed=0,1", "+hydra.callbacks.x._target_=shutil.copyfile"], "${hydra.job.num}",
     "+hydra.callbacks.x._target_=shutil.copyfile: a Hydra setting; resume takes none from a folder (Hydra's "
     "settings can run code); nothing was run"),
    (["seed=0,1"], "${hydra.job.override_dirname}",
     "hydra.sweep.subdir is '${hydra.job.override_dirname}'; only '${hydra.job.num}' (job i in SWEEP_DIR/i) tells "
     "which folder is which job; refused"),
], ids=["callback", "subdir"])
def test_a_sweep_record_that_resume_must_not_follow_is_refused(tmp_path: Path, task: list[str], subdir: str,
                                                               message: str) -> None:
    sweep = tmp_path / "sweep"
    multirun_yaml(sweep, task, subdir)
    done = progprune("resume", str(sweep), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"progprune: error: {sweep / 'multirun.yaml'}: {message}\n"
    assert sorted(p.name for p in sweep.iterdir()) == ["multirun.yaml"]  # no job started
