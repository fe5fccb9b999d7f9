"""A finished run folder seen from outside: its config and status (through progprune_cli.reading: safe YAML, no
symlink) and which models it saved."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from progprune_cli import reading
from progprune_cli.atomic import nearest_existing
from progprune_cli.config import RunConfig, load_run_config
from progprune_cli.errors import UserError
from progprune_cli.results.schema import SAVED_MODELS

@dataclass(frozen=True)
class RunFolder:
    """RUN_DIR with its composed config parsed into a RunConfig; nothing in it is unpickled."""

    path: Path
    config: dict[str, Any]
    cfg: RunConfig

    @classmethod
    def open(cls, run_dir: str | Path) -> RunFolder:
        import progprune_cli.catalog  # noqa: F401  (the components' schemas, which type the folder's config)

        path = Path(run_dir)
        config_path = path / ".hydra" / "config.yaml"
        if not path.is_dir():
            raise UserError(f"RUN_DIR: {run_dir} {'is not a folder' if path.exists() else 'does not exist'}")
        try:
            config = reading.read_yaml(config_path, within=path)  # .hydra must not be a symlink either
        except FileNotFoundError:
            raise UserError(f"RUN_DIR: {run_dir} is not a run folder (no .hydra/config.yaml)") from None
        except reading.Unreadable as error:
            raise UserError(str(error)) from None
        if not isinstance(config, dict):
            raise UserError(f"{config_path}: expected a mapping of config keys, found {type(config).__name__}")
        try:
            cfg = load_run_config(config)
        except UserError as error:
            raise UserError(f"{config_path}: {error}") from None
        return cls(path, config, cfg)

    @property
    def id(self) -> str:
        """The run id results.json records (the folder's name)."""
        return self.path.resolve().name

    def require_trusted(self, trust: bool, more: list[str] | None = None) -> None:
        """Building this run's model or data imports the code its config names by `_target_` (a user's class or
        dataset factory, and `more` such names, e.g. from a compacted checkpoint): refused in one line naming it
        unless `trust`."""
        found = list(dict.fromkeys([*targets_in(self.config), *(more or [])]))
        if found and not trust:
            raise UserError(f"RUN_DIR: {self.path}: rebuilding its model or data imports {', '.join(found)} (a "
                            "_target_ in the run's config); load it only if you trust that code: trust_targets=True "
                            "(progprune export --trust-targets)")

    def status(self) -> dict[str, Any]:
        """status.json's fields, {} when it is missing or not an object; one the readers refuse (not JSON, a symlink,
        a FIFO, too big or deep) is a one-line UserError naming it."""
        try:
            data = reading.read_json(self.path / "status.json", reading.STATUS_LIMIT)
        except FileNotFoundError:
            return {}
        except reading.Unreadable as error:
            raise UserError(str(error)) from None
        return data if isinstance(data, dict) else {}

    def require_complete(self) -> None:
        """A run that has not finished may lack the model asked for, or hold one a resumed stage will replace."""
        status = self.status()
        state = status.get("status", "unknown (no readable status.json)")
        if state == "complete" and reading.is_file(self.path / "results.json"):
            return
        where = f" in stage {status['stage']}" if status.get("stage") else ""
        why = f": {status['error']}" if status.get("error") else ""
        raise UserError(f"RUN_DIR: {self.path} is not a complete run (status {state}{where}{why}); "
                        "export a finished run")

    def default_model(self) -> str:
        """What the run produced: compacted where channels were removed, else finetuned; original for a dense run."""
        if self.cfg.strategy is None:
            return "original"
        return "compacted" if self.checkpoint_path("compacted").is_file() else "finetuned"

    def checkpoint_path(self, which: str) -> Path:
        return self.path / "checkpoints" / f"{which}.pt"

    def checkpoint(self, which: str) -> Path:
        """checkpoints/<which>.pt, or a one-line error saying why this run has no such model."""
        if which not in SAVED_MODELS:
            raise UserError(f"model: got {which!r}; choose one of {', '.join(SAVED_MODELS)}")
        path = self.checkpoint_path(which)
        if path.is_file():
            return path
        strategy = self.cfg.strategy
        if strategy is None and which in ("pruned", "finetuned", "compacted"):
            why = "it is a dense baseline (no strategy), so it has only original"
        elif which == "compacted" and _granularity(self.cfg) == "weight":
            assert strategy is not None
            why = (f"strategy {strategy.name} prunes single weights (mask-only); only channel and head strategies "
                   "compact (structured, activation, heads, or granularity=channel)")
        elif which == "dense_long":
            why = "it ran with evaluate.dense_baseline=false"
        elif which == "scratch":
            why = "it ran without evaluate.scratch_baseline=true"
        else:
            why = "the run did not save it"
        raise UserError(f"RUN_DIR: {self.path} has no {which} model ({path.relative_to(self.path)} missing): {why}")


def targets_in(value: Any) -> list[str]:
    """Every `_target_` value in a config (a nested dict as read from a run folder): code building it imports."""
    if isinstance(value, dict):
        own = [str(value["_target_"])] if value.get("_target_") is not None else []
        return own + [t for item in value.values() for t in targets_in(item)]
    if isinstance(value, list):
        return [t for item in value for t in targets_in(item)]
    return []


def _granularity(cfg: RunConfig) -> str:
    from progprune_cli.pruning.strategies import build_strategy  # torch: only on this error path

    assert cfg.strategy is not None
    return build_strategy(cfg.strategy).granularity


def check_out_writable(path: Path) -> None:
    """`--out` must be creatable: its nearest existing folder a folder this user can write to (refused now, before
    minutes of exporting)."""
    existing = nearest_existing(path.parent)
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--out: cannot write {path} ({existing} is not a folder this user can write to)")
