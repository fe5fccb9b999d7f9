"""The Hydra edge: the `progprune train` task turns the composed config into a RunConfig and runs it."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from progprune_cli.config import load_run_config
from progprune_cli.errors import UserError
from progprune_cli.stages.signals import Interrupted

# Unique per process: two runs started in the same second still get two folders.
_UID = f"{os.getpid()}{secrets.token_hex(1)}"
# use_cache: a launcher that rebuilds the config in a worker process must get the same sweep folder name.
OmegaConf.register_new_resolver("progprune_uid", lambda: _UID, replace=True, use_cache=True)


class JobFailed(CompactHydraException):
    """A sweep job stopped on bad input; Hydra prints a compact exception's message without a traceback."""


@hydra.main(config_path="pkg://progprune_cli.conf", config_name="config", version_base="1.3")
def train_task(cfg: DictConfig) -> Any:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    # log_path=False: the logging call's file:line after every line is noise to a user.
    console = Console(highlight=False, log_path=False)
    if not console.is_terminal:
        console = Console(highlight=False, log_path=False, width=150)  # piped: wide tables, not wrapped cells
    container: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    try:
        from progprune_cli.runner import run  # torch is imported only once a job really starts

        cache = Path(hc.runtime.cwd) / "runs" / ".cache"
        return run(load_run_config(container), container, list(hc.overrides.task), run_dir, console, cache)["status"]
    except Interrupted as error:
        # The checkpoint is written and status.json says where; 130 for SIGINT, 143 for SIGTERM (as a shell does).
        print(f"progprune: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    except UserError as error:
        print(f"progprune: error: {error}", file=sys.stderr)
        if multirun:
            # The other jobs still run; Hydra then reports this short message (no traceback) and exits 1.
            raise JobFailed(f"progprune: a sweep job failed ({error}); see {hc.sweep.dir}/summary.md") from None
        raise SystemExit(2) from None
    finally:
        if multirun:
            _sweep_summary(Path(hc.sweep.dir), console)


def _sweep_summary(sweep_dir: Path, console: Console) -> None:
    """Rebuilt from the files on disk after every job, so it is right even if a later job dies."""
    from progprune_cli.report.summary import write_sweep_summary

    path = write_sweep_summary(sweep_dir)
    console.print(f"sweep summary: {path}")
