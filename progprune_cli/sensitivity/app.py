"""The Hydra edge of `progprune sensitivity`: train's config, its own run folder name, a RunConfig below it."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import progprune_cli.catalog  # noqa: F401  (every component's schema, for Hydra's compose)
import progprune_cli.resolvers  # noqa: F401  (the resolvers conf/config.yaml uses)
from progprune_cli.config import load_run_config
from progprune_cli.edge import exit_codes, hydra_argv, job_console
from progprune_cli.signals import Interrupted

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
    console = job_console()
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    with exit_codes(multirun=multirun, stopped=lambda error: _rerun_hint(error, run_dir),
                    sweep_failed=lambda error: f"progprune: a sensitivity sweep job failed ({error}); see "
                                               f"{run_dir}/status.json"):
        from progprune_cli.sensitivity.run import run_sensitivity  # torch: once a job starts

        cache = Path(hc.runtime.cwd) / "runs" / ".cache"
        run_sensitivity(load_run_config(container), container, list(hc.overrides.task), run_dir,  # type: ignore
                        console, cache)


def _rerun_hint(error: Interrupted, run_dir: Path) -> str:
    from progprune_cli.sensitivity.run import interrupted_message  # imported already: the job has started

    return interrupted_message(error, run_dir)


def main(args: list[str]) -> int:
    """Run the Hydra app on `args`: overrides, -m, and Hydra's own flags."""
    with hydra_argv("progprune sensitivity", args):
        sensitivity_task()
    return 0
