"""allocator.keep_freed_memory: glibc keeps a freed batch's memory in its heap instead of unmapping it."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from progprune_cli.allocator import keep_freed_memory

# One 24 MiB block (a conv net's batch of activations is of that order) malloc'd and freed in a fresh process;
# glibc's mallinfo2 says where it came from and what stayed. Page faults would be the cost itself, but how many a
# pass takes also depends on the kernel and the heap's history (a CI run saw one batch fault in again with the
# setting), so the test asserts the cause instead: bench/allocator.py measures the faults and the seconds.
HEAP = """
import ctypes, json, sys
from progprune_cli.allocator import keep_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype, libc.malloc.restype, libc.free.argtypes = Info, ctypes.c_void_p, [ctypes.c_void_p]
if sys.argv[1] == "kept":
    keep_freed_memory({})
size = 24 << 20
before = libc.mallinfo2()
block = libc.malloc(size)
ctypes.memset(block, 1, size)
held = libc.mallinfo2()
libc.free(block)
freed = libc.mallinfo2()
print(json.dumps({"mapped": held.hblkhd - before.hblkhd >= size, "kept_free": freed.fordblks >= size}))
"""

ON_GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
glibc = pytest.mark.skipif(not ON_GLIBC, reason="glibc only")
mallinfo2 = pytest.mark.skipif(not ON_GLIBC or tuple(map(int, platform.libc_ver()[1].split(".")[:2])) < (2, 33),
                               reason="glibc >= 2.33 (mallinfo2) only")


def _heap(mode: str) -> dict[str, bool]:
    done = subprocess.run([sys.executable, "-c", HEAP, mode], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})  # no MALLOC_* or LD_PRELOAD from the suite's environment
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@mallinfo2
def test_a_freed_batch_stays_in_the_heap_for_the_next_one() -> None:
    assert _heap("kept") == {"mapped": False, "kept_free": True}
    # glibc's defaults in a fresh process: the block is mapped on its own and unmapped on free, so the next batch's
    # pages fault in again. Were it not so, the assertion above would show nothing.
    assert _heap("default") == {"mapped": True, "kept_free": False}


@glibc
def test_it_says_what_it_set() -> None:
    assert keep_freed_memory({}) == ("allocator: glibc malloc keeps freed blocks under 32 MiB and up to 512 MiB of "
                                     "free heap for reuse (bench/allocator.py)")


@pytest.mark.parametrize("name", ["LD_PRELOAD", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"])
def test_a_malloc_chosen_by_the_environment_is_left_alone(name: str) -> None:
    assert keep_freed_memory({name: "x", "HOME": "/root"}) == f"allocator: left as set by the environment ({name})"
