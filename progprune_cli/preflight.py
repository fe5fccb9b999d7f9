"""Check a `progprune train` command line before Hydra makes a run folder: every sweep combination composed,
typed and validated, so bad input fails in one line with no training started."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from progprune_cli.config import RunConfig, load_run_config
from progprune_cli.errors import UserError

CONFIG_MODULE = "progprune_cli.conf"


def group_options() -> dict[str, list[str]]:
    """Config groups (folders of conf/) and their choices (YAML names)."""
    root = resources.files(CONFIG_MODULE)
    return {d.name: sorted(f.name[:-5] for f in d.iterdir() if f.name.endswith(".yaml"))
            for d in root.iterdir() if d.is_dir() and not d.name.startswith("_") and d.name != "hydra"}


def normalize(overrides: list[str]) -> list[str]:
    """`strategy=NAME` means `+strategy=NAME`: strategy is not in the defaults list, so Hydra needs the `+`."""
    return ["+" + o if re.match(r"^strategy=", o) else o for o in overrides]


def check(overrides: list[str], multirun: bool,
          folder_check: Callable[[Path, dict[str, Any]], None] | None = None) -> list[RunConfig]:
    """The typed config of every job the command would run, or a one-line UserError; `folder_check` judges a
    given hydra.run.dir for another command than train (default: results.status.check_folder)."""
    return [cfg for cfg, _ in checked(overrides, multirun, folder_check)]


def checked(overrides: list[str], multirun: bool,
            folder_check: Callable[[Path, dict[str, Any]], None] | None = None) -> list[tuple[RunConfig, dict]]:
    """`check`, with each job's composed config as a plain dict beside its RunConfig."""
    parsed = _parse(overrides)
    ours = [o.input_line for o in parsed if not _is_hydra(o)]
    hydra_overrides = [o.input_line for o in parsed if _is_hydra(o)]
    _check_groups(ours)
    if not multirun and any(o.is_sweep_override() for o in parsed):
        raise UserError(f"{next(o.input_line for o in parsed if o.is_sweep_override())}: a sweep needs -m "
                        "(progprune train -m ...)")
    ours_parsed = [o for o in parsed if not _is_hydra(o)]
    jobs = [job for batch in BasicSweeper.split_arguments(ours_parsed, None) for job in batch] if multirun else [ours]
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        _check_hydra(jobs[0], hydra_overrides)
        configs = [_typed(job, here=not multirun) for job in jobs]
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = literal_dir(parsed, key)
    check_writable(given if given is not None else Path("runs"), key)
    if multirun:
        if given is not None:
            check_sweep_folder(given)
    else:
        run_dir = given
        if run_dir is not None:
            # Before Hydra rewrites the folder's .hydra/: a finished run, or another config's, must stay untouched.
            if folder_check is None:
                from progprune_cli.results.status import check_folder as folder_check

            folder_check(run_dir, configs[0][1])
    if not any(re.match(r"^[+~]*hydra/launcher=.*slurm", o) for o in overrides):
        # Before any folder exists: a missing or corrupt file fails here in one line, downloads happen once (not
        # once per parallel sweep job), and decoding fills the cache the jobs then read. Slurm jobs may see other
        # disks than this machine, so there each job prepares its own data.
        from progprune_cli.data import prepare_data

        unique = {json.dumps([c.dataset.name, c.dataset.options], sort_keys=True, default=str): c.dataset
                  for c, _ in configs}
        for dataset in unique.values():
            prepare_data(dataset)
        _check_layers([c for c, _ in configs])
    return configs


def _parse(overrides: list[str]) -> list[Override]:
    """Every override of the command line, Hydra's own included, parsed; a line Hydra cannot read is one line."""
    parser = OverridesParser.create()
    parsed = []
    for line in overrides:
        try:
            (override,) = parser.parse_overrides([line])
        except HydraException:
            raise UserError(f"{line}: not an override; write KEY=VALUE, +KEY=VALUE or GROUP=NAME") from None
        if not override.key_or_group:
            raise UserError(f"{line}: not an override (no key before '='); write KEY=VALUE, +KEY=VALUE or "
                            "GROUP=NAME")
        parsed.append(override)
    return parsed


def _is_hydra(override: Override) -> bool:
    """An override of Hydra's own config (hydra.run.dir=, hydra/launcher=, a group packaged into hydra)."""
    return any(re.match(r"^hydra($|[./])", name or "") for name in (override.key_or_group, override.package))


def run_dir_of(overrides: list[str]) -> Path | None:
    """The hydra.run.dir a (checked) command line gives literally, if any."""
    return literal_dir(_parse([o for o in overrides if not o.startswith("-")]), "hydra.run.dir")


def literal_dir(parsed: list[Override], key: str) -> Path | None:
    """The folder `key` (hydra.run.dir or hydra.sweep.dir) names, when given without interpolations (Hydra
    resolves `${...}` itself, later: such a folder is checked when the run starts)."""
    for override in parsed:
        if override.key_or_group == key and not override.is_sweep_override():
            value = override.value()
            if isinstance(value, str) and "${" not in value:
                return Path(value)
    return None


# Below this much free space a run cannot even write its config and first checkpoint; Hydra would fail with a
# traceback while writing .hydra/.
MIN_FREE_BYTES = 1 << 20


