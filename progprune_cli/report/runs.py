"""Find run folders (run, sweep, glob) and read each one robustly into a RunRecord; never imports torch."""

from __future__ import annotations

import glob
import os
import socket
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from progprune_cli import reading
from progprune_cli.errors import UserError
from progprune_cli.reading import Unreadable
from progprune_cli.results.record import SchemaError
from progprune_cli.results.schema import STATUSES, Results

# Files only a run folder holds; any one of them is enough, so a half-written run is still found.
_RUN_MARKERS = ("status.json", "results.json", ".hydra", "metrics.csv")
# Besides status.json's STATUSES a reader shows four: "killed" (says running, but its process is gone from this
# host), "incomplete" (says complete, no results.json), "corrupt" (results.json unreadable or not this schema) and
# "unknown" (neither file readable). A file the readers refuse (progprune_cli.reading) shows as "unreadable: ..." in
# the error column.
PID_MAX = 2**31 - 1  # pid_t is a 32-bit int; os.kill raises OverflowError above it
_STATUS_TEXTS = ("stage", "error", "updated", "host")


@dataclass
class RunRecord:
    """What a reader knows about one run folder; `document` is None and `results` (its figures, flattened to
    dotted keys for --diff) empty when results.json is missing or broken."""

    path: Path
    status: str
    overrides: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    document: Results | None = None


def is_run_dir(path: Path) -> bool:
    # lexists: a folder whose marker is a symlink is still a run folder, shown as unreadable rather than skipped.
    return path.is_dir() and any(os.path.lexists(path / marker) for marker in _RUN_MARKERS)


def _natural_key(path: Path) -> list[Any]:
    # Hydra names sweep jobs 0, 1, ... 10: "10" must come after "9".
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def sweep_runs(path: Path) -> list[Path]:
    """The run folders directly inside `path`, in natural order; other entries are ignored."""
    if not path.is_dir() or is_run_dir(path):
        return []
    return sorted((child for child in path.iterdir() if is_run_dir(child)), key=_natural_key)


def is_sweep_dir(path: Path) -> bool:
    return bool(sweep_runs(path))


def _expand_one(arg: str) -> list[Path]:
    if any(ch in arg for ch in "*?[") and not Path(arg).exists():
        matches = [Path(m) for m in sorted(glob.glob(arg))]
    else:
        matches = [Path(arg)]
    found: list[Path] = []
    for path in matches:
        if is_run_dir(path):
            found.append(path)
        elif path.is_dir() and is_sweep_dir(path):
            found.extend(sweep_runs(path))
        elif path.is_file() and is_sweep_dir(path.parent):
            # `compare SWEEP/*` also expands to summary.md, multirun.yaml ...: skip those quietly.
            continue
        else:
            raise UserError(f"{path}: not a run or sweep folder")
    if not matches:
        raise UserError(f"{arg}: not a run or sweep folder")
    return found


def find_runs(args: list[str]) -> list[Path]:
    """Expand run folders, sweep folders and globs; any path that is neither is an error (exit 2)."""
    runs: list[Path] = []
    seen: set[Path] = set()
    for arg in args:
        for path in _expand_one(arg):
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                runs.append(path)
    return runs


def run_labels(paths: list[Path]) -> list[str]:
    """Each path relative to the folder all runs share, so a sweep's rows read 0, 1, 2 ..."""
    absolute = [os.path.abspath(p) for p in paths]
    if len(absolute) == 1:
        return [reading.clean_text(Path(absolute[0]).name)]
    common = os.path.commonpath(absolute)
    return [reading.clean_text(os.path.relpath(p, common)) for p in absolute]  # folder names are data too


def flatten(tree: Any, prefix: str = "", keep_lists: bool = True) -> dict[str, Any]:
    """Nested dicts → {"a.b.c": leaf}; lists are leaves (or dropped, for results' steps and layers)."""
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix and (keep_lists or not isinstance(tree, list)) else {}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key), keep_lists))
    return flat


def unreadable(error: Unreadable, run: Path) -> str:
    """The error column's text for a file the readers refuse: `unreadable: <file in the run folder>: <why>`."""
    try:
        name = error.path.relative_to(run).as_posix()
    except ValueError:
        name = error.path.name
    return f"unreadable: {reading.clean_text(name)}: {error.why}"


def _read_json(run: Path, name: str, problems: list[str], limit: int = reading.JSON_LIMIT,
               lines: Collection[str] = ()) -> dict[str, Any] | None:
    try:
        doc = reading.read_json(run / name, limit, within=run, lines=lines)
    except FileNotFoundError:
        return None
    except Unreadable as exc:
        problems.append(f"{name}: corrupt JSON (line {exc.line})" if exc.line else unreadable(exc, run))
        return None
    if not isinstance(doc, dict):
        problems.append(f"{name}: not a JSON object")
        return None
    return doc


