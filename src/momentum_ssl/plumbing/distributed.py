"""DDP (torchrun): joining and leaving the process group, and cross-rank helpers. In a single
process each helper returns its input (a barrier returns at once)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from .devices import resolve_device


def init_distributed(choice: str) -> tuple[torch.device, int, int]:
    """(device, rank, world size) for ``pretrain.device`` = ``choice``. Under ``torchrun``
    (WORLD_SIZE > 1) join the process group: NCCL with one GPU per local rank, or gloo on the
    CPU. :func:`close_distributed` leaves it."""
    device = resolve_device(choice)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return device, 0, 1
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, dist.get_rank(), dist.get_world_size()


def close_distributed() -> None:
    """Leave the process group :func:`init_distributed` joined (NCCL warns at exit otherwise)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank."""
    if world_size() > 1:
        dist.barrier()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


@torch.no_grad()
def gather_local_first(x: torch.Tensor) -> torch.Tensor:
    """All ranks' rows of ``x`` (no gradient), this rank's first: (world * N, ...). Keys for
    in-batch contrast, so that row i stays the positive of query i."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    me = rank()
    return torch.cat([parts[me]] + parts[:me] + parts[me + 1:])


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' rows of ``x`` in rank order, gradients flowing back to each rank's own rows."""
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()))


@torch.no_grad()
def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    if world_size() == 1:
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x / world_size()
