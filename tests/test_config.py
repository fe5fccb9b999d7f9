"""The real conf/ composed with Hydra, typed by load_run_config, and checked by preflight: exact one-line errors."""

from __future__ import annotations

import copy
import dataclasses
import typing
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from progprune_cli.data import DATASETS
from progprune_cli.models import MODELS
from progprune_cli.optim.lr_schedulers import LR_SCHEDULERS
from progprune_cli.optim.optimizers import OPTIMIZERS, build_optimizer
from progprune_cli.pruning.schedules import SCHEDULES
from progprune_cli.pruning.strategies import STRATEGIES
from progprune_cli.trackers import TRACKERS
from progprune_cli.config import (
    CheckpointConfig, EvaluateConfig, LRSchedulerConfig, RunConfig, ScheduleConfig, SearchConfig, SensitivityConfig,
    StageConfig, StrategyConfig, TrainConfig, load_run_config,
)
from progprune_cli.data.digits import DigitsConfig
from progprune_cli.models.two_conv_cnn import TwoConvCNNConfig
from progprune_cli.optim.optimizers import AdamConfig, SGDConfig
from progprune_cli.pruning.schedules.iterative import IterativeConfig
from progprune_cli.errors import UserError
from progprune_cli.preflight import check

CONF = Path(str(resources.files("progprune_cli.conf")))
REGISTRIES = {"dataset": DATASETS, "model": MODELS, "strategy": STRATEGIES, "schedule": SCHEDULES,
              "optimizer": OPTIMIZERS, "lr_scheduler": LR_SCHEDULERS, "logger": TRACKERS}
PRESETS = ("experiment",)  # groups of whole-config presets (# @package _global_), not of one component
STRATEGY_KEYS = "exclude, include_bias, layers, layers_from, name, pattern, scope, sparsity, target, threshold"


@lru_cache(maxsize=None)
def _composed(overrides: tuple[str, ...]) -> dict[str, Any]:
    with initialize_config_module(config_module="progprune_cli.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    data.pop("hydra", None)
    return data


def composed(*overrides: str) -> dict[str, Any]:
    """The plain dict `progprune train OVERRIDES` hands to load_run_config (a fresh copy to edit)."""
    return copy.deepcopy(_composed(overrides))


def load_error(data: dict[str, Any]) -> str:
    with pytest.raises(UserError) as error:
        load_run_config(data)
    return str(error.value)


def check_error(*overrides: str, multirun: bool = False) -> str:
    with pytest.raises(UserError) as error:
        check(list(overrides), multirun)
    return str(error.value)


# --- composing the real conf/ ------------------------------------------------------------------------------------

def test_defaults_are_a_dense_baseline() -> None:
    """Every component is its registered schema's object, with the values its YAML (and config.yaml) give."""
    constant = LRSchedulerConfig(name="constant", warmup_epochs=0, warmup_factor=0.1)
    assert load_run_config(composed()) == RunConfig(
        seed=0, device="auto",
        dataset=DigitsConfig(name="digits", val_fraction=0.15, test_fraction=0.15),
        model=TwoConvCNNConfig(name="two_conv_cnn", channels=32),
        optimizer=AdamConfig(name="adam", lr=0.001, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.0, amsgrad=False),
        strategy=None,
        schedule=ScheduleConfig(name="cubic"),
        train=TrainConfig(epochs=10, batch_size=32, lr=None, lr_scheduler=constant, loss="cross_entropy",
                          label_smoothing=0.0, reuse=True, threads=None, precision="fp32", channels_last=False,
                          compile=False),
        prune=StageConfig(epochs=5, batch_size=32, lr=None, lr_scheduler=constant),
        finetune=StageConfig(epochs=3, batch_size=32, lr=None, lr_scheduler=constant),
        evaluate=EvaluateConfig(batch_size=128, latency_batch=1, warmup=1, repeats=10, min_repeats=5,
                                target_spread=0.1, threads=1, dense_baseline=True, scratch_baseline=False,
                                sparse_kernels=False, sparse_min_sparsity=0.9, timing_samples=128, train_samples=2048,
                                backends=["torch"]),
        checkpoint=CheckpointConfig(every_steps=None),
        sensitivity=SensitivityConfig(levels=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], target=0.5),
        search=SearchConfig(objectives=["val_accuracy:max"]),
    )