def _read_yaml(run: Path, name: str, problems: list[str]) -> Any:
    try:
        return reading.read_yaml(run / name, within=run)
    except FileNotFoundError:
        problems.append(f"{name} missing")
    except Unreadable as exc:
        problems.append(unreadable(exc, run))
    return None


def _read_results(run: Path, problems: list[str]) -> Results | None:
    doc = _read_json(run, "results.json", problems)
    if doc is None:
        return None
    try:
        return Results.from_json(doc)
    except SchemaError as exc:
        problems.append(f"results.json: {exc}")
        return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def check_status(status_doc: dict[str, Any]) -> str | None:
    """Why status.json's fields cannot be trusted, in one line, or None: its pid must be a process id and its
    stage, error, updated and host text (as the runner writes them)."""
    pid = status_doc.get("pid")
    if pid is not None and (type(pid) is not int or not 1 <= pid <= PID_MAX):
        return f"pid {_short(pid)} is not a process id (1 to {PID_MAX})"
    for key in _STATUS_TEXTS:
        if status_doc.get(key) is not None and not isinstance(status_doc[key], str):
            return f"{key} {_short(status_doc[key])} is not text"
    return None


def read_status(run: Path, problems: list[str]) -> dict[str, Any] | None:
    """status.json's fields (its `error` may hold several lines), or None with the reason added to `problems`."""
    doc = _read_json(run, "status.json", problems, reading.STATUS_LIMIT, lines=("error",))
    why = check_status(doc) if doc is not None else None
    if why:
        problems.append(f"unreadable: status.json: {why}")
        return None
    return doc


def process_gone(status_doc: dict[str, Any]) -> bool:
    """True when status.json names a process on this host that no longer exists (another host: unknown)."""
    pid, host = status_doc.get("pid"), status_doc.get("host")
    if type(pid) is not int or not 1 <= pid <= PID_MAX or not isinstance(host, str) or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # PermissionError: alive, owned by someone else
        return False
    return False


def _status(status_doc: dict[str, Any] | None, results: Results | None,
            results_exists: bool, problems: list[str]) -> str:
    status = (status_doc or {}).get("status")
    if status not in STATUSES:
        if status_doc is not None:
            problems.append(f"status.json: unknown status {_short(status)}")
        status = results.status if results is not None else None
        status = status if status in STATUSES else "unknown"
    if status == "running" and process_gone(status_doc or {}):
        # SIGKILL or power loss: nothing could write "interrupted". The process is gone from this host.
        status = "killed"
        problems.append(f"pid {status_doc['pid']} on {status_doc['host']} is gone; resume with progprune "  # type: ignore[index]
                        "resume RUN_DIR")
    if status == "complete" and results is None:
        # Says complete but the figures cannot be read: show that, not a row of dashes labelled complete.
        status = "corrupt" if results_exists else "incomplete"
        if not results_exists:
            problems.append("results.json missing")
    return status


def _read_hydra(run: Path, results: Results | None,
                problems: list[str]) -> tuple[dict[str, Any], list[str]]:
    # results.json holds the resolved config; .hydra/config.yaml may still hold ${...} interpolations.
    config: Any = results.config if results is not None and results.config else None
    overrides = None
    if os.path.lexists(run / ".hydra"):  # a symlinked .hydra is read (and refused) rather than called missing
        if not isinstance(config, dict):
            config = _read_yaml(run, ".hydra/config.yaml", problems)
        overrides = _read_yaml(run, ".hydra/overrides.yaml", problems)
    elif results is None:
        problems.append(".hydra missing")
    if not isinstance(overrides, list):
        overrides = list(results.run.overrides) if results is not None else []
    return (flatten(config) if isinstance(config, dict) else {}), [str(o) for o in overrides]


def read_run(path: Path) -> RunRecord:
    """Read status.json, results.json and .hydra/ of one run; every problem becomes text in `error`."""
    problems: list[str] = []
    status_doc = read_status(path, problems)
    if status_doc is None and not os.path.lexists(path / "status.json"):
        problems.append("status.json missing")
    results = _read_results(path, problems)
    status = _status(status_doc, results, os.path.lexists(path / "results.json"), problems)
    config, overrides = _read_hydra(path, results, problems)
    figures: dict[str, Any] = {}
    if results is not None:
        doc = results.to_json()
        for part in ("models", "pruning", "run"):
            if isinstance(doc[part], dict):
                figures.update(flatten(doc[part], part, keep_lists=False))
    run_error = str((status_doc or {}).get("error") or "").strip()
    if run_error:
        problems.insert(0, run_error.splitlines()[0])  # a traceback's first line; run.log has the rest
    return RunRecord(path=path, status=status, overrides=overrides, config=config,
                     results=figures, error="; ".join(dict.fromkeys(problems)) or None, document=results)
