"""What `progprune sensitivity` refuses before Hydra makes a folder: no strategy, or a folder that is not its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from progprune_cli.config import RunConfig
from progprune_cli.errors import UserError

# Added to the config a sensitivity folder's status.json hashes (and config.json keeps), so `progprune train` or
# `progprune resume` never continues in a sensitivity folder, nor a sensitivity run in a training one.
MARK = {"command": "sensitivity"}


def marked(config: dict[str, Any]) -> dict[str, Any]:
    return {**config, **MARK}


def require_strategy(configs: list[RunConfig]) -> None:
    """The units and their scores come from the strategy, so every job needs one."""
    if any(cfg.strategy is None for cfg in configs):
        from progprune_cli.config.groups import group_options

        raise UserError("strategy: progprune sensitivity needs one to score and prune units; add +strategy=NAME "
                        f"(one of {', '.join(group_options()['strategy'])})")


def check_folder(run_dir: Path, config: dict[str, Any]) -> None:
    """A given hydra.run.dir: new, or this analysis interrupted (same config); never a finished one."""
    from progprune_cli.results.status import check_folder as check_run_folder
    from progprune_cli.results.status import read_status

    check_run_folder(run_dir, marked(config))
    status = read_status(run_dir) if run_dir.is_dir() else None
    if status is not None and status.get("status") == "complete":
        raise UserError(f"hydra.run.dir: {run_dir} already holds a finished sensitivity analysis; choose a new "
                        "folder")
