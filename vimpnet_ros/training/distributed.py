"""torchrun integration: process-group set-up from the environment (env://), rank helpers.

``torchrun --nproc_per_node 4 -m vimpnet_ros.cli train ...`` sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT; a plain ``vimpnet-ros train`` has none of
them and runs as a single process. The backend is NCCL on CUDA and gloo on CPU.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vimpnet_ros.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job; ``world_size == 1`` means no process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Only rank 0 logs, validates and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True inside a torchrun job of more than one process."""
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA works, else ``cpu``; explicit names are checked."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for but CUDA is not available; use device=cpu or auto")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    elif device.type != "cpu":
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    return device


def init_distributed(device: torch.device, timeout_s: float = 1800.0) -> DistContext:
    """Join the torchrun process group if the environment describes one (env:// init)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, init_method="env://", timeout=datetime.timedelta(seconds=timeout_s))
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, backend=backend)


def local_rank_from_env() -> int:
    """LOCAL_RANK set by torchrun (0 outside a job): picks the GPU before the group exists."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op in a single process)."""
    if ctx.distributed and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(values: dict[str, float], ctx: DistContext, device: torch.device) -> dict[str, float]:
    """Average a dict of scalars over ranks (for logging the loss of the whole job)."""
    if not ctx.distributed or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    tensor /= ctx.world_size
    return dict(zip(keys, tensor.tolist(), strict=True))


def cleanup(ctx: DistContext) -> None:
    """Leave the process group (torchrun expects a clean exit)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
