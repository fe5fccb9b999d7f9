"""Writing run and cache folders: atomic replacement, appends that never follow a link, and the link check."""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

from progprune_cli.errors import UserError

# O_NOFOLLOW: a final path component that is a symbolic link fails with ELOOP instead of being written through.
# Windows has no such flag (and no symlinks an unprivileged user can plant), so it is 0 there.
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# A run folder holds a few hundred entries (checkpoints, encoded sizes, plots, ONNX graphs); the walk of a folder
# that holds far more is cut short rather than taking minutes.
_MAX_ENTRIES = 20_000


class LinkRefused(UserError):
    """A run or cache folder holds a symbolic link where progprune would write or read."""


def refused_link(path: Path) -> LinkRefused:
    return LinkRefused(f"{path} is a symbolic link; progprune never follows links in a run or cache folder "
                       "(one could point anywhere); remove it")


def open_nofollow(path: Path, flags: int, mode: int = 0o644) -> int:
    """`os.open` that refuses a symbolic link as the final component (a one-line LinkRefused)."""
    try:
        return os.open(path, flags | NOFOLLOW, mode)
    except OSError as error:
        if error.errno == errno.ELOOP or (error.errno == errno.EMLINK and Path(path).is_symlink()):
            raise refused_link(Path(path)) from None
        raise


def append_text(path: Path, text: str) -> None:
    """Append `text` to `path` (created if missing), never through a symbolic link."""
    fd = open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(text)


def refuse_links(folder: Path) -> None:
    """Raise LinkRefused when `folder` or anything below it is a symbolic link (the folder's own path may pass
    through links: a `runs/` on another disk is the user's choice)."""
    if folder.is_symlink():
        raise refused_link(folder)
    if not folder.is_dir():
        return
    pending, seen = [folder], 0
    while pending and seen < _MAX_ENTRIES:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                seen += 1
                if entry.is_symlink():
                    raise refused_link(Path(entry.path))
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))


def replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` to a temporary file beside `path`, then rename it over `path`.

    The temporary name is unique per call, so writers in parallel processes (sweep jobs) never share one. The
    rename replaces a symbolic link at `path` itself rather than writing where it points.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _fresh(tmp: Path) -> int:
    """A new temporary file: O_EXCL, so nothing planted under its name is written through."""
    return open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace `path` with `data`, flushed to disk before the rename (a crash leaves old or new, not empty)."""

    def write(tmp: Path) -> None:
        with os.fdopen(_fresh(tmp), "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())

    replace_atomically(path, write)


def copy_atomically(source: Path, target: Path) -> None:
    """Replace `target` with a copy of `source`, flushed before the rename (a full disk leaves the old target)."""

    def write(tmp: Path) -> None:
        with os.fdopen(open_nofollow(source, os.O_RDONLY), "rb") as src, os.fdopen(_fresh(tmp), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())

    replace_atomically(target, write)


def nearest_existing(path: Path) -> Path:
    """`path` itself if it exists, else the nearest folder above it that does: where creating it would begin, and
    so the folder whose write permission decides whether it can be made."""
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing
