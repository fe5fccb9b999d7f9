"""allocator.keep_freed_memory: glibc keeps a freed batch's memory, so allocating it again faults no pages in."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from progprune_cli.allocator import keep_freed_memory

# Page faults of one pass of a small conv net over 512 inputs in batches of 128, after a first pass: each batch's
# activations take ~29 MB (7,000 pages) and are freed before the next batch makes its own.
FAULTS = """
import resource, sys, torch
from torch import nn
from progprune_cli.allocator import keep_freed_memory
if sys.argv[1] == "kept":
    keep_freed_memory({})
torch.set_num_threads(1)
model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                      nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 14 * 14, 10))
x = torch.zeros(512, 1, 28, 28)
with torch.inference_mode():
    for i in range(0, 512, 128):
        model(x[i:i + 128])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for i in range(0, 512, 128):
        model(x[i:i + 128])
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin"})  # no MALLOC_* or LD_PRELOAD from the suite's environment
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@glibc
def test_a_freed_tensors_pages_are_reused_not_faulted_in_again() -> None:
    assert _faults("kept") < 700  # under a tenth of one batch's pages
    # glibc's defaults unmap (or trim) freed blocks: the batches' pages fault in again, over and over (what it costs:
    # bench/allocator.py). Were it not so here, the test above would show nothing.
    assert _faults("default") > 3_000  # 6,249 to 15,602 in five tries here


@glibc
def test_it_says_what_it_set() -> None:
    assert keep_freed_memory({}) == ("allocator: glibc malloc keeps freed blocks under 32 MiB and up to 512 MiB of "
                                     "free heap for reuse (bench/allocator.py)")


@pytest.mark.parametrize("name", ["LD_PRELOAD", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"])
def test_a_malloc_chosen_by_the_environment_is_left_alone(name: str) -> None:
    assert keep_freed_memory({name: "x", "HOME": "/root"}) == f"allocator: left as set by the environment ({name})"
