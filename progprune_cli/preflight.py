"""Check a `progprune train` command line before Hydra makes a run folder: every sweep combination composed,
typed and validated, so bad input fails in one line with no training started."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
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
    ours = [o for o in overrides if not re.match(r"^[+~]*hydra[./]", o)]
    _check_groups(ours)
    try:
        parsed = OverridesParser.create().parse_overrides(ours)
    except HydraException as error:
        bad = re.search(r"override '([^']*)'", str(error))
        line = bad.group(1) if bad else _first_line(error)
        raise UserError(f"{line}: not an override; write KEY=VALUE, +KEY=VALUE or GROUP=NAME") from None
    if not multirun and any(o.is_sweep_override() for o in parsed):
        raise UserError(f"{next(o.input_line for o in parsed if o.is_sweep_override())}: a sweep needs -m "
                        "(progprune train -m ...)")
    jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch] if multirun else [ours]
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        configs = [_typed(job, here=not multirun) for job in jobs]
    run_dir = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("hydra.run.dir=")), None)
    if run_dir is not None and not multirun:
        # Before Hydra rewrites the folder's .hydra/: a finished run, or another config's, must stay untouched.
        if folder_check is None:
            from progprune_cli.results.status import check_folder as folder_check

        folder_check(Path(run_dir), configs[0][1])
    if not any(re.match(r"^[+~]*hydra/launcher=.*slurm", o) for o in overrides):
        # Before any folder exists: a missing or corrupt file fails here in one line, downloads happen once (not
        # once per parallel sweep job), and decoding fills the cache the jobs then read. Slurm jobs may see other
        # disks than this machine, so there each job prepares its own data.
        from progprune_cli.data import prepare_data

        unique = {json.dumps([c.dataset.name, c.dataset.options], sort_keys=True, default=str): c.dataset
                  for c, _ in configs}
        for dataset in unique.values():
            prepare_data(dataset)
    return [cfg for cfg, _ in configs]


def _typed(job: list[str], here: bool) -> tuple[RunConfig, dict[str, Any]]:
    data = _compose(job)
    cfg = load_run_config(data)
    from progprune_cli.stages.checks import check_components  # torch: only once the config is sound

    check_components(cfg, here)
    return cfg, data


def _compose(job: list[str]) -> dict[str, Any]:
    try:
        return OmegaConf.to_container(compose(config_name="config", overrides=job), resolve=True)  # type: ignore
    except (HydraException, OmegaConfBaseException) as error:
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
    if parent and group in group_options() and node is None:
        return (f"{key}: no {group} chosen; add +{group}=NAME first "
                f"(one of {', '.join(group_options()[group])})")
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
