"""Check a `progprune train` command line before Hydra makes a run folder: every sweep job composed on the schema,
typed and checked, its data prepared, its folder judged, so bad input fails in one line with no training started."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import typing
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

import progprune_cli.catalog  # noqa: F401  (every component's schema, for compose)
import progprune_cli.resolvers  # noqa: F401  (the resolvers conf/config.yaml uses)
from progprune_cli.atomic import nearest_existing
from progprune_cli.config import RunConfig, load_run_config
from progprune_cli.config.groups import CONFIG_MODULE, group_options
from progprune_cli.config.load import describe
from progprune_cli.config.schema import COMPONENTS
from progprune_cli.config.overrides import candidates, is_hydra, jobs, literal_dir, parse
from progprune_cli.config.search import parse_objectives
from progprune_cli.errors import UserError

# Below this much free space a run cannot even write its config and first checkpoint; Hydra would fail with a
# traceback while writing .hydra/.
MIN_FREE_BYTES = 1 << 20
Job = tuple[RunConfig, dict[str, Any]]  # a job's typed config and the composed config it came from


def check(overrides: list[str], multirun: bool,
          folder_check: Callable[[Path, dict[str, Any]], None] | None = None) -> list[RunConfig]:
    """The typed config of every job the command would run, or a one-line UserError; `folder_check` judges a
    given hydra.run.dir for another command than train (default: results.status.check_folder)."""
    return [cfg for cfg, _ in checked(overrides, multirun, folder_check)]


def checked(overrides: list[str], multirun: bool,
            folder_check: Callable[[Path, dict[str, Any]], None] | None = None,
            fits: dict[str, Any] | None = None) -> list[Job]:
    """`check`, with each job's composed config as a plain dict beside its RunConfig; `fits` (when given) gets the
    MAC and parameter budgets found, by pruning.budget.budget_key, for the jobs to reuse rather than search again."""
    parsed = parse(overrides)
    ours = [o for o in parsed if not is_hydra(o)]
    _check_groups(ours)
    if not multirun and any(o.is_sweep_override() for o in parsed):
        raise UserError(f"{next(o.input_line for o in parsed if o.is_sweep_override())}: a sweep needs -m "
                        "(progprune train -m ...)")
    sampled = multirun and _sampling(parsed)
    if sampled:
        require_optuna()
    job_lines = (candidates(ours) if sampled else jobs(ours)) if multirun else [[o.input_line for o in ours]]
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        hydra_given = [o.input_line for o in parsed if is_hydra(o)]
        # The first job is composed with Hydra's own node too: one composition (~0.4 s) checks Hydra's overrides and
        # shows a preset's sweep.
        first, hydra = _compose(job_lines[0], hydra_given, hydra_node=multirun or bool(hydra_given))
        sweeper = _sweeper(hydra)
        if multirun and not sampled and sweeper.get("params"):
            # Hydra's basic sweeper sweeps a preset's hydra.sweeper.params (experiment=methods_at_budgets) with the
            # command line's overrides, which win for a key both give: every job it will run is checked here.
            job_lines, first = jobs(parse([*swept_params(sweeper["params"]), *(o.input_line for o in ours)])), None
        configs = []
        for i, job in enumerate(job_lines):
            data = first if i == 0 and first is not None else _compose(job, [])[0]
            configs.append(_typed(data, here=not multirun))
        if multirun:
            _check_shared(ours)
    if sampled:
        for cfg, _ in configs:
            check_directions(sweeper.get("direction"), cfg.search.objectives)
        check_study_storage(sweeper.get("storage"))
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = literal_dir(parsed, key)
    check_writable(given if given is not None else Path("runs"), key)
    if multirun and given is not None:
        check_sweep_folder(given)
    elif given is not None:
        # Before Hydra rewrites the folder's .hydra/: a finished run, or another config's, must stay untouched.
        if folder_check is None:
            from progprune_cli.results.status import check_folder as folder_check

        folder_check(given, configs[0][1])
    if not any(o.key_or_group == "hydra/launcher" and "slurm" in str(o.value()) for o in parsed):
        # Before any folder exists: a missing or corrupt file fails here in one line, downloads happen once (not
        # once per parallel sweep job), and decoding fills the cache the jobs then read. Slurm jobs may see other
        # disks than this machine, so there each job prepares its own data.
        from progprune_cli.data import prepare_data

        for dataset in _unique(c.dataset for c, _ in configs):
            prepare_data(dataset)
        found = _check_models([c for c, _ in configs])
        if fits is not None:
            fits.update(found)
    return configs


def run_dir_of(overrides: list[str]) -> Path | None:
    """The hydra.run.dir a (checked) command line gives literally, if any."""
    return literal_dir(parse([o for o in overrides if not o.startswith("-")]), "hydra.run.dir")


def check_writable(folder: Path, key: str) -> None:
    """The folder a run or sweep will write (or the nearest existing folder above it) must be writable and have
    room: a read-only folder or a full disk is one line now, not a traceback from Hydra or a half-made folder."""
    existing = nearest_existing(folder)
    if not existing.is_dir():
        return  # a file in the way: the folder checks say so
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{key}: cannot write into {existing} (permission denied or a read-only filesystem); "
                        "choose another folder")
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        raise UserError(f"{key}: the disk holding {existing} is full ({free // 1024} KB free); free some space or "
                        "choose another folder")


def check_sweep_folder(sweep_dir: Path) -> None:
    """A given hydra.sweep.dir must be new or empty: Hydra would write its jobs and summary over what is there."""
    if not sweep_dir.exists():
        return
    if not sweep_dir.is_dir():
        raise UserError(f"hydra.sweep.dir: {sweep_dir} is a file, not a folder; choose a new folder")
    if not any(sweep_dir.iterdir()):
        return
    if (sweep_dir / "multirun.yaml").exists():
        raise UserError(f"hydra.sweep.dir: {sweep_dir} already holds a sweep; continue it with progprune resume "
                        f"{sweep_dir}, or choose a new folder")
    raise UserError(f"hydra.sweep.dir: {sweep_dir} is not empty and is not a progprune sweep folder; nothing in it "
                    "was touched; choose a new or empty folder")


def swept_params(params: dict[str, Any]) -> list[str]:
    """hydra.sweeper.params as the override lines Hydra's basic sweeper makes of them (KEY=VALUES, in order)."""
    return [f"{key}={value}" for key, value in params.items()]


