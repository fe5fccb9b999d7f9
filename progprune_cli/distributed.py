"""torchrun's process group as a small World (rank, size, device) and the few collectives a run needs.

Under `torchrun --nproc_per_node=N -m progprune_cli train ...` (or `... resume RUN_DIR`; several nodes with
--nnodes) every stage's `batch_size` is the GLOBAL batch: each optimizer step reads one batch of the same seeded
order on every rank, each of the W ranks in all trains on its every W-th sample of it (data.Batches(shard=...))
and DistributedDataParallel averages the gradients, so W ranks take the steps one process would (BatchNorm
layers, as under DDP, normalize by each rank's share; the Loop gives every rank rank 0's running statistics).
Only rank 0 writes the run folder, run.log and the console, and holds the folder's lock; the other ranks read its
checkpoints there when a run resumes, so resuming across nodes needs the run folder on a filesystem every node
sees. The dense cache (train.reuse) is off and sweeps (-m) are refused under torchrun.
"""

from __future__ import annotations

import inspect
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from progprune_cli.device import resolve_device
from progprune_cli.errors import UserError

_OPS = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
# DDP without its buffer broadcast before each forward (the Loop broadcasts buffers after each step instead); torch
# 2.13 renamed the option, whose old form also left the buffers out of DDP's sync at construction.
_NO_FORWARD_BUFFER_SYNC = ({"forward_sync_buffers": False}
                           if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                           else {"broadcast_buffers": False})


@dataclass(frozen=True)
class World:
    """This process's place among the ranks; World() is a single process, where every collective is a no-op."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device | None = None  # None: the config's device (a single process resolves it itself)
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def shard(self) -> tuple[int, int] | None:
        """(rank, world_size) for data.Batches, or None when there is nothing to split."""
        return (self.rank, self.world_size) if self.distributed else None

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """`tensor` reduced over every rank, in place (it must be on this rank's device for nccl)."""
        if self.distributed:
            dist.all_reduce(tensor, op=_OPS[op])
        return tensor

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's `tensor`, in place on every rank."""
        if self.distributed:
            dist.broadcast(tensor, src=0)
        return tensor

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's `value` (any picklable object) on every rank."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @torch.no_grad()
    def broadcast_tensors(self, tensors: list[torch.Tensor]) -> None:
        """Rank 0's values of `tensors`, in place on every rank: one broadcast per dtype, of the tensors laid end
        to end (so any memory format goes, where a collective needs contiguous tensors)."""
        groups: dict[torch.dtype, list[torch.Tensor]] = {}
        for tensor in tensors:
            groups.setdefault(tensor.dtype, []).append(tensor)
        for group in groups.values():
            flat = self.broadcast(torch.cat([t.reshape(-1) for t in group]))
            for tensor, value in zip(group, flat.split([t.numel() for t in group])):
                tensor.copy_(value.view(tensor.shape))

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def same(self, value: Any, what: str) -> None:
        """Raise (on every rank alike) unless every rank holds the same `value`; `what` names it."""
        values = self.gather(value)
        for rank, other in enumerate(values):
            if other != values[0]:
                raise UserError(f"torchrun: {what} is {other!r} on rank {rank} but {values[0]!r} on rank 0; every "
                                "rank must read the same run folder (across nodes: a shared filesystem)")


def from_env(environ: Mapping[str, str] = os.environ) -> World | None:
    """The World torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE), or None
    when this process was not started by torchrun."""
    if "RANK" not in environ or "WORLD_SIZE" not in environ:
        return None
    return World(rank=int(environ["RANK"]), world_size=int(environ["WORLD_SIZE"]),
                 local_rank=int(environ.get("LOCAL_RANK", "0")),
                 local_world_size=int(environ.get("LOCAL_WORLD_SIZE", "1")))


def start(device: str) -> World:
    """Join torchrun's process group (nccl with each rank on cuda:LOCAL_RANK, or gloo on the CPU) and return this
    rank's World, which the caller hands on to everything that shards or reduces; a plain process (or torchrun with
    one process) gets World() and no process group."""
    env = from_env()
    if env is None or not env.distributed:
        return World(local_world_size=1 if env is None else env.local_world_size)
    resolved = resolve_device(device, env.local_rank)
    backend = "nccl" if resolved.type == "cuda" else "gloo"
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)  # before the group: nccl binds each rank to the current device
    if not dist.is_initialized():
        dist.init_process_group(backend)  # env://: torchrun's MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE
    return replace(env, device=resolved, backend=backend)


