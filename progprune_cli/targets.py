"""A user's code named by a dotted path (`_target_: pkg.module.name`): imported from PYTHONPATH or the folder
progprune is started in, every failure one line naming the key."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Callable

from progprune_cli.errors import UserError, described

_WHERE = "put the module in the folder progprune is started in or on PYTHONPATH"


def import_target(dotted: str, key: str) -> Any:
    """The object `dotted` names (`pkg.module.name`: `name` from the module `pkg.module`); `key` is the config key
    that gave it (e.g. dataset._target_), named in every error."""
    module_name, _, attr = str(dotted).rpartition(".")
    if not module_name or not attr or not all(part.isidentifier() for part in str(dotted).split(".")):
        raise UserError(f"{key}: got {dotted!r}; expected a dotted path MODULE.NAME (e.g. mynet.Net, mydata.make)")
    _start_folder_importable()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if f"{module_name}.".startswith(f"{error.name}."):  # the module (or a package above it) is missing
            raise UserError(f"{key}: no module named {error.name!r} (for {dotted}); {_WHERE}") from None
        raise UserError(f"{key}: importing {module_name} failed ({described(error)})") from None
    except Exception as error:  # the user's module raised while importing: its error, in one line
        raise UserError(f"{key}: importing {module_name} failed ({described(error)})") from None
    if not hasattr(module, attr):
        where = getattr(module, "__file__", None) or "a namespace package"
        raise UserError(f"{key}: module {module_name} ({where}) has no {attr!r}")
    return getattr(module, attr)


def import_callable(dotted: str, key: str) -> Callable[..., Any]:
    """`import_target`, refused in one line unless it can be called (a function or a class)."""
    target = import_target(dotted, key)
    if not callable(target):
        raise UserError(f"{key}: {dotted} is not a function or class (found {type(target).__name__} {target!r:.40})")
    return target


def _start_folder_importable() -> None:
    """The console script's sys.path[0] is its own bin/ folder, not the folder it was started in (as `python -m`
    would have it): put that folder first, as Python does for `python -m`, so `mydata.py` beside the command is
    found. The runs never chdir (hydra.job.chdir is false), so the working folder is the start folder."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
