"""Atomic file replacement: a reader sees the old file or the whole new one, never half of it."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Callable


def replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` to a temporary file beside `path`, then rename it over `path`.

    The temporary name is unique per call, so writers in parallel processes (sweep jobs) never share one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace `path` with `data`, flushed to disk before the rename (a crash leaves old or new, not empty)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())

    replace_atomically(path, write)


def copy_atomically(source: Path, target: Path) -> None:
    """Replace `target` with a copy of `source`, flushed before the rename (a full disk leaves the old target)."""

    def write(tmp: Path) -> None:
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())

    replace_atomically(target, write)
