"""What a run or sweep folder recorded of its command line, read as data: .hydra/overrides.yaml, a sweep's
multirun.yaml and the job list Hydra's basic sweeper made from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from progprune_cli.errors import UserError
from progprune_cli.reading import Unreadable, read_yaml

MAX_BYTES = 1 << 20  # an overrides list is a few hundred bytes; multirun.yaml a few KB
OVERRIDES = (".hydra", "overrides.yaml")
HYDRA = (".hydra", "hydra.yaml")
MULTIRUN = "multirun.yaml"
# The one job-folder pattern whose numbering is known here: conf/config.yaml's, job i in SWEEP_DIR/i.
JOB_SUBDIR = "${hydra.job.num}"
BASIC_SWEEPER = "BasicSweeper"  # the class name a multirun.yaml's hydra.sweeper._target_ ends in


def read_record(folder: Path, *parts: str) -> Any:
    """`folder/parts...` as plain YAML data (the one safe reader: no link below `folder` followed, a plain file of
    at most MAX_BYTES, no anchor or alias); FileNotFoundError when absent, else a one-line UserError."""
    try:
        return read_yaml(folder.joinpath(*parts), limit=MAX_BYTES, within=folder)
    except Unreadable as error:
        raise UserError(f"{error}; refused") from None


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def saved_overrides(run_dir: Path) -> list[str]:
    """The task overrides a run was started with (.hydra/overrides.yaml, as Hydra wrote it)."""
    try:
        overrides = read_record(run_dir, *OVERRIDES)
    except FileNotFoundError:
        raise UserError(f"{run_dir}: no readable .hydra/overrides.yaml; it cannot be resumed") from None
    if not _strings(overrides):
        raise UserError(f"{run_dir.joinpath(*OVERRIDES)}: not a list of overrides; it cannot be resumed")
    return overrides


def _get(doc: Any, *keys: str) -> Any:
    for key in keys:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def sweep_task(sweep_dir: Path) -> list[str] | None:
    """The task overrides (sweep values included) a sweep was started with, from multirun.yaml's
    hydra.overrides.task (nothing else of the file is used); None when the folder has no multirun.yaml."""
    try:
        doc = read_record(sweep_dir, MULTIRUN)
    except FileNotFoundError:
        return None
    path = sweep_dir / MULTIRUN
    task = _get(doc, "hydra", "overrides", "task")
    if not _strings(task):
        raise UserError(f"{path}: hydra.overrides.task is not a list of overrides; refused")
    subdir = _get(doc, "hydra", "sweep", "subdir")
    if subdir != JOB_SUBDIR:
        raise UserError(f"{path}: hydra.sweep.subdir is {subdir!r}; only {JOB_SUBDIR!r} (job i in SWEEP_DIR/i) "
                        "tells which folder is which job; refused")
    sweeper = _get(doc, "hydra", "sweeper")
    target = _get(sweeper, "_target_")
    if (target is not None and str(target).rpartition(".")[2] != BASIC_SWEEPER) or _get(sweeper, "params"):
        raise UserError(f"{path}: hydra.sweeper is not Hydra's basic sweeper without params, whose job list is "
                        "known; refused")
    return task


def sweep_jobs(task: list[str], source: Path) -> list[list[str]]:
    """Each job's overrides, in the order (and so the numbering) Hydra's basic sweeper gives them; `source` names
    the file `task` came from in an error."""
    from progprune_cli.config.overrides import jobs, parse

    return jobs(parse(task, str(source)))


def first_job(sweep_dir: Path) -> Path | None:
    """The sweep's lowest-numbered job folder (not a link), or None."""
    jobs = sorted((p for p in sweep_dir.iterdir() if p.name.isdigit() and p.is_dir() and not p.is_symlink()),
                  key=lambda p: int(p.name)) if sweep_dir.is_dir() else []
    return jobs[0] if jobs else None


def searched(sweep_dir: Path) -> bool:
    """Whether the sweep was a search (a sampling sweeper such as Optuna's, which writes no multirun.yaml and picks
    its jobs as it goes): the sweeper named in its first job's .hydra/hydra.yaml, read as data."""
    job = first_job(sweep_dir)
    if job is None:
        return False
    try:
        target = _get(read_record(job, *HYDRA), "hydra", "sweeper", "_target_")
    except (FileNotFoundError, UserError):
        return False
    return target is not None and str(target).rpartition(".")[2] != BASIC_SWEEPER


def search_settings(sweep_dir: Path) -> tuple[dict[str, Any], Path]:
    """A search's hydra.sweeper (its sampler, study name, n_trials), as plain data from its first job's
    .hydra/hydra.yaml, and that file's path."""
    job = first_job(sweep_dir)
    assert job is not None, "searched() found a job"
    path = job.joinpath(*HYDRA)
    try:
        sweeper = _get(read_record(job, *HYDRA), "hydra", "sweeper")
    except FileNotFoundError:
        raise UserError(f"{path}: missing; the search's settings cannot be known") from None
    if not isinstance(sweeper, dict):
        raise UserError(f"{path}: hydra.sweeper is not a mapping; refused")
    return sweeper, path
