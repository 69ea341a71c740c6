"""The processes of one training run: one, or several under torchrun with torch.distributed (DDP).

torchrun (`python -m torch.distributed.run`, also what a Trainer TrainJob's torch runtime runs)
sets RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT for every process it starts; a plain
`python -m components.stages.train.entrypoint` sees none of them and is a world of one, which runs
exactly the single-process code (no process group, no DDP wrapper).

Backends: gloo on CPU, nccl on CUDA. NCCL has no sparse all-reduce, so on nccl the embedding
tables train with dense gradients (`World.sparse_gradients`); gloo all-reduces sparse ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from components.common.errors import ConfigError

# What torchrun sets in each process's environment (read, never set, by this module).
ENV_RANK, ENV_WORLD_SIZE, ENV_LOCAL_RANK = "RANK", "WORLD_SIZE", "LOCAL_RANK"


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # gloo | nccl; None: one process, no process group

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints metric lines and writes checkpoints and models."""
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int] | None:
        """Which share of the training split this process reads (None: all of it)."""
        return (self.rank, self.world_size) if self.distributed else None

    @property
    def sparse_gradients(self) -> bool:
        return self.backend != "nccl"

    def device(self) -> torch.device:
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank if self.distributed else 0)
        return torch.device("cpu")

    def describe(self) -> dict[str, Any]:
        """Recorded in the run record and its run key: results depend on these."""
        return {"world_size": self.world_size, "backend": self.backend or "none",
                "device_count": torch.cuda.device_count() if torch.cuda.is_available() else 0}


def _int_env(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment {name}={raw!r}: expected an integer (torchrun sets it)") from None


def world_from_env(env: Mapping[str, str] | None = None) -> World:
    """The world torchrun describes in the environment, or a world of one."""
    env = os.environ if env is None else env
    world_size = _int_env(env, ENV_WORLD_SIZE) or 1
    if world_size == 1:
        return World()
    rank, local_rank = _int_env(env, ENV_RANK), _int_env(env, ENV_LOCAL_RANK)
    if rank is None or not 0 <= rank < world_size:
        raise ConfigError(f"environment {ENV_RANK}={env.get(ENV_RANK)!r}: expected 0..{world_size - 1} "
                          f"for {ENV_WORLD_SIZE}={world_size}; start several processes with torchrun")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    return World(rank, world_size, local_rank or 0, backend)


@contextmanager
def joined(world: World) -> Iterator[World]:
    """The process group for the run's lifetime (nothing to join in a world of one)."""
    if not world.distributed:
        yield world
        return
    if world.backend == "nccl":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(world.backend, rank=world.rank, world_size=world.world_size)
    try:
        yield world
    finally:
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def max_int(world: World, value: int) -> int:
    if not world.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=world.device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def any_ranks(world: World, flags: torch.Tensor) -> torch.Tensor:
    """Elementwise OR over ranks of a bool tensor (the same on every rank)."""
    if not world.distributed:
        return flags
    tensor = flags.to(torch.uint8).to(world.device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.bool().cpu()


def mean_scalar(world: World, value: torch.Tensor) -> torch.Tensor:
    """The mean over ranks of a 0-d tensor (summed in rank order: the same bits on every run)."""
    if not world.distributed:
        return value
    total = value.detach().clone().reshape(1).to(torch.float64)
    dist.all_reduce(total)
    return (total / world.world_size).reshape(())


def gather_objects(world: World, obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    if not world.distributed:
        return [obj]
    out: list[Any] = [None] * world.world_size
    dist.all_gather_object(out, obj)
    return out

