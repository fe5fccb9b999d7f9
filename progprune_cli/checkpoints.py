"""Checkpoint files, written and read one way: torch.save written atomically, read weights_only without a link."""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import stat
import warnings
import zipfile
from pathlib import Path
from typing import IO, Any

import torch

from progprune_cli.atomic import open_nofollow, write_atomic
from progprune_cli.errors import UserError, first_line


class CodeRefused(UserError):
    """A checkpoint holds pickled objects that would run code when read: refused, never run."""


class NotACheckpoint(UserError):
    """A file that is no torch checkpoint of plain values (truncated, corrupt, random bytes, not a file)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: not a readable torch checkpoint ({reason})")
        self.reason = reason


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write `state` to `path` atomically (temp file, fsync, rename): a previous file stays until then."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getvalue())
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint or cache entry, read with `weights_only=True`: tensors and plain values only, never code; the
    file is opened without following a symbolic link, and must be a regular file."""
    fd = open_nofollow(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: a FIFO planted here must not hang the run
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotACheckpoint(path, "not a regular file")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's notes on a foreign file's pickle protocol: not for the user
                return torch.load(handle, map_location="cpu", weights_only=True)
        except Exception as error:
            handle.seek(0)
            if isinstance(error, pickle.UnpicklingError) and names_a_callable(handle):
                raise CodeRefused(f"{path}: refused to load: it holds pickled objects that would run code when "
                                  "read, not plain tensors; delete it (or the run folder) if you did not put it "
                                  "there") from None
            handle.seek(0)
            if handle.read(4) == _ZIP_MAGIC:  # a damaged torch archive (truncated, say): torch's reason names it
                raise NotACheckpoint(path, f"{type(error).__name__}: {first_line(error)}") from None
            # Anything else: the unpickler trips on whichever byte comes first (UnpicklingError, UnicodeDecodeError,
            # EOFError, ... for random bytes), so one reason for all of them.
            raise NotACheckpoint(path, "neither a torch archive nor a pickle of plain values") from None


_ZIP_MAGIC = b"PK\x03\x04"  # how every torch.save archive (a zip file) starts


# Opcodes that import a name or call one: a pickle of plain values (dicts, lists, numbers, strings) has none.
_CALLS = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "REDUCE"}


def names_a_callable(handle: IO[bytes]) -> bool:
    """Whether a file weights_only refused is a well-formed pickle that names something to import (a GLOBAL): code
    that would run when read, as opposed to random or truncated bytes. Read from the pickle's opcodes, not from
    torch's error text, whose wording changes between releases (and differs for a module it blocks outright)."""
    try:
        if zipfile.is_zipfile(handle):
            with zipfile.ZipFile(handle) as archive:
                member = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                streams = io.BytesIO(archive.read(member))
        else:
            handle.seek(0)
            streams = io.BytesIO(handle.read())
        # A legacy torch file is several pickles one after another (magic number, version, ..., the object), then
        # raw storage bytes. Only a pickle read whole to its STOP counts: random bytes can start like an opcode.
        while True:
            names = {op.name for op, _, _ in pickletools.genops(streams)}
            if _CALLS & names:
                return True
    except (ValueError, KeyError, StopIteration, zipfile.BadZipFile, EOFError, IndexError):
        return False  # no further whole pickle: unreadable bytes, not code
