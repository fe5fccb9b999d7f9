"""The OmegaConf resolvers conf/ uses: `progprune_uid` in run-folder names, `progprune_groups` in
`progprune train --help` (the choices of each group: its YAMLs, not the schemas stored beside them), and the search
preset's (conf/hydra/sweeper/progprune_optuna.yaml) `progprune_directions` and `progprune_study_storage`."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from progprune_cli.config.groups import group_options
from progprune_cli.config.search import parse_objectives

# Unique per process: two runs started in the same second still get two folders. Under torchrun only rank 0's
# folder name counts (the others get a scratch folder, then rank 0's path by broadcast; see app.train): the
# ranks' clocks may tick to another second between them, so a shared uid alone would not make ${now:...} agree.
UID = f"{os.getpid()}{secrets.token_hex(1)}"
# use_cache: a launcher that rebuilds the config in a worker process must get the same sweep folder name.
OmegaConf.register_new_resolver("progprune_uid", lambda: UID, replace=True, use_cache=True)
OmegaConf.register_new_resolver(
    "progprune_groups", lambda: "\n".join(f"{group}: {', '.join(names)}" for group, names in group_options().items()),
    replace=True)


def study_storage(sweep_dir: str) -> str:
    """The Optuna study's SQLite file in the sweep folder, which is made here: the sweeper opens the study before
    Hydra makes the folder for its first trial (and sqlite makes no folders)."""
    folder = Path(sweep_dir).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'optuna.db'}"


def directions(objectives: Any) -> list[str]:
    """search.objectives as the sweeper's `direction` list, so the two cannot disagree unless one is overridden."""
    return [objective.direction for objective in parse_objectives(list(objectives))]


OmegaConf.register_new_resolver("progprune_study_storage", study_storage, replace=True)
OmegaConf.register_new_resolver("progprune_directions", directions, replace=True)
