"""The launcher presets under conf/hydra/launcher compose onto the plugins they extend."""

from __future__ import annotations

from hydra import compose, initialize_config_module
from omegaconf import OmegaConf


def launcher(name: str) -> dict:
    with initialize_config_module(config_module="progprune_cli.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"hydra/launcher={name}"], return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=False)  # type: ignore[return-value]


def test_slurm_preset() -> None:
    cfg = launcher("slurm")
    assert cfg["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert cfg["submitit_folder"] == "${hydra.sweep.dir}/.submitit/%j"
    assert (cfg["timeout_min"], cfg["cpus_per_task"], cfg["mem_gb"], cfg["array_parallelism"]) == (120, 4, 16, 32)


def test_parallel_preset() -> None:
    cfg = launcher("parallel")
    assert cfg["_target_"] == "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert cfg["n_jobs"] == 2
