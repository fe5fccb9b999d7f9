"""Folder checks and torchvision downloads that fail in seconds, with one-line messages, when offline."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from progprune_cli.errors import UserError

# Per socket operation (connect, each read): an unreachable mirror then costs seconds, not the OS's minutes.
TIMEOUT_S = 5.0


def root_path(root: str) -> Path:
    """`root` as an absolute path (relative to the folder progprune starts in), so messages show where we looked."""
    return Path(root).expanduser().absolute()


def existing_dir(root: str, hint: str) -> Path:
    """`root` as an absolute folder path, or a one-line UserError."""
    path = root_path(root)
    if not path.is_dir():
        raise UserError(f"dataset.root: {path} {'is not a folder' if path.exists() else 'does not exist'}; {hint}")
    return path


def one_line(error: BaseException, limit: int = 300) -> str:
    """An exception as one short line: its type, and its message with all whitespace runs made single spaces."""
    text = re.sub(r"\s+", " ", str(error)).strip()
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


@contextmanager
def network_timeout(seconds: float | None = None) -> Iterator[None]:
    """torchvision's urllib calls use the default socket timeout; set a short one just around a download."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(TIMEOUT_S if seconds is None else seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def download(fetch: Callable[[], object], done: Callable[[], bool], what: str, folder: Path, by_hand: str) -> None:
    """Run torchvision's download (`fetch`) with a short timeout; when the files are still not all there after it
    (`done`), fail with one line naming the folder and how to get the files by hand."""
    try:
        with network_timeout():
            fetch()
    except Exception as error:  # urllib, md5 and extraction errors all mean "not downloaded"
        if not done():
            raise UserError(f"dataset.download: could not download {what} into {folder} ({one_line(error)}); "
                            f"{by_hand}") from None
    if not done():
        raise UserError(f"dataset.download: downloading {what} left {folder} incomplete; {by_hand}")

