"""Trackers (`logger=`): TensorBoard event files and an MLflow store hold exactly what metrics.csv and results.json
hold; a tracker that fails mid-run is switched off in one line and changes nothing; a missing package is one line."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import TINY, progprune, refused, untimed
from progprune_cli.trackers import RunStarted
from progprune_cli.trackers.base import MetricRow
from progprune_cli.trackers.tensorboard import TensorBoard

pytestmark = pytest.mark.slow

RUN = [*TINY, "+strategy=weight", "evaluate.dense_baseline=false", "train.reuse=false"]
IDS = ("stage", "event", "epoch", "iteration")


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One run reporting to both trackers (the list form of the group), its MLflow store a SQLite file of its own."""
    work = tmp_path_factory.mktemp("trackers")
    uri = f"sqlite:///{work / 'store.db'}"
    done = progprune("train", *RUN, "logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={uri}",
                     "logger.mlflow.experiment=tiny", f"hydra.run.dir={work / 'run'}", cwd=work)
    assert done.returncode == 0, done.stderr
    return work / "run", uri


def csv_metrics(run: Path) -> dict[tuple[str, int], float]:
    """metrics.csv as (`<stage>/<event>/<column>`, iteration) → the number the file holds."""
    with open(run / "metrics.csv", newline="") as handle:
        return {(f"{row['stage']}/{row['event']}/{column}", int(row["iteration"])): float(value)
                for row in csv.DictReader(handle) for column, value in row.items() if column not in IDS and value}


def final_figures(run: Path) -> dict[str, float]:
    models = json.loads((run / "results.json").read_text())["models"]
    return {f"final/{model}/accuracy.test": record["accuracy"]["test"] for model, record in models.items()} | \
        {f"final/{model}/params.nonzero": float(record["params"]["nonzero"]) for model, record in models.items()} | \
        {f"final/{model}/latency.measured_speedup": record["latency"]["measured_speedup"]
         for model, record in models.items()}


