"""Where a process computes: its torch device, and the torch threads it may use on the cores it was granted."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from progprune_cli.errors import UserError


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """auto → cuda when available, else cpu; cuda without CUDA is a user error, not a crash later. Under torchrun
    (`local_rank` given) a CUDA rank gets its own GPU, cuda:LOCAL_RANK."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device: got cuda but CUDA is not available on this machine; use device=cpu or device=auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name != "cuda" or local_rank is None:
        return torch.device(name)
    if local_rank >= torch.cuda.device_count():
        raise UserError(f"device: torchrun started local rank {local_rank} but this node has "
                        f"{torch.cuda.device_count()} CUDA device(s); use --nproc_per_node <= the GPU count")
    return torch.device("cuda", local_rank)


def available_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (what Slurm and
    containers grant), not the machine's count."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(cores, 1)


# torch's thread count when progprune started, before it set any: a launcher that limits its workers (joblib's
# loky sets OMP_NUM_THREADS, torchrun sets it to 1 unless told otherwise) has already lowered it, and that holds.
_STARTUP_THREADS = torch.get_num_threads()


def resolve_threads(threads: int | None, local_world_size: int = 1) -> int:
    """`train.threads`, or when it is null the cores this process may use (capped by any thread limit its
    launcher set), shared evenly by the `local_world_size` ranks torchrun started on this node (so they do not
    fight over the same cores)."""
    if threads is not None:
        return threads
    return max(min(available_cores(), _STARTUP_THREADS) // max(local_world_size, 1), 1)