def _sweeper(hydra: dict[str, Any] | None) -> dict[str, Any]:
    """The sweeper's config (unresolved) from Hydra's composed node; {} when that node was not composed (a single
    run given no hydra.* override)."""
    sweeper = (hydra or {}).get("sweeper")
    return sweeper if isinstance(sweeper, dict) else {}


def _sampling(parsed: list[Override]) -> bool:
    """A sweeper other than Hydra's basic one chosen (hydra/sweeper=progprune_optuna or optuna): it samples values
    from intervals, and optimises what the jobs return."""
    return any(o.key_or_group == "hydra/sweeper" and o.value() != "basic" for o in parsed)


def require_optuna(find: Callable[[str], Any] = importlib.util.find_spec) -> None:
    """hydra/sweeper=progprune_optuna extends the plugin's config: without the plugin, say which extra to install
    (Hydra would only say that hydra/sweeper/optuna cannot be found)."""
    if find("hydra_plugins.hydra_optuna_sweeper") is None:
        raise UserError("hydra/sweeper: a search needs hydra-optuna-sweeper, which is not installed: "
                        "pip install -e '.[search]' (make installs it)")


def check_study_storage(storage: Any, versions: Callable[[str], str] = version) -> None:
    """An SQLite study (the preset's) needs what optuna 2.x's database storage was written for: SQLAlchemy 1.x
    (with 2.x it fails in the middle of opening the file: `database is locked`, a traceback after Hydra started)."""
    if not (isinstance(storage, str) and storage.startswith(("sqlite", "${progprune_study_storage"))):
        return
    try:
        optuna, sqlalchemy = versions("optuna"), versions("sqlalchemy")
    except PackageNotFoundError:
        return  # the sweeper's own import says what is missing
    if int(optuna.split(".")[0]) < 3 and int(sqlalchemy.split(".")[0]) >= 2:
        raise UserError(f"hydra.sweeper.storage: optuna {optuna} keeps a study in SQLite only with SQLAlchemy < 2 "
                        f"(installed: {sqlalchemy}); pip install 'sqlalchemy<2' (the search extra pins it), or run "
                        "with hydra.sweeper.storage=null (the study in memory: optimization_results.yaml and the "
                        "run folders remain)")


