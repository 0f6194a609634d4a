"""MoCo v2(+) (Chen et al., 2020, arXiv 2003.04297; He et al., 2020): InfoNCE against the other
view's key and a queue of past keys, symmetrised over the views (v2+).

One queue per view, as solo-learn's mocov2plus (``solo/methods/mocov2plus.py``): view 1's
queries meet view 2's key and view 2's past keys, and the reverse, so each direction is MoCo's
own loss (facebookresearch/moco ``moco/builder.py``: one K-key queue of the key view's keys, N
a step). One shared queue taking both views' keys would span half as many steps and mix the
views."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ...plumbing.distributed import gather_local_first, world_size
from ..models.heads import mlp
from .base import Method, check_pair, normalized, target


@dataclass(frozen=True)
class MoCoV2Config:
    """Defaults: solo-learn's mocov2plus CIFAR config (projector 2048 -> 256 without BN, as
    MoCo v2's MLP head; a queue of 32768 keys per view; temperature 0.2). ``view_reduction``:
    how the two directions of the symmetrised loss combine; solo-learn's mocov2plus halves
    their sum (``mean``); ``sum`` doubles the loss's weight against weight decay under SGD."""

    proj_hidden: int = 2048
    proj_out: int = 256
    queue_size: int = 32768
    temperature: float = 0.2
    view_reduction: Literal["mean", "sum"] = "mean"


def info_nce(q: Tensor, k: Tensor, queue: Tensor | None = None,
             temperature: float = 0.2) -> Tensor:
    """InfoNCE (MoCo eq. 1). q, k: (N, D), k_i the positive of q_i. Negatives: the rows of
    ``queue`` (K, D), or without a queue the other keys k_j, j != i. All normalised here.
    logits: N x (1 + K); returns the mean cross-entropy with the positive at index 0."""
    check_pair(q, k, "q and k")
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    if queue is None:
        logits = q @ k.T / temperature  # N x N, positives on the diagonal
        return F.cross_entropy(logits, torch.arange(len(q), device=q.device))
    if queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"queue must be (K, {q.shape[1]}), got {tuple(queue.shape)}")
    positive = (q * k).sum(1, keepdim=True)  # N x 1
    negative = q @ F.normalize(queue, dim=1).T  # N x K
    logits = torch.cat([positive, negative], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


class MoCoV2(Method):
    name = "mocov2"
    Config = MoCoV2Config

    def __init__(self, cfg: MoCoV2Config):
        super().__init__(cfg)
        if cfg.queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {cfg.queue_size}")
        # (2, K, D): queue[v] holds view v's past keys, the negatives of the other view's
        # queries; one pointer, as both views enqueue N keys a step
        self.register_buffer("queue", F.normalize(
            torch.randn(2, cfg.queue_size, cfg.proj_out), dim=2))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        # the pointer on the host too: reading the buffer (int()) waits for the GPU every step;
        # None after a load_state_dict until the next enqueue reads it once
        self._ptr: int | None = 0

    def projector(self, dim: int):
        return mlp([dim, self.cfg.proj_hidden, self.cfg.proj_out], hidden_bn=False)

    def keys(self, s1, s2, t1, t2) -> tuple[Tensor, Tensor]:
        return normalized(target(s1, t1)), normalized(target(s2, t2))

    def loss(self, s1, s2, t1, t2):
        k1, k2 = self.keys(s1, s2, t1, t2)
        queue = self.queue.clone()  # this step's negatives, before the keys below go in
        loss = self.combine(info_nce(s1.z, k2, queue[1], self.cfg.temperature),
                            info_nce(s2.z, k1, queue[0], self.cfg.temperature))
        self.enqueue(k1, k2)
        return loss, {}

    def combine(self, a: Tensor, b: Tensor) -> Tensor:
        """The two directions' losses, by ``view_reduction``."""
        return (a + b) / 2 if self.cfg.view_reduction == "mean" else a + b

    @torch.no_grad()
    def enqueue(self, k1: Tensor, k2: Tensor) -> None:
        """Replace each view's oldest keys with this step's keys of that view, k1 and k2 (N, D),
        from every rank (one all-gather for both)."""
        keys = gather_local_first(torch.stack([k1, k2], dim=1))  # (world * N, 2, D)
        n, size = len(keys), self.queue.shape[1]
        if size % n:
            raise ValueError(
                f"the MoCo queue ({size} keys per view) must be a multiple of the keys each "
                f"view enqueues per step ({n} = batch {n // world_size()} x {world_size()} "
                "ranks); change queue_size or the batch size")
        ptr = int(self.queue_ptr) if self._ptr is None else self._ptr
        self.queue[:, ptr:ptr + n] = keys.transpose(0, 1).to(self.queue.dtype)
        self._ptr = (ptr + n) % size
        self.queue_ptr.fill_(self._ptr)  # checkpointed with the queue

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self._ptr = None  # a resumed queue_ptr: read once, at the next enqueue
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