def test_plus_strategy_weight_prunes_half_by_magnitude() -> None:
    cfg = load_run_config(composed("+strategy=weight"))
    assert cfg.strategy == StrategyConfig(name="weight", sparsity=0.5)
    assert cfg.strategy.mode == "sparsity"


def test_a_threshold_switches_to_threshold_mode() -> None:
    cfg = load_run_config(composed("+strategy=weight", "strategy.threshold=0.2"))
    assert cfg.strategy == StrategyConfig(name="weight", sparsity=0.5, threshold=0.2)
    assert cfg.strategy.mode == "threshold"


def test_tiny_overrides_reach_the_typed_config() -> None:
    cfg = load_run_config(composed("+strategy=weight", "strategy.scope=global", "strategy.exclude=[fc]",
                                   "+strategy.layers.conv1=0.3", "schedule=iterative", "train.epochs=1",
                                   "optimizer=sgd"))
    assert cfg.strategy == StrategyConfig(name="weight", scope="global", exclude=["fc"], layers={"conv1": 0.3})
    assert cfg.schedule == IterativeConfig(name="iterative", rate=0.2, rounds=None)
    assert cfg.optimizer == SGDConfig(name="sgd", lr=0.05, momentum=0.9, dampening=0.0, nesterov=False,
                                      weight_decay=0.0)
    assert cfg.train.epochs == 1


def test_sgd_nesterov_is_the_cifar_recipe_on_torch_sgd() -> None:
    cfg = load_run_config(composed("optimizer=sgd_nesterov"))
    optimizer = build_optimizer(cfg.optimizer, torch.nn.Linear(2, 2))
    assert type(optimizer) is torch.optim.SGD
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"], group["dampening"]) == (
        0.1, 0.9, True, 0.0005, 0)


@pytest.mark.parametrize("group", sorted(REGISTRIES))
def test_every_yaml_is_named_like_its_file_and_registered(group: str) -> None:
    files = sorted((CONF / group).glob("*.yaml"))
    assert files, f"no YAML under conf/{group}/"
    names = {f.stem: OmegaConf.load(f).get("name") for f in files}
    assert names == {stem: stem for stem in names}
    assert sorted(names) == REGISTRIES[group].names()  # one word each way: YAML ↔ registry key


def test_conf_has_exactly_the_registered_groups() -> None:
    # conf/hydra/ holds launcher presets for Hydra itself, not a progprune group.
    groups = sorted(d.name for d in CONF.iterdir() if d.is_dir() and not d.name.startswith("_") and d.name != "hydra")
    assert groups == sorted([*REGISTRIES, *PRESETS])


COMPARISONS = {"methods_at_budgets"}  # sweep presets: the method comes from the command line, no published figure


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")
                                        if p.stem not in COMPARISONS))
def test_every_experiment_preset_composes_into_a_valid_config(name: str) -> None:
    cfg = load_run_config(composed(f"experiment={name}"))
    assert cfg.strategy is not None and cfg.expected, name
    for figure in cfg.expected:
        assert figure.source and figure.model in ("original", "pruned", "finetuned", "compacted"), figure


def test_methods_at_budgets_sweeps_two_mac_targets_and_three_seeds_with_both_baselines() -> None:
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="progprune_cli.conf", version_base="1.3"):
        hydra = compose(config_name="config", overrides=["experiment=methods_at_budgets", "+strategy=taylor",
                                                         "strategy.granularity=channel"], return_hydra_config=True)
    assert dict(hydra.hydra.sweeper.params) == {"strategy.target.macs": "2.0,4.0", "seed": "0,1,2"}
    cfg = load_run_config(composed("experiment=methods_at_budgets", "+strategy=taylor",
                                   "strategy.granularity=channel", "strategy.target.macs=4.0"))
    assert (cfg.evaluate.scratch_baseline, cfg.evaluate.dense_baseline, cfg.model.name) == (True, True, "two_conv_cnn")
    assert cfg.strategy.target.macs == 4.0