def check_directions(direction: Any, objectives: list[str]) -> None:
    """The sweeper's `direction` (one per value a job returns) must be search.objectives' own, in order."""
    wanted = [o.direction for o in parse_objectives(objectives)]
    if isinstance(direction, str) and direction.startswith("${"):
        return  # the preset's: it follows search.objectives
    given = [getattr(d, "name", d) for d in (direction if isinstance(direction, list) else [direction])]
    if [str(d) for d in given] != wanted:
        raise UserError(f"hydra.sweeper.direction: got [{', '.join(map(str, given))}]; search.objectives "
                        f"[{', '.join(objectives)}] needs [{', '.join(wanted)}] (one per objective, in order; "
                        "hydra/sweeper=progprune_optuna sets it from search.objectives)")


def _typed(data: dict[str, Any], here: bool) -> Job:
    cfg = load_run_config(data)
    from progprune_cli.stages.checks import check_components  # torch: only once the config is sound

    check_components(cfg, here)
    return cfg, data


def _compose(job: list[str], hydra_overrides: list[str],
             hydra_node: bool = False) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The composed config as a plain dict (resolved), and with `hydra_node` Hydra's own node (unresolved), with
    `hydra_overrides` applied: an unknown key or group choice there is one line here, not a traceback from Hydra
    after the folder exists. Hydra's and OmegaConf's errors in one line (config/load.describe)."""
    try:
        cfg = compose(config_name="config", overrides=[*job, *hydra_overrides], return_hydra_config=hydra_node)
        hydra = None
        if hydra_node:
            hydra = OmegaConf.to_container(cfg.hydra, resolve=False)
            with open_dict(cfg):
                del cfg["hydra"]  # the job's config resolves without it, as composed without Hydra's node
        return OmegaConf.to_container(cfg, resolve=True), hydra  # type: ignore[return-value]
    # OmegaConf asserts (rather than raises) when an override's path runs through a null node: a group not chosen.
    except (HydraException, OmegaConfBaseException, AssertionError) as error:
        raise UserError(_unchosen(job) or describe(error)) from None


def _check_shared(ours: list[Override]) -> None:
    """Hydra composes a sweep's shared config from the overrides that are not swept before it expands the sweep:
    `strategy.granularity=channel` beside a swept `+strategy=taylor,random` meets no strategy there and crashes
    Hydra after every job composed fine here. One line instead, naming the override and the swept group."""
    swept = [o for o in ours if o.is_sweep_override()]
    groups = {o.key_or_group.lstrip("+~") for o in swept} & set(group_options())
    for override in ours:
        group = override.key_or_group.lstrip("+~").partition(".")[0]
        if group in groups and "." in override.key_or_group and not override.is_sweep_override():
            raise UserError(f"{override.input_line}: sets a key of {group}, which this sweep sweeps; Hydra composes "
                            f"a sweep's shared config without the swept {group} and cannot set it there. Sweep one "
                            f"{group} at a time (+{group}=NAME {override.input_line}), or put the key in the "
                            f"{group}'s YAML")


def _unchosen(job: list[str]) -> str | None:
    """`strategy.x=1` when no strategy is chosen (or `logger.mlflow.x=1` when mlflow is not among the loggers): the
    hint that one must be chosen first, or None."""
    groups = group_options()
    for override in parse(job):
        group, _, rest = override.key_or_group.partition(".")
        entry = rest.partition(".")[0] if group in _MANY else None
        if group in groups and rest and not _chosen(group, job, entry):
            if entry is not None:
                return f"{override.key_or_group}: {group} {entry} is not chosen; add {group}={entry} first"
            return (f"{override.key_or_group}: no {group} chosen; add +{group}=NAME first "
                    f"(one of {', '.join(groups[group])})")
    return None


def _chosen(group: str, job: list[str], entry: str | None = None) -> bool:
    """Whether the job, with its keys under `group` left out, still composes a `group` node (holding `entry`)."""
    rest = [line for line in job if not line.lstrip("+~").startswith(f"{group}.")]
    try:
        node = compose(config_name="config", overrides=rest).get(group)
    except (HydraException, OmegaConfBaseException, AssertionError):
        return True  # the error is elsewhere: describe it
    return node is not None and (entry is None or entry in node)


# Groups of which a run chooses any number (logger=[tensorboard,mlflow]): a RunConfig dict of components by name.
_MANY = {f.name for f in dataclasses.fields(RunConfig)
         if typing.get_origin(typing.get_type_hints(RunConfig)[f.name]) is dict
         and typing.get_args(typing.get_type_hints(RunConfig)[f.name])[-1] in COMPONENTS.values()}


def _check_groups(overrides: list[Override]) -> None:
    """A group choice names one of conf/<group>/'s YAMLs; strategy is added with +strategy= (it is no default)."""
    groups = group_options()
    for override in overrides:
        group = override.key_or_group
        if group not in groups:
            continue
        if group == "lr_scheduler" and not override.package:
            raise UserError(f"{override.input_line}: a learning-rate schedule is set per stage: "
                            f"lr_scheduler@train.lr_scheduler={override.get_value_element_as_str()} (or "
                            f"@prune.lr_scheduler, @finetune.lr_scheduler); choose one of {', '.join(groups[group])}")
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        for value in [v for value in values for v in (value if isinstance(value, list) else [value])]:
            if isinstance(value, str) and value not in groups[group]:
                raise UserError(f"{group}={value}: unknown {group}; choose one of {', '.join(groups[group])}")
        if group == "strategy" and not (override.is_add() or override.is_delete() or override.is_force_add()):
            # Not in the defaults list (a run without one is the dense baseline), so Hydra adds it with '+'.
            raise UserError(f"{override.input_line}: a strategy is added, not changed: write "
                            f"+{override.input_line}")


