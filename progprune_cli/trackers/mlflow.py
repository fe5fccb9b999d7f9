"""`logger=mlflow`: one MLflow run per progprune run (a sweep's nested under one run for the sweep), in a local SQLite
store under the runs root by default (`logger.mlflow.tracking_uri` chooses another store): params, per-step metrics,
final figures, report files."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from omegaconf import MISSING

from progprune_cli.config.schema import TrackerConfig
from progprune_cli.trackers.base import TRACKERS, MetricRow, RunFinished, RunStarted, Tracker
from progprune_cli.trackers.sweep_parent import PARENT_TAG, lock, parent_run, sweep_of

# status.json's status → the MLflow run's.
_STATUS = {"complete": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
_RUN_TAG = "progprune.run_dir"


@dataclass
class MLflowConfig(TrackerConfig):
    tracking_uri: Optional[str] = MISSING  # null: sqlite:///<runs root>/mlflow.db
    experiment: str = MISSING  # the MLflow experiment (made on first use)


@TRACKERS.register("mlflow", MLflowConfig)
class MLflow(Tracker):
    """Metrics keyed `<stage>/<event>/<column>` at the run's optimizer step, `final/<model>/<figure>`; a resumed
    run continues the MLflow run tagged with its folder; a sweep's job nests under the sweep's parent run."""

    package = "mlflow"
    cfg: MLflowConfig

    def start(self, run: RunStarted) -> None:
        mlflow = self.require("logger=mlflow")
        uri = self.cfg.tracking_uri or default_uri(run.runs_root)
        self.run_dir, self.entities, sweep = run.run_dir, mlflow.entities, sweep_of(run)
        with lock(sweep) if sweep is not None else nullcontext():
            # Opening a new SQLite store creates its tables: two jobs doing it at once fail ("duplicate column").
            self.client = mlflow.MlflowClient(tracking_uri=uri)
            experiment = self.client.get_experiment_by_name(self.cfg.experiment)
            experiment_id = (experiment.experiment_id if experiment is not None else
                             self.client.create_experiment(self.cfg.experiment, artifact_location=_artifacts(uri)))
            self.parent_id = parent_run(self.client, sweep, uri, experiment_id) if sweep is not None else None
            earlier = self._earlier(experiment_id, run.run_dir)
            if earlier is None:
                tags = {_RUN_TAG: str(run.run_dir), **({PARENT_TAG: self.parent_id} if self.parent_id else {})}
                self.run_id = self.client.create_run(experiment_id, run_name=run.run_dir.name, tags=tags).info.run_id
        if self.parent_id is not None:
            self.client.update_run(self.parent_id, status="RUNNING")
        if earlier is not None:
            self.run_id = earlier
            self.client.update_run(earlier, status="RUNNING")
            if self.parent_id is not None:  # a job of a sweep begun before it had a parent run
                self.client.set_tag(earlier, PARENT_TAG, self.parent_id)
            return
        params = [self.entities.Param(key, str(value)) for key, value in run.params.items()]
        self.client.log_batch(self.run_id, params=params)

    def rows(self, rows: list[MetricRow]) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[self.entities.Metric(key, value, now, row.iteration)
                                                    for row in rows for key, value in row.metrics().items()])

    def finish(self, run: RunFinished) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[self.entities.Metric(f"final/{name}", value, now, 0)
                                                    for name, value in run.figures.items()])
        for file in (*run.files, *run.plots):  # plots/x.png lands in the artifacts' plots/
            folder = file.parent.as_posix()
            self.client.log_artifact(self.run_id, str(self.run_dir / file), None if folder == "." else folder)

    def close(self, status: str) -> None:
        if hasattr(self, "run_id"):
            self.client.set_terminated(self.run_id, status=_STATUS.get(status, "FAILED"))
        if getattr(self, "parent_id", None) is not None:
            # The sweep's run ends with its last job (each job's end moves its end time on).
            self.client.set_terminated(self.parent_id, status="FINISHED")

    def _earlier(self, experiment_id: str, run_dir: Path) -> str | None:
        """The MLflow run an earlier attempt of this run folder opened, if any."""
        if "'" in str(run_dir):
            return None  # not expressible in a search filter: a new MLflow run instead
        found = self.client.search_runs([experiment_id], filter_string=f"tags.`{_RUN_TAG}` = '{run_dir}'",
                                        max_results=1)
        return found[0].info.run_id if found else None


def default_uri(runs_root: Path) -> str:
    """The local store: runs/mlflow.db beside the run folders (absolute, so any working folder finds it)."""
    runs_root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(runs_root / 'mlflow.db').resolve()}"


def _artifacts(uri: str) -> str | None:
    """A SQLite store's artifacts beside its file (MLflow's default is ./mlruns, wherever the run started); for
    any other store, its own default."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).parent / "mlflow-artifacts").resolve().as_uri()
