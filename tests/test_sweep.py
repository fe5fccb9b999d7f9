"""Hydra multirun through the installed command: sweep folders, summaries, failed jobs, launchers, dense reuse."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import TINY, progprune

pytestmark = pytest.mark.slow

SWEEP = ["-m", "+strategy=weight", "strategy.sparsity=0.5,0.8", *TINY]


def sweep_dir(workdir: Path) -> Path:
    (folder,) = (workdir / "runs").glob("*/*_sweep_*")
    return folder


def summary_rows(folder: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((folder / "summary.csv").open()))


def test_two_job_sweep_reuses_one_dense_model(workdir: Path) -> None:
    result = progprune("train", *SWEEP, cwd=workdir)
    assert result.returncode == 0, result.stderr
    folder = sweep_dir(workdir)
    jobs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [j.name for j in jobs] == ["0", "1"]
    results = [json.loads((j / "results.json").read_text()) for j in jobs]
    assert [r["pruning"]["target"] for r in results] == [0.5, 0.8]
    # The dense model depends on neither sparsity: trained by job 0, reused by job 1 (the cache holds one entry).
    assert results[0]["run"]["dense_reused_from"] is None
    assert results[1]["run"]["dense_reused_from"] is not None
    entries = [p for p in (workdir / "runs" / ".cache").iterdir()
               if json.loads((p / "settings.json").read_text()).get("extra_epochs") is None]
    assert len(entries) == 1
    assert results[0]["models"]["original"]["accuracy"] == results[1]["models"]["original"]["accuracy"]
    rows = summary_rows(folder)
    assert [(r["job"], r["strategy.sparsity"], r["status"]) for r in rows] == [
        ("0", "0.5", "complete"), ("1", "0.8", "complete")]
    assert (folder / "summary.md").exists() and (folder / "pareto.png").exists()


def test_failed_job_shows_as_failed(workdir: Path) -> None:
    # mnist has no files here: that job fails while loading data; the synthetic one completes.
    result = progprune("train", "-m", "dataset=synthetic,mnist", *TINY[1:], cwd=workdir)
    assert result.returncode != 0
    assert "progprune: error: dataset.root:" in result.stderr
    assert "Traceback" not in result.stderr and "progprune: a sweep job failed (dataset.root:" in result.stderr
    rows = summary_rows(sweep_dir(workdir))
    assert [(r["dataset"], r["status"]) for r in rows] == [("synthetic", "complete"), ("mnist", "failed")]


@pytest.mark.parametrize("launcher", [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                                      ["hydra/launcher=submitit_local"]], ids=["joblib", "submitit_local"])
def test_launchers(workdir: Path, launcher: list[str]) -> None:
    result = progprune("train", *SWEEP, *launcher, cwd=workdir)
    assert result.returncode == 0, result.stderr
    rows = summary_rows(sweep_dir(workdir))
    assert sorted((r["strategy.sparsity"], r["status"]) for r in rows) == [("0.5", "complete"), ("0.8", "complete")]