def finish() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    """CRC-32 of the names, shapes and bytes (in logical order, whatever the memory format) of `tensors`."""
    crc = 0
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous().reshape(-1)
        crc = zlib.crc32(f"{name}:{tuple(tensors[name].shape)}:{tensor.dtype}".encode(), crc)
        crc = zlib.crc32(tensor.view(torch.uint8).numpy().tobytes(), crc)
    return f"{crc:08x}"


def by_rank(checksums: list[str]) -> str:
    """`rank 0 X, rank 1 Y, ...`: how run.log lists the ranks' checksums."""
    return ", ".join(f"rank {rank} {value}" for rank, value in enumerate(checksums))


def agree_on_masks(world: World, masks: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rank 0's (boolean) masks on every rank, and each rank's checksum of its own. Why broadcast rather than only
    verify: rank 0's masks are the ones its checkpoints save, and a nondeterministic kernel in a strategy's scores
    (cuDNN's backward for taylor) could tip a near-tie on another rank, so verifying alone could stop a sound run,
    while an unequal mask would silently train another network."""
    sums = world.gather(checksum(masks))
    keys = sorted(masks)
    shared = [masks[key].to(torch.uint8) for key in keys]  # uint8: every backend broadcasts it
    world.broadcast_tensors(shared)
    return {key: mask.bool() for key, mask in zip(keys, shared)}, sums


def agree_on_weights(world: World, model: nn.Module) -> list[str]:
    """Each rank's checksum of `model`'s weights and buffers; if they differ, rank 0's are then used on every
    rank (DDP gives every rank the same averaged gradients, so they should be bitwise equal)."""
    sums = world.gather(checksum(model.state_dict()))
    if len(set(sums)) > 1:
        world.broadcast_tensors([*model.parameters(), *model.buffers()])
    return sums


def sum_over_ranks(world: World, values: Sequence[torch.Tensor | float], device: torch.device) -> torch.Tensor:
    """`values` (numbers or 0-d tensors) summed over every rank, as float64 (which holds counts exactly)."""
    return world.all_reduce(torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device) for v in values]))


def max_over_ranks(world: World, flags: Sequence[int], device: torch.device) -> list[int]:
    """The largest of every rank's value of each flag: one all-reduce for all of them."""
    return [int(v) for v in world.all_reduce(torch.tensor(list(flags), device=device), "max").tolist()]


def wrap_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """`module` in DistributedDataParallel, which broadcasts rank 0's weights and buffers here and all-reduces
    (averages) gradients in backward; it does not broadcast buffers before each forward (the caller does, after
    each step, so that what runs between steps sees the same model on every rank)."""
    return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None,
                                   **_NO_FORWARD_BUFFER_SYNC)


def check_shards(world: World, samples: int, batch_size: int, key: str) -> None:
    """Under torchrun every rank needs a sample of every batch, or DDP would wait for its gradients forever."""
    if not world.distributed:
        return
    last, ranks = samples % batch_size or batch_size, world.world_size
    if min(batch_size, last) < ranks:
        raise UserError(f"{key}.batch_size: got {batch_size} for {samples} training samples; under torchrun it is the "
                        f"global batch and each of the {ranks} ranks needs a sample of every batch, the last one "
                        f"({last} sample{'s' if last != 1 else ''}) too; choose a batch size (and of the last "
                        f"batch) of at least {ranks}")


def loss_share(world: World, local: int, batch: int) -> float:
    """The factor that makes DDP's average of the ranks' mean losses the mean over the whole global batch of
    `batch` samples, `local` of them on this rank (1 for one process, and whenever the batch splits evenly)."""
    return 1.0 if not world.distributed else local * world.world_size / batch
