"""glibc malloc kept from handing a batch's freed memory back to the OS, so the next batch reuses it unfaulted."""

from __future__ import annotations

import ctypes
import os
import platform

# torch allocates CPU tensors with malloc. glibc maps a large block (an activation of a conv net's batch: MBs) with
# mmap and unmaps it on free, or trims the heap's top, so every batch faults its pages in again. With the thresholds
# fixed, freed blocks stay in the heap: bench/allocator.py measured a conv net's accuracy passes 1.5x faster (no
# page faults instead of 120,000 a pass), training 1.0x. The price: up to TRIM_THRESHOLD freed bytes stay with the
# process. Blocks over 32 MiB (mallopt's largest threshold) are still mapped anew each time.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
MMAP_THRESHOLD = 32 * 1024 * 1024  # mallopt's largest: blocks above it are mapped and unmapped as before
TRIM_THRESHOLD = 512 * 1024 * 1024
# Set by the user (or a wrapper script) for glibc; left as they are.
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES", "LD_PRELOAD")


def keep_freed_memory(environ: dict[str, str] | None = None) -> str:
    """Fix glibc's mmap and trim thresholds for this process (once is enough; again is harmless); what was done,
    for run.log. Nothing is changed off glibc, or where the environment sets malloc itself (a preloaded jemalloc or
    tcmalloc, glibc's own variables)."""
    environ = dict(os.environ) if environ is None else environ
    given = [name for name in USER_SETTINGS if environ.get(name)]
    if given:
        return f"allocator: left as set by the environment ({', '.join(given)})"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return f"allocator: the system's own ({platform.system()}, not glibc)"
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None or not (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD,
                                                                                        TRIM_THRESHOLD)):
        return "allocator: glibc refused mallopt; its defaults stay"
    return (f"allocator: glibc malloc keeps freed blocks under {MMAP_THRESHOLD >> 20} MiB and up to "
            f"{TRIM_THRESHOLD >> 20} MiB of free heap for reuse (bench/allocator.py)")
