"""Hydra multirun through the installed command: sweep folders, summaries, failed jobs, launchers, dense reuse."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import TINY, progprune, refused

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
    # The second job's finetune diverges (what no pre-run check can know): it fails in its own folder, the first
    # completes, and the sweep goes on to its summary.
    result = progprune("train", "-m", "+strategy=weight", "optimizer=sgd", "finetune.lr=0.01,1e12", *TINY,
                       cwd=workdir)
    assert result.returncode != 0
    assert "training diverged (lower finetune.lr" in result.stderr or "training diverged (lower optimizer.lr" in \
        result.stderr
    assert "Traceback" not in result.stderr
    assert "progprune: a sweep job failed (finetune epoch 1, step " in result.stderr
    rows = summary_rows(sweep_dir(workdir))
    assert [(r["finetune.lr"], r["status"]) for r in rows] == [("0.01", "complete"), ("1000000000000.0", "failed")]


def test_a_job_that_cannot_run_fails_the_sweep_before_any_folder(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # mlp has no conv1: the pre-run check builds every job's model and refuses the sweep before anything is made.
    said = refused("train", "-m", "model=two_conv_cnn,mlp", "+strategy=weight", "+strategy.layers.conv1=0.3", *TINY,
                   cwd=workdir, monkeypatch=monkeypatch, capsys=capsys)
    assert said == ("progprune: error: strategy.layers.conv1: no such prunable layer; choose from 1, 1.weight, 3, "
                    "3.weight, 5, 5.weight\n")
    assert not (workdir / "runs").exists()


def test_a_key_of_a_swept_group_is_one_line_not_hydras_traceback(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # Every job composes, but Hydra's shared sweep config has no strategy to set the key on (it crashed there).
    err = refused("train", "-m", "+strategy=weight,random", "strategy.sparsity=0.5", *TINY, cwd=workdir,
                  monkeypatch=monkeypatch, capsys=capsys)
    assert err == ("progprune: error: strategy.sparsity=0.5: sets a key of strategy, which this sweep sweeps; Hydra "
                   "composes a sweep's shared config without the swept strategy and cannot set it there. Sweep one "
                   "strategy at a time (+strategy=NAME strategy.sparsity=0.5), or put the key in the strategy's "
                   "YAML\n")
    assert not (workdir / "runs").exists()


def test_a_sweep_whose_data_is_missing_fails_before_any_folder(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Data is prepared (and checked) once, before Hydra makes the sweep folder. (A swept dataset with a fixed
    # dataset key is refused before that: Hydra could not compose it, see the test above.)
    said = refused("train", "-m", "dataset=mnist", "seed=0,1", "dataset.download=false", *TINY[1:], cwd=workdir,
                   monkeypatch=monkeypatch, capsys=capsys)
    assert said.startswith("progprune: error: dataset.root: ") and said.count("\n") == 1
    assert not (workdir / "runs").exists()


# The joblib case also reports to MLflow: its two jobs, in parallel processes, nest under one parent run.
@pytest.mark.parametrize("launcher", [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "logger=mlflow"],
                                      ["hydra/launcher=submitit_local"]], ids=["joblib", "submitit_local"])
def test_launchers(workdir: Path, launcher: list[str]) -> None:
    result = progprune("train", *SWEEP, *launcher, cwd=workdir)
    assert result.returncode == 0, result.stderr
    rows = summary_rows(sweep_dir(workdir))
    assert sorted((r["strategy.sparsity"], r["status"]) for r in rows) == [("0.5", "complete"), ("0.8", "complete")]
    if "logger=mlflow" in launcher:
        assert_nested_under_the_sweep(sweep_dir(workdir), f"sqlite:///{workdir / 'runs' / 'mlflow.db'}")


def assert_nested_under_the_sweep(folder: Path, uri: str) -> None:
    """One parent run for the sweep, named after its folder and recorded in it; every job's run under it."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("progprune").experiment_id
    (entry,) = json.loads((folder / "mlflow_parent.json").read_text())
    assert entry == {"tracking_uri": uri, "experiment_id": experiment, "run_id": entry["run_id"]}
    runs = {run.info.run_name: run for run in client.search_runs([experiment])}
    assert sorted(runs) == sorted([folder.name, "0", "1"])
    parent = runs[folder.name]
    assert (parent.info.run_id, parent.info.status) == (entry["run_id"], "FINISHED")
    for job in ("0", "1"):
        assert runs[job].data.tags["mlflow.parentRunId"] == entry["run_id"]
        assert runs[job].data.tags["progprune.run_dir"] == str(folder / job)
        assert runs[job].info.status == "FINISHED" and "final/finetuned/accuracy.test" in runs[job].data.metrics