def test_tensorboard_event_files_hold_the_runs_metrics_plots_and_config(logged: tuple[Path, str]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    run, _ = logged
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    logged_rows = {(tag, e.step): e.value for tag in tags["scalars"] if not tag.startswith("final/")
                   for e in events.Scalars(tag)}
    # Every number of metrics.csv at its step (TensorBoard keeps float32), and nothing else.
    assert logged_rows == {key: float(np.float32(value)) for key, value in csv_metrics(run).items()}
    assert ("prune/prune/target_sparsity", 8) in logged_rows  # the pruning steps are among them
    for tag, value in final_figures(run).items():
        assert [(e.step, e.value) for e in events.Scalars(tag)] == [(0, float(np.float32(value)))]
    assert sorted(tags["images"]) == ["plots/layer_sparsity", "plots/progress"]
    start = HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert (hparams["strategy.sparsity"].number_value, hparams["strategy.name"].string_value) == (0.5, "weight")


def test_mlflow_run_holds_params_metrics_and_the_run_folders_files(logged: tuple[Path, str],
                                                                   tmp_path: Path) -> None:
    import mlflow

    run, uri = logged
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tiny")
    (found,) = client.search_runs([experiment.experiment_id])
    assert (found.info.status, found.info.run_name) == ("FINISHED", run.name)
    assert (found.data.params["strategy.sparsity"], found.data.params["train.epochs"]) == ("0.5", "1")
    history = {(key, m.step): m.value for key in found.data.metrics if not key.startswith("final/")
               for m in client.get_metric_history(found.info.run_id, key)}
    assert history == csv_metrics(run)
    assert {key: found.data.metrics[key] for key in final_figures(run)} == final_figures(run)
    listed = {f.path for f in client.list_artifacts(found.info.run_id)}
    assert listed == {"plots", "results.json", "results.md", "run.log"}
    assert {f.path for f in client.list_artifacts(found.info.run_id, "plots")} == \
        {"plots/layer_sparsity.png", "plots/progress.png"}
    fetched = client.download_artifacts(found.info.run_id, "results.json", str(tmp_path))
    assert Path(fetched).read_bytes() == (run / "results.json").read_bytes()


def _comparable(run: Path) -> dict[str, Any]:
    """results.json less what differs between two runs of one config: when it ran and the timings (each pruning
    step's seconds included)."""
    results = json.loads((run / "results.json").read_text())
    del results["run"]
    results["pruning"] = untimed(results["pruning"])
    results["config"].pop("logger")
    for record in results["models"].values():
        del record["latency"]
    return results


def test_a_tracker_failing_mid_run_is_switched_off_in_one_line_and_the_run_is_unchanged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from progprune_cli import cli

    calls: list[int] = []
    record_rows = TensorBoard.rows

    def full_disk_on_second_call(self: TensorBoard, rows: list[MetricRow]) -> None:
        calls.append(len(rows))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        record_rows(self, rows)

    monkeypatch.setattr(TensorBoard, "rows", full_disk_on_second_call)
    monkeypatch.chdir(tmp_path)
    for name, logger in (("plain", "logger=[]"), ("failing", "logger=tensorboard")):
        with pytest.raises(SystemExit) as exit_:
            cli.main(["train", *RUN, logger, f"hydra.run.dir={tmp_path / name}"])
        assert exit_.value.code == 0
    plain, failing = tmp_path / "plain", tmp_path / "failing"
    assert len(calls) == 2  # off after its failure: never called again
    said = [line for line in (failing / "run.log").read_text().splitlines() if "logger=" in line]
    assert said == ["logger=tensorboard: rows failed (OSError: [Errno 28] No space left on device); this tracker is "
                    "off for the rest of the run, which goes on"]
    assert json.loads((failing / "status.json").read_text())["status"] == "complete"
    assert (failing / "metrics.csv").read_bytes() == (plain / "metrics.csv").read_bytes()
    assert _comparable(failing) == _comparable(plain)
    assert not (plain / "tensorboard").exists()


@pytest.mark.parametrize("logger, package", [("mlflow", "mlflow"), ("tensorboard", "tensorboard"),
                                             ("[tensorboard,mlflow]", "mlflow")])
def test_a_missing_package_is_one_line_before_any_folder(logger: str, package: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # `import PACKAGE` now raises ImportError
    said = refused("train", *RUN, f"logger={logger}", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert said == f"progprune: error: logger={package}: needs the {package} package: pip install -e '.[trackers]'\n"
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_tracker_in_the_list_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    said = refused("train", "logger=[tensorboard,wandb]", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert said == "progprune: error: logger=wandb: unknown logger; choose one of mlflow, tensorboard\n"


def test_a_trackers_key_without_the_tracker_chosen_says_to_choose_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    said = refused("train", "logger=tensorboard", "logger.mlflow.experiment=x", cwd=tmp_path, monkeypatch=monkeypatch,
                   capsys=capsys)
    assert said == "progprune: error: logger.mlflow.experiment: logger mlflow is not chosen; add logger=mlflow first\n"
    said = refused("train", "logger=mlflow", "logger.mlflow.nope=1", cwd=tmp_path, monkeypatch=monkeypatch,
                   capsys=capsys)
    assert said == ("progprune: error: logger.mlflow.nope: unknown key; allowed keys are experiment, name, "
                    "tracking_uri\n")


def test_a_resumed_run_continues_its_mlflow_run(tmp_path: Path) -> None:
    """An interrupted attempt's MLflow run (found by the run folder's tag) is continued, not doubled. The run is a
    sweep's job: resumed as a run of its own (as `progprune resume SWEEP_DIR` does) it keeps the sweep's parent run,
    and a job resume starts in the sweep folder nests under that parent too."""
    import mlflow

    from conftest import component
    from progprune_cli.trackers.mlflow import MLflow

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    cfg = component("logger", "mlflow", tracking_uri=uri)
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    for status, rows, in_sweep in (("interrupted", [MetricRow("train", "epoch", 0, 4, {"val_acc": 0.25})], sweep),
                                   ("complete", [MetricRow("train", "epoch", 1, 8, {"val_acc": 0.5})], None)):
        tracker = MLflow(cfg)
        tracker.start(RunStarted(sweep / "0", tmp_path, {"seed": 0}, in_sweep))
        tracker.rows(rows)
        tracker.close(status)
    tracker = MLflow(cfg)
    tracker.start(RunStarted(sweep / "1", tmp_path, {"seed": 0}))
    tracker.close("complete")
    client = mlflow.MlflowClient(tracking_uri=uri)
    found = {run.info.run_name: run for run in
             client.search_runs([client.get_experiment_by_name("progprune").experiment_id])}
    assert sorted(found) == ["0", "1", "sweep"]
    assert found["0"].info.status == "FINISHED"
    assert [(m.step, m.value) for m in client.get_metric_history(found["0"].info.run_id, "train/epoch/val_acc")] == \
        [(4, 0.25), (8, 0.5)]
    parent = found["sweep"].info.run_id
    assert [found[job].data.tags["mlflow.parentRunId"] for job in ("0", "1")] == [parent, parent]


def test_choosing_a_tracker_changes_no_config_hash() -> None:
    """A run folder from before `logger` existed, or one resumed with a tracker added, still resumes."""
    from progprune_cli.results.status import config_hash

    before = {"seed": 0, "train": {"epochs": 1}}
    assert config_hash({**before, "logger": {}}) == config_hash(before)
    assert config_hash({**before, "logger": {"tensorboard": {"name": "tensorboard", "flush_secs": 5}}}) == \
        config_hash(before)
    assert config_hash({**before, "train": {"epochs": 2}}) != config_hash(before)
