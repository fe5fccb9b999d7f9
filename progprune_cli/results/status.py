"""status.json, the run-folder lock, and whether a command may (re)use a folder: the run folder's own state."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from progprune_cli.atomic import open_nofollow, refuse_links, write_atomic
from progprune_cli.errors import UserError
from progprune_cli.filelock import Busy, FileLock
from progprune_cli.hashing import short_hash
from progprune_cli.reading import STATUS_LIMIT, read_json
from progprune_cli.signals import Interrupted

# Sections that may change between an interrupted attempt and its resume without changing any result (`search`:
# which figures a finished run returns to a search; `logger`: where else its figures are sent).
_NOT_HASHED = ("evaluate", "checkpoint", "hydra", "search", "logger")
# What may already be in a folder Hydra prepared for a run before progprune wrote anything.
_HYDRA_ONLY = {".hydra", ".lock"}
CONFIG_FILE = "config.json"  # the resolved config of the first attempt, never rewritten
LOCK_FILE = ".lock"


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


def _relevant(config: dict[str, Any]) -> dict[str, Any]:
    # `sensitivity:` changes the results of a sensitivity analysis only, not of a train run.
    skip = _NOT_HASHED + (() if config.get("command") == "sensitivity" else ("sensitivity",))
    return {k: v for k, v in config.items() if k not in skip}


def config_hash(config: dict[str, Any]) -> str:
    """What a resumed run must share with the one that started the folder (evaluation settings may change)."""
    return short_hash(_relevant(config))


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def differing_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ (a key missing on one side and null on the other does not differ)."""
    a, b = _flat(_relevant(old)), _flat(_relevant(new))
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """status.json as a dict, or None when it is missing or unreadable (never through a link, size-capped)."""
    try:
        doc = read_json(run_dir / "status.json", limit=STATUS_LIMIT)
    except (OSError, ValueError):  # Unreadable is a ValueError
        return None
    return doc if isinstance(doc, dict) else None


def check_folder(run_dir: Path, config: dict[str, Any]) -> None:
    """Refuse a folder that holds a finished run, another config's run, a run in use, or files of the user's."""
    refuse_links(run_dir)  # first: every read below, and Hydra's writes into .hydra/, would follow a link
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise UserError(f"hydra.run.dir: {run_dir} is a file, not a folder; choose a new folder")
    if (run_dir / "results.json").exists():
        raise UserError(f"hydra.run.dir: {run_dir} already holds a finished run; choose a new folder")
    status = read_status(run_dir)
    saved = _read_config(run_dir) if status is None else {}
    entries = {p.name for p in run_dir.iterdir()}
    if status is None and not saved:
        if entries - _HYDRA_ONLY:
            raise UserError(f"hydra.run.dir: {run_dir} is not empty and is not a progprune run folder (no "
                            "status.json); nothing in it was touched; choose a new or empty folder")
        return
    # A lost or corrupt status.json: the run's own config.json still says which config the folder holds.
    recorded = status.get("config_hash") if status is not None else config_hash(saved)
    if recorded != config_hash(config):
        keys = differing_keys(_read_config(run_dir), config)
        named = f" ({', '.join(keys[:8])}{', ...' if len(keys) > 8 else ''})" if keys else ""
        raise UserError(f"hydra.run.dir: {run_dir} holds a run with another config{named}; resume it with the same "
                        "config (progprune resume RUN_DIR) or choose a new folder")
    holder = RunLock.holder(run_dir)
    if holder:
        raise UserError(f"hydra.run.dir: {run_dir} is in use by another progprune run ({holder}); wait for it or "
                        "choose a new folder")


def _read_config(run_dir: Path) -> dict[str, Any]:
    try:
        doc = read_json(run_dir / CONFIG_FILE)
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def save_config(run_dir: Path, config: dict[str, Any]) -> None:
    """The first attempt's resolved config, kept so a later resume can name the keys that differ."""
    if not (run_dir / CONFIG_FILE).exists():
        write_atomic(run_dir / CONFIG_FILE, json.dumps(config, indent=1, sort_keys=True, default=str) + "\n")