def _check_models(configs: list[RunConfig]) -> dict[str, Any]:
    """Each model built for its data with its model.weights loaded, and run once on it (a size it cannot take, a
    user's class or weights file that does not fit, is one line now), and the layer names a strategy is given
    (strategy.layers, layers_from) checked against it: once per (data, model, train.epochs, strategy). Returns the
    MAC and parameter budgets found, by budget_key."""
    from progprune_cli.data import build_data
    from progprune_cli.models.weights import source_of
    from progprune_cli.parts import check_forward, model_for_run, original_kind, plan_events
    from progprune_cli.pruning.budget import BudgetFit, budget_key, find_budget
    from progprune_cli.pruning.strategies import build_strategy

    fits: dict[str, BudgetFit | None] = {}
    for cfg in configs:
        key = budget_key(cfg)
        if key not in fits:
            fits[key] = None
            info = build_data(cfg.dataset, cfg.seed).info
            model, fitted = model_for_run(cfg.model, info, cfg.seed)
            original_kind(cfg, fitted)
            check_forward(model, info, source_of(cfg.model))
            if cfg.strategy is not None:
                strategy = build_strategy(cfg.strategy)
                strategy.check(model, info)
                fits[key] = find_budget(strategy, model, info)  # an infeasible budget: one line, before any folder
        fit = fits[key]
        if fit is not None and cfg.strategy is not None and cfg.schedule.unit == "epoch":
            # The schedule ramps to the sparsity found (stages/checks.py left it to here).
            plan_events(dataclasses.replace(cfg, strategy=dataclasses.replace(cfg.strategy, sparsity=fit.sparsity)),
                        steps=1)
    return {key: fit for key, fit in fits.items() if fit is not None}


def _unique(datasets: Any) -> list[Any]:
    """Each dataset config once (by value)."""
    return list({json.dumps(dataclasses.asdict(d), sort_keys=True, default=str): d for d in datasets}.values())
