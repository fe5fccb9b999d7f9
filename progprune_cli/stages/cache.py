"""The dense-model cache: checkpoints keyed by exactly the settings they depend on, shared by runs and parallel
sweep jobs; an entry that does not load or does not fit the model is a miss, trained again and replaced."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn

from progprune_cli.atomic import copy_atomically, refuse_links, write_atomic
from progprune_cli.checkpoints import NotACheckpoint, load_checkpoint
from progprune_cli.filelock import FileLock
from progprune_cli.hashing import short_hash
from progprune_cli.stages.base import RunContext
from progprune_cli.stages.io import checked_rows


def cache_key(settings: dict[str, Any]) -> str:
    """A stable hash of the settings (sorted JSON), short enough for a folder name."""
    return short_hash(settings)


@contextmanager
def cached(cache_dir: Path, key: str) -> Iterator[Path]:
    """Hold the key's lock while the caller checks for, or produces, `<cache_dir>/<key>/checkpoint.pt`.

    The lock makes parallel jobs of one sweep wait for the first to train instead of all training.
    """
    folder = cache_dir / key
    folder.mkdir(parents=True, exist_ok=True)
    refuse_links(folder)  # every write below would follow a planted link
    with FileLock(folder / "lock"):
        yield folder / "checkpoint.pt"


def store(source: Path, target: Path, settings: dict[str, Any] | None) -> None:
    """Copy a finished checkpoint into the cache atomically, with the settings it was made from."""
    if settings is not None:
        write_atomic(target.with_name("settings.json"), json.dumps(settings, indent=1, sort_keys=True, default=str))
    copy_atomically(source, target)


def reuse_or_train(run: RunContext, stage: str, output: str, settings: dict[str, Any],
                   train: Callable[[], nn.Module], companions: tuple[str, ...] = ()) -> tuple[nn.Module, str | None]:
    """The model `train()` makes (its final checkpoint `output` saved in the run), or the one the cache holds for
    `settings`, copied in with its rows and `companions` (other checkpoints made with it, e.g. rewind); returns it
    and the cache folder it came from (None when trained here, after which it is stored for the next run)."""
    io = run.io
    if run.cache_dir is None or not run.parts.cfg.train.reuse:
        return train(), None
    with cached(run.cache_dir, cache_key(settings)) as entry:
        hit = _usable(run, stage, entry, companions) if entry.exists() else None
        if hit is not None:
            model, rows = hit
            for name in companions:
                if entry.with_name(f"{name}.pt").exists():
                    copy_atomically(entry.with_name(f"{name}.pt"), io.checkpoint(name))
            copy_atomically(entry, io.checkpoint(output))  # last: the run's stage is done once this exists
            io.write_rows(stage, rows)
            return model, str(entry.parent)
        model = train()
        for name in companions:  # before the checkpoint: an entry is complete once that exists
            if io.checkpoint(name).exists():
                store(io.checkpoint(name), entry.with_name(f"{name}.pt"), None)
        store(io.checkpoint(output), entry, settings)
        return model, None


def _usable(run: RunContext, stage: str, entry: Path,
            companions: tuple[str, ...]) -> tuple[nn.Module, list[dict[str, Any]]] | None:
    """The cached model and its metric rows, or None (said in one line of run.log) when the entry does not load or
    does not hold what this run's model and metrics need. A file that would run code is refused, not missed."""
    try:
        for name in companions:
            if entry.with_name(f"{name}.pt").exists():
                run.model_from(load_checkpoint(entry.with_name(f"{name}.pt")))
        state = load_checkpoint(entry)
        model = run.model_from(state)
        rows = checked_rows(state.get("rows"))
    except NotACheckpoint as error:
        why = error.reason
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as error:
        why = f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"
    else:
        run.io.log(f"{stage}: reused the dense model from {entry.parent} (same data, model, optimizer, train "
                   "settings and seed)")
        return model, rows
    run.io.log(f"{stage}: the cached dense model in {entry.parent} is unusable ({why}); training it again and "
               "replacing it")
    return None
