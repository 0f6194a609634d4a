"""Cross-rank helpers for DDP (torchrun). In a single process each one returns its input."""

from __future__ import annotations

import torch
import torch.distributed as dist


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