def test_a_presets_own_sweep_is_checked_job_by_job_before_any_folder(tmp_path: Path) -> None:
    """preflight expands hydra.sweeper.params as Hydra's basic sweeper will: the preset's keys in order, the command
    line's overrides winning for a key both give."""
    preset = ["experiment=methods_at_budgets", "+strategy=structured", "train.epochs=1"]
    jobs = [(c.strategy.target.macs, c.seed) for c in check(preset, multirun=True)]
    assert jobs == [(2.0, 0), (2.0, 1), (2.0, 2), (4.0, 0), (4.0, 1), (4.0, 2)]
    assert [(c.strategy.target.macs, c.seed) for c in check([*preset, "seed=7"], multirun=True)] == [(2.0, 7),
                                                                                                  (4.0, 7)]
    # A budget the model cannot reach in one of those jobs refuses the sweep, as a command-line sweep is refused.
    with pytest.raises(UserError) as refused:
        check([*preset, "dataset=synthetic", "dataset.channels=3", "dataset.size=32",
               f"hydra.sweep.dir={tmp_path / 'sweep'}"], multirun=True)
    assert str(refused.value) == "strategy.target.macs=4: the most this model reaches is 3.39× (at sparsity 0.99)"
    assert not (tmp_path / "sweep").exists()


# --- load_run_config errors --------------------------------------------------------------------------------------

def test_sparsity_one_is_refused() -> None:
    data = composed("+strategy=weight")
    data["strategy"]["sparsity"] = 1.0
    assert load_error(data) == "strategy.sparsity: got 1.0; must be in [0, 1)"


def test_negative_threshold_is_refused() -> None:
    data = composed("+strategy=weight")
    data["strategy"]["threshold"] = -0.1
    assert load_error(data) == "strategy.threshold: got -0.1; must be >= 0"


@pytest.mark.parametrize("stage", ["train", "prune", "finetune"])
def test_negative_epochs_are_refused(stage: str) -> None:
    data = composed()
    data[stage]["epochs"] = -1
    assert load_error(data) == f"{stage}.epochs: got -1; must be >= 0"


@pytest.mark.parametrize(("key", "value", "error"), [
    ("target_spread", 0, "evaluate.target_spread: got 0.0; must be > 0 (e.g. 0.05) or null (always evaluate.repeats "
                         "timed passes)"),
    ("min_repeats", 0, "evaluate.min_repeats: got 0; must be >= 1"),
])
def test_a_timing_rule_that_cannot_stop_is_refused(key: str, value: float, error: str) -> None:
    data = composed()
    data["evaluate"][key] = value
    assert load_error(data) == error


def test_the_timing_rule_defaults_to_five_to_ten_repeats_within_ten_percent() -> None:
    ev = load_run_config(composed()).evaluate
    assert (ev.min_repeats, ev.repeats, ev.target_spread) == (5, 10, 0.1)


def test_unknown_device_is_refused() -> None:
    data = composed()
    data["device"] = "tpu"
    assert load_error(data) == "device: got 'tpu'; allowed values are auto, cpu, cuda"


def test_unknown_top_level_key_is_refused() -> None:
    data = composed()
    data["foo"] = 1
    assert load_error(data) == (
        "foo: unknown key; allowed keys are checkpoint, dataset, device, evaluate, expected, finetune, logger, model, "
        "optimizer, prune, schedule, search, seed, sensitivity, strategy, train")


def test_a_missing_group_and_a_wrong_type() -> None:
    data = composed()
    del data["model"]
    assert load_error(data) == "model: missing; choose one with model=NAME"
    data = composed()
    data["train"]["epochs"] = "ten"
    assert load_error(data) == "train.epochs: got 'ten'; expected a whole number"


# --- preflight.check ---------------------------------------------------------------------------------------------

