"""The Hydra edge of `progprune sensitivity`: train's config, its own run folder name, a RunConfig below it."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from progprune_cli.app import JobFailed  # importing the train app also registers the progprune_uid resolver
from progprune_cli.config import load_run_config
from progprune_cli.errors import UserError
from progprune_cli.stages.signals import Interrupted

# The sensitivity app's primary config: train's conf/config.yaml with its own run folder names and help.
ConfigStore.instance().store(name="sensitivity", node={
    "defaults": ["config", "_self_"],
    "hydra": {
        "run": {"dir": "runs/${now:%Y-%m-%d}/${now:%H-%M-%S}_sensitivity_${progprune_uid:}"},
        "sweep": {"dir": "runs/${now:%Y-%m-%d}/${now:%H-%M-%S}_sensitivity_sweep_${progprune_uid:}"},
        "help": {
            "app_name": "progprune sensitivity",
            "header": "progprune sensitivity: prune each unit of +strategy=NAME alone to every level of "
                      "sensitivity.levels,\nmeasure val accuracy without retraining, and derive per-unit sparsities "
                      "for sensitivity.target\n(layers.yaml; train with +strategy.layers_from=RUN_DIR/layers.yaml).",
            "footer": "Example: progprune sensitivity +strategy=weight sensitivity.levels=[0.5,0.9] "
                      "sensitivity.target=0.6",
        },
    },
})


@hydra.main(config_path="pkg://progprune_cli.conf", config_name="sensitivity", version_base="1.3")
def sensitivity_task(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    # log_path=False: the logging call's file:line after every line is noise to a user.
    console = Console(highlight=False, log_path=False)
    if not console.is_terminal:
        console = Console(highlight=False, log_path=False, width=150)  # piped: wide lines, not wrapped
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    try:
        from progprune_cli.sensitivity.run import interrupted_message, run_sensitivity  # torch: once a job starts

        cache = Path(hc.runtime.cwd) / "runs" / ".cache"
        try:
            run_sensitivity(load_run_config(container), container, list(hc.overrides.task), run_dir,  # type: ignore
                            console, cache)
        except Interrupted as error:
            print(f"progprune: {interrupted_message(error, run_dir)}", file=sys.stderr)
            raise SystemExit(error.exit_code) from None
    except UserError as error:
        print(f"progprune: error: {error}", file=sys.stderr)
        if multirun:
            # The other jobs still run; Hydra then reports this short message (no traceback) and exits 1.
            raise JobFailed(f"progprune: a sensitivity sweep job failed ({error}); see {run_dir}/status.json") \
                from None
        raise SystemExit(2) from None


def main(args: list[str]) -> int:
    """Run the Hydra app on `args`: overrides, -m, and Hydra's own flags."""
    sys.argv = ["progprune sensitivity", *args]
    sensitivity_task()
    return 0