class RunLock:
    """An exclusive lock on a run folder for as long as a run uses it (released by the kernel if it dies); taking
    it refuses a folder that holds a symbolic link anywhere, since every later write would follow it."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._lock = FileLock(run_dir / LOCK_FILE)

    def acquire(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        refuse_links(self.run_dir)
        try:
            self._lock.acquire(blocking=False)
        except Busy as busy:
            raise UserError(f"hydra.run.dir: {self.run_dir} is in use by another progprune run ({busy}); "
                            "wait for it or choose a new folder") from None
        self._lock.note(f"pid {os.getpid()} on {socket.gethostname()}\n")

    def release(self) -> None:
        self._lock.release()

    @staticmethod
    def holder(run_dir: Path) -> str | None:
        """Who else holds the folder's lock right now (None when nobody, or this process, does)."""
        return FileLock.holder(run_dir / LOCK_FILE)


class Status:
    """Writes status.json: running (with the stage), failed or interrupted (with the error), complete; with the
    pid and host of the process, so readers can tell a killed run from one still running."""

    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        self.path, self.hash, self.started = run_dir / "status.json", config_hash(config), _now()
        self.stage: str | None = None
        started = (read_status(run_dir) or {}).get("started")
        if isinstance(started, str):  # a previous attempt's; anything else in a damaged file is dropped
            self.started = started

    def set(self, status: str, stage: str | None = None, error: str | None = None, **extra: Any) -> None:
        """`stage` defaults to the last one set, so a failure or interrupt says where it happened."""
        self.stage = stage or (None if status == "complete" else self.stage)
        self._write({"status": status, "stage": self.stage, "started": self.started, "updated": _now(),
                     "error": error, "config_hash": self.hash, "pid": os.getpid(), "host": socket.gethostname(),
                     **extra})

    @contextmanager
    def recorded(self, run_dir: Path, resume: str) -> Iterator[None]:
        """However the block ends, status.json says so: interrupted (signal and where), failed (the error; a full
        disk as "disk full", retried small), or, when it returns, nothing yet (the caller sets complete).
        `resume` is the command that continues this folder."""
        try:
            yield
        except Interrupted as error:
            self._record("interrupted", f"interrupted by {signal.Signals(error.signum).name} at {error.where}; to "
                         f"continue: {resume}", signal=error.signum, at=error.where)
            raise
        except KeyboardInterrupt:
            self._record("interrupted", "interrupted by the user (Ctrl-C twice: stopped without a checkpoint); to "
                         f"continue: {resume}")
            raise
        except UserError as error:
            self._record("failed", str(error))
            raise
        except OSError as error:
            if error.errno != errno.ENOSPC:
                self._record("failed", f"{type(error).__name__}: {error}")
                raise
            self._record("failed", f"disk full: {error}")
            raise UserError(f"disk full while writing the run folder {run_dir} ({error.strerror}); free space and "
                            f"continue with: {resume}") from None
        except Exception as error:
            self._record("failed", f"{type(error).__name__}: {error}")
            raise

    def _record(self, status: str, error: str, **extra: Any) -> None:
        """How the run ended, where status.json can still be written; where it cannot (a folder made read-only
        under the run), the run's own error is what the user must see, not this write's."""
        try:
            self.set(status, error=error, **extra)
        except OSError:
            pass

    def _write(self, doc: dict[str, Any]) -> None:
        text = json.dumps(doc, indent=1) + "\n"
        try:
            write_atomic(self.path, text)
            return
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
        # Disk full: a compact copy, and failing that an in-place rewrite of the old file, which needs no new
        # blocks when it is not longer — so a full disk still leaves "failed: disk full", not "running".
        compact = json.dumps(doc, separators=(",", ":"))
        try:
            write_atomic(self.path, compact)
        except OSError:
            with os.fdopen(open_nofollow(self.path, os.O_RDWR), "r+") as handle:
                handle.write(compact)
                handle.truncate()
