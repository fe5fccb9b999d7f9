"""The one file lock (run folders, dense-cache entries, sweep summaries): exclusive, released by the kernel when
the process dies, re-entrant within one process, and never taken through a symbolic link."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import ClassVar

from progprune_cli.atomic import open_nofollow

try:  # POSIX
    import fcntl

    def _lock(fd: int, blocking: bool) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # Windows: a lock on the file's first byte
    import msvcrt
    import time

    def _lock(fd: int, blocking: bool) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
                return
            except OSError:
                if not blocking:
                    raise BlockingIOError from None
                time.sleep(0.1)  # msvcrt has no blocking lock without a 10-try limit

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]


class Busy(Exception):
    """Another process holds the lock; the message is what the holder wrote into the lock file."""


class FileLock:
    """An exclusive lock on `path` (created if missing). Re-entrant within a process: `progprune train` locks a
    run folder before Hydra writes into it and the runner locks it again below, and both must pass (the kernel's
    locks belong to an open file, so a second open in one process would otherwise refuse the first)."""

    # (device, inode) of each file this process holds → [descriptor, depth]. Process-wide because the kernel's
    # lock is: two FileLock objects on one file in one process are one lock.
    _held: ClassVar[dict[tuple[int, int], list[int]]] = {}

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._key: tuple[int, int] | None = None

    def acquire(self, blocking: bool = True) -> None:
        """Take the lock (waiting for it when `blocking`, else raising Busy with the holder's note)."""
        fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT)
        info = os.fstat(fd)
        key = (info.st_dev, info.st_ino)
        if key in FileLock._held:
            os.close(fd)
            FileLock._held[key][1] += 1
            self._key = key
            return
        try:
            _lock(fd, blocking)
        except BlockingIOError:
            note = _read(fd)
            os.close(fd)
            raise Busy(note or "another process") from None
        except BaseException:
            os.close(fd)
            raise
        FileLock._held[key] = [fd, 1]
        self._key = key

    def release(self) -> None:
        if self._key is None:
            return
        entry = FileLock._held[self._key]
        entry[1] -= 1
        if entry[1] == 0:
            del FileLock._held[self._key]
            _unlock(entry[0])
            os.close(entry[0])
        self._key = None

    def note(self, text: str) -> None:
        """Write who holds the lock into the lock file (what Busy tells the next process)."""
        assert self._key is not None, "note() needs the lock held"
        fd = FileLock._held[self._key][0]
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, text.encode())

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()

    @staticmethod
    def holder(path: Path) -> str | None:
        """Who holds the lock on `path` right now: None when nobody does, or when this process does."""
        if not path.exists() and not path.is_symlink():
            return None
        probe = FileLock(path)
        try:
            probe.acquire(blocking=False)
        except Busy as busy:
            return str(busy)
        probe.release()
        return None


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096).decode(errors="replace").strip()