def test_check_types_every_job_of_a_sweep() -> None:
    jobs = check(["+strategy=weight", "strategy.sparsity=0.5,0.8"], multirun=True)
    assert [job.strategy.sparsity for job in jobs] == [0.5, 0.8]  # type: ignore[union-attr]
    assert all(isinstance(job, RunConfig) for job in jobs)


def test_check_unknown_strategy_lists_the_known_ones() -> None:
    assert check_error("+strategy=nope") == (
        f"strategy=nope: unknown strategy; choose one of {', '.join(STRATEGIES.names())}")
    assert "weight" in STRATEGIES.names()


def test_check_unknown_strategy_key_with_plus() -> None:
    assert check_error("+strategy=weight", "+strategy.thresh=0.3") == (
        f"strategy.thresh: unknown key; allowed keys are {STRATEGY_KEYS}")


def test_check_unknown_strategy_key_without_plus() -> None:
    assert check_error("strategy.thresh=0.3") == (
        "strategy.thresh: no strategy chosen; add +strategy=NAME first (one of "
        + ", ".join(STRATEGIES.names()) + ")")


def test_check_a_sweep_needs_multirun() -> None:
    assert check_error("+strategy=weight", "strategy.sparsity=0.5,0.8") == (
        "strategy.sparsity=0.5,0.8: a sweep needs -m (progprune train -m ...)")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_check_cuda_without_cuda() -> None:
    assert check_error("device=cuda") == (
        "device: got cuda but CUDA is not available on this machine; use device=cpu or device=auto")


# --- structured configs: one schema per YAML, every default in one place -----------------------------------------

@pytest.mark.parametrize("group", sorted(REGISTRIES))
def test_every_component_yaml_composes_on_its_schema_and_sets_only_its_own_keys(group: str) -> None:
    """conf/<group>/<name>.yaml's defaults list names its schema (the registered dataclass); the keys it sets are
    exactly the schema's keys that have no default there, so no value lives in two places."""
    registry = REGISTRIES[group]
    for path in sorted((CONF / group).glob("*.yaml")):
        data = OmegaConf.to_container(OmegaConf.load(path))
        assert isinstance(data, dict)
        assert data.pop("defaults") == [f"base_{path.stem}", "_self_"], path.name
        schema = registry.schema(path.stem)
        no_default = {f.name for f in dataclasses.fields(schema) if f.default is dataclasses.MISSING
                      and f.default_factory is dataclasses.MISSING and str(f.default) != "???"}
        own = {f.name for f in dataclasses.fields(schema) if str(f.default) == "???"}
        assert not no_default, f"{schema.__name__}: fields without even MISSING: {no_default}"
        assert set(data) == own, f"{path.name} sets {sorted(data)}; its schema leaves {sorted(own)} to it"


def test_config_yaml_sets_every_top_level_value_the_schema_leaves_to_it() -> None:
    data = OmegaConf.to_container(OmegaConf.load(CONF / "config.yaml"))
    assert isinstance(data, dict) and data["defaults"][0].startswith("base_config")
    for section in ("train", "prune", "finetune", "checkpoint", "evaluate", "sensitivity"):
        hint = typing.get_type_hints(RunConfig)[section]
        own = {f.name for f in dataclasses.fields(hint) if str(f.default) == "???"} - {"lr_scheduler"}
        assert set(data[section]) == own, section


def test_a_strategy_is_added_with_plus() -> None:
    assert check_error("strategy=weight") == "strategy=weight: a strategy is added, not changed: write +strategy=weight"


def test_a_value_of_the_wrong_type_names_its_full_key_and_what_it_takes() -> None:
    assert check_error("lr_scheduler@finetune.lr_scheduler=cosine", "finetune.lr_scheduler.min_lr=low") == (
        "finetune.lr_scheduler.min_lr: got 'low'; expected a number")
    assert check_error("optimizer=adam", "optimizer.betas=[0.9,x]") == (
        "optimizer.betas[1]: got 'x'; expected a number")
    assert check_error("+strategy=structured", "strategy.norm=3") == "strategy.norm: got 3; allowed values are 1, 2"
