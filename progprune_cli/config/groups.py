"""The config groups (folders of conf/) and their choices (the YAML files in each): what a user can choose."""

from __future__ import annotations

from importlib import resources

CONFIG_MODULE = "progprune_cli.conf"


def group_options() -> dict[str, list[str]]:
    """Each group's choices, sorted; conf/hydra/ holds presets for Hydra itself, not a progprune group."""
    root = resources.files(CONFIG_MODULE)
    return {d.name: sorted(f.name[:-5] for f in d.iterdir() if f.name.endswith(".yaml"))
            for d in sorted(root.iterdir(), key=lambda d: d.name)
            if d.is_dir() and not d.name.startswith("_") and d.name != "hydra"}
