"""A cache of dense checkpoints keyed by exactly the settings they depend on, safe for parallel sweep jobs."""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from progprune_cli.atomic import copy_atomically, write_atomic


def cache_key(settings: dict[str, Any]) -> str:
    """A stable hash of the settings (sorted JSON), short enough for a folder name."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


@contextmanager
def cached(cache_dir: Path, key: str) -> Iterator[Path]:
    """Hold the key's lock while the caller checks for, or produces, `<cache_dir>/<key>/checkpoint.pt`.

    The lock makes parallel jobs of one sweep wait for the first to train instead of all training.
    """
    folder = cache_dir / key
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield folder / "checkpoint.pt"
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def store(source: Path, target: Path, settings: dict[str, Any] | None) -> None:
    """Copy a finished checkpoint into the cache atomically, with the settings it was made from."""
    if settings is not None:
        write_atomic(target.with_name("settings.json"), json.dumps(settings, indent=1, sort_keys=True, default=str))
    copy_atomically(source, target)
