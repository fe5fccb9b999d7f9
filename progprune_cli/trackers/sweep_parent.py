"""A sweep's one MLflow parent run, which its jobs' runs nest under: made by the first job to start, under a file lock
(jobs run in parallel processes under the joblib launcher), its id kept in SWEEP_DIR/mlflow_parent.json."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from progprune_cli.atomic import write_atomic
from progprune_cli.filelock import FileLock
from progprune_cli.reading import STATUS_LIMIT, read_json
from progprune_cli.trackers.base import RunStarted

PARENT_FILE = "mlflow_parent.json"
LOCK_FILE = ".mlflow.lock"
PARENT_TAG = "mlflow.parentRunId"  # what MLflow's UI and search_runs nest a run by
SWEEP_TAG = "progprune.sweep_dir"
_RUN_ID = re.compile(r"[0-9a-f]{32}")  # MLflow's run ids: a uuid4's hex
_KEYS = ("tracking_uri", "experiment_id", "run_id")


def sweep_of(run: RunStarted) -> Path | None:
    """The sweep a run belongs to: a sweep's job, or a run whose folder sits where a sweep keeps its parent run (a
    job `progprune resume SWEEP_DIR` starts or continues as a run of its own)."""
    if run.sweep_dir is not None:
        return run.sweep_dir
    folder = run.run_dir.parent
    return folder if os.path.lexists(folder / PARENT_FILE) else None


def lock(sweep_dir: Path) -> FileLock:
    """Held while a job opens the store and its runs: one job at a time makes the store, the experiment and the
    parent run, so parallel jobs neither make two parents nor race to create one experiment."""
    return FileLock(sweep_dir / LOCK_FILE)


def _entries(sweep_dir: Path) -> list[dict[str, str]]:
    """The parent runs the sweep made, one per tracking store and experiment (read as data)."""
    path = sweep_dir / PARENT_FILE
    try:
        doc = read_json(path, limit=STATUS_LIMIT, within=sweep_dir)
    except FileNotFoundError:
        return []
    if not isinstance(doc, list) or not all(isinstance(e, dict) and all(isinstance(e.get(k), str) for k in _KEYS)
                                            and _RUN_ID.fullmatch(e["run_id"]) for e in doc):
        raise ValueError(f"{path}: not a list of {{tracking_uri, experiment_id, run_id}} entries; nesting refused")
    return [{k: e[k] for k in _KEYS} for e in doc]


def parent_run(client: Any, sweep_dir: Path, uri: str, experiment_id: str) -> str:
    """The id of the sweep's parent run in this store and experiment, made (and recorded) if there is none yet or
    the store no longer has it. Call it holding lock(sweep_dir)."""
    from mlflow.exceptions import MlflowException

    entries = _entries(sweep_dir)
    for entry in entries:
        if (entry["tracking_uri"], entry["experiment_id"]) == (uri, experiment_id):
            try:
                client.get_run(entry["run_id"])
                return entry["run_id"]
            except MlflowException:  # deleted from the store since: a new parent replaces it
                entries.remove(entry)
                break
    run_id = client.create_run(experiment_id, run_name=sweep_dir.name, tags={SWEEP_TAG: str(sweep_dir)}).info.run_id
    entries.append({"tracking_uri": uri, "experiment_id": experiment_id, "run_id": run_id})
    write_atomic(sweep_dir / PARENT_FILE, json.dumps(entries, indent=1) + "\n")
    return run_id
