"""status.json: what a run folder says about itself while running, and whether a command may (re)use it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from progprune_cli.errors import UserError
from progprune_cli.stages.io import write_json


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


def config_hash(config: dict[str, Any]) -> str:
    """What a resumed run must share with the one that started the folder (evaluation settings may change)."""
    relevant = {k: v for k, v in config.items() if k not in ("evaluate", "hydra")}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_folder(run_dir: Path, config: dict[str, Any]) -> None:
    """Refuse a folder holding a finished run, or an unfinished one started with another config."""
    if (run_dir / "results.json").exists():
        raise UserError(f"hydra.run.dir: {run_dir} already holds a finished run; choose a new folder")
    status = run_dir / "status.json"
    if status.exists() and json.loads(status.read_text()).get("config_hash") != config_hash(config):
        raise UserError(f"hydra.run.dir: {run_dir} holds a run with another config; resume it with "
                        "the same overrides or choose a new folder")


class Status:
    """Writes status.json: running (with the stage), failed or interrupted (with the error), complete."""

    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        self.path, self.hash, self.started = run_dir / "status.json", config_hash(config), _now()
        self.stage: str | None = None
        if self.path.exists():
            self.started = json.loads(self.path.read_text()).get("started", self.started)

    def set(self, status: str, stage: str | None = None, error: str | None = None) -> None:
        """`stage` defaults to the last one set, so a failure or interrupt says where it happened."""
        self.stage = stage or (None if status == "complete" else self.stage)
        write_json(self.path, {"status": status, "stage": self.stage, "started": self.started, "updated": _now(),
                               "error": error, "config_hash": self.hash})