def check_writable(folder: Path, key: str) -> None:
    """The folder a run or sweep will write (or the nearest existing folder above it) must be writable and have
    room: a read-only folder or a full disk is one line now, not a traceback from Hydra or a half-made folder."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
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
    entries = list(sweep_dir.iterdir())
    if not entries:
        return
    if (sweep_dir / "multirun.yaml").exists():
        raise UserError(f"hydra.sweep.dir: {sweep_dir} already holds a sweep; continue it with progprune resume "
                        f"{sweep_dir}, or choose a new folder")
    raise UserError(f"hydra.sweep.dir: {sweep_dir} is not empty and is not a progprune sweep folder; nothing in it "
                    "was touched; choose a new or empty folder")


def _check_hydra(job: list[str], hydra_overrides: list[str]) -> None:
    """Hydra's own overrides composed once with a job's: an unknown key or group choice is one line here, not a
    traceback from Hydra after the folder exists."""
    if not hydra_overrides:
        return
    import progprune_cli.folders  # noqa: F401  (the resolver run-folder names use)

    try:
        compose(config_name="config", overrides=[*job, *hydra_overrides], return_hydra_config=True)
    except MissingConfigException as error:
        group, _, name = (error.missing_cfg_file or "").rpartition("/")
        if group and error.options:
            raise UserError(f"{group}={name}: unknown {group}; choose one of {', '.join(error.options)}") from None
        raise UserError(_first_line(error)) from None
    except (HydraException, OmegaConfBaseException, ValueError, TypeError) as error:
        missing = re.search(r"Could not override '([^']+)'", str(error))
        if missing:
            raise UserError(f"{missing.group(1)}: unknown key of Hydra's own config (see progprune train "
                            "--hydra-help)") from None
        raise UserError(_first_line(error)) from None


def _check_layers(configs: list[RunConfig]) -> None:
    """Layer names a strategy is given (strategy.layers, layers_from, exclude) must be the model's: checked on the
    model built for the data, once per (data, model, strategy)."""
    from progprune_cli.data import build_data
    from progprune_cli.models import build_model
    from progprune_cli.pruning.strategies import build_strategy

    seen = set()
    for cfg in configs:
        if cfg.strategy is None:
            continue
        key = json.dumps([dataclasses.asdict(cfg.dataset), dataclasses.asdict(cfg.model),
                          dataclasses.asdict(cfg.strategy)], sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        info = build_data(cfg.dataset, cfg.seed).info
        build_strategy(cfg.strategy).check(build_model(cfg.model, info), info)


def _typed(job: list[str], here: bool) -> tuple[RunConfig, dict[str, Any]]:
    data = _compose(job)
    cfg = load_run_config(data)
    from progprune_cli.stages.checks import check_components  # torch: only once the config is sound

    check_components(cfg, here)
    return cfg, data


def _compose(job: list[str]) -> dict[str, Any]:
    try:
        return OmegaConf.to_container(compose(config_name="config", overrides=job), resolve=True)  # type: ignore
    except (HydraException, OmegaConfBaseException, ValueError, TypeError) as error:
        message = str(error)
        missing = re.search(r"Could not override '([^']+)'", message)
        if missing:
            raise UserError(_unknown_key(missing.group(1), job)) from None
        raise UserError(_first_line(error)) from None


def _unknown_key(key: str, job: list[str]) -> str:
    """`strategy.thresh: unknown key; allowed keys under strategy are ...` for a typo'd override."""
    parent, _, leaf = key.rpartition(".")
    rest = [o for o in job if not o.lstrip("+~").startswith(key + "=")]
    try:
        root = compose(config_name="config", overrides=rest)
        node = OmegaConf.select(root, parent) if parent else root
        keys = ", ".join(sorted(node.keys())) if node is not None else ""  # type: ignore[union-attr]
        top = sorted(str(k) for k in root.keys() if k != "hydra")
    except (HydraException, OmegaConfBaseException):
        node, keys, top = None, "", []
    where = f" under {parent}" if parent else ""
    group = key.split(".", 1)[0]
    if top and group not in top and group not in group_options():
        return f"{key}: unknown key {group}; allowed top-level keys are {', '.join(top)}"
    if parent and group in group_options() and group not in top:
        return (f"{key}: no {group} chosen; add +{group}=NAME first "
                f"(one of {', '.join(group_options()[group])})")
    if parent and node is None and top:
        # A misspelt key in the middle of the path (strategy.target.macs): name the first part that is not there.
        parts = key.split(".")
        known = next(i for i in range(len(parts) - 1, 0, -1) if OmegaConf.select(root, ".".join(parts[:i])) is not None)
        return _unknown_key(".".join(parts[: known + 1]), rest)
    if leaf in keys.split(", "):
        return (f"{key}: cannot add new entries to an existing mapping with a plain override; "
                f"use +{key}.NAME=VALUE for one entry or ++{key}=VALUE to replace it")
    return f"{key}: unknown key; allowed keys{where} are {keys}" if keys else f"{key}: unknown key"


def _check_groups(overrides: Iterable[str]) -> None:
    groups = group_options()
    for line in overrides:
        match = re.match(r"^([+~]*)(\w+)(@[\w.]+)?=(.*)$", line)
        if not match or match.group(2) not in groups:
            continue
        group, values = match.group(2), match.group(4)
        if group == "lr_scheduler" and not match.group(3):
            raise UserError(f"{line}: a learning-rate schedule is set per stage: lr_scheduler@train.lr_scheduler="
                            f"{values} (or @prune.lr_scheduler, @finetune.lr_scheduler); choose one of "
                            f"{', '.join(groups[group])}")
        if group == "strategy" and not match.group(1):
            continue  # normalize() already added the '+'; a plain '~strategy' is Hydra's business
        for value in values.split(","):
            if value and value not in groups[group]:
                raise UserError(f"{group}={value}: unknown {group}; choose one of {', '.join(groups[group])}")


def _first_line(error: BaseException) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
