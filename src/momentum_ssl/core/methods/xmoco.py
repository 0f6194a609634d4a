"""XMoCo (Seyfi et al., 2022, arXiv 2206.04676): MoCo v2 plus two plug-in regularisers.

Only the abstract is public; the form below is our reading of it (METHODS.md), every weight a
parameter: (a) cross-consistency, the similarities between images should survive augmentation;
(b) negative uniformity, each query's similarity to its negatives should be uniform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .mocov2 import MoCoV2, MoCoV2Config, info_nce


@dataclass(frozen=True)
class XMoCoConfig(MoCoV2Config):
    """MoCo v2's defaults plus the regularisers' (our choice: no published values)."""

    cc_temperature: float = 0.2
    cc_weight: float = 1.0
    uniform_weight: float = 1.0


def _off_diagonal(s: Tensor) -> Tensor:
    """(N, N) -> (N, N - 1): each row without its diagonal element, in order. By strides
    (the diagonal is every (N + 1)-th element of the flat matrix), not a boolean mask, whose
    indexing reads the mask's count on the host: a wait for the GPU every step."""
    n = len(s)
    return s.flatten()[1:].view(n - 1, n + 1)[:, :-1].reshape(n, n - 1)


def xmoco_cross_consistency(q1: Tensor, k1: Tensor, q2: Tensor, k2: Tensor,
                            temperature: float) -> Tensor:
    """S1_ij = q1_i . k1_j and S2_ij = q2_i . k2_j for j != i (normalised here), each row
    softmaxed with ``temperature`` into P1, P2; returns the symmetric KL
    mean_i [KL(sg(P1_i) || P2_i) + KL(sg(P2_i) || P1_i)]. All inputs (N, D), N >= 2."""
    for name, x in (("k1", k1), ("q2", q2), ("k2", k2)):
        if x.shape != q1.shape:
            raise ValueError(f"{name} must have q1's shape {tuple(q1.shape)}, got "
                             f"{tuple(x.shape)}")
    if q1.ndim != 2 or len(q1) < 3:
        raise ValueError(f"inputs must be (N, D) with N >= 3, got {tuple(q1.shape)}")
    q1, k1, q2, k2 = (F.normalize(x, dim=1) for x in (q1, k1, q2, k2))
    log_p1 = F.log_softmax(_off_diagonal(q1 @ k1.T) / temperature, dim=1)
    log_p2 = F.log_softmax(_off_diagonal(q2 @ k2.T) / temperature, dim=1)

    def kl(log_target: Tensor, log_pred: Tensor) -> Tensor:
        return (log_target.exp() * (log_target - log_pred)).sum(1).mean()

    return kl(log_p1.detach(), log_p2) + kl(log_p2.detach(), log_p1)


def xmoco_negative_uniformity(neg_logits: Tensor) -> Tensor:
    """mean_i KL(uniform || softmax(neg_logits_i)) = mean_i (-log M - mean_j log p_ij), for
    (N, M) logits of each query against its M negatives."""
    if neg_logits.ndim != 2 or neg_logits.shape[1] < 1:
        raise ValueError(f"neg_logits must be (N, M), got {tuple(neg_logits.shape)}")
    log_p = F.log_softmax(neg_logits, dim=1)
    return (-math.log(neg_logits.shape[1]) - log_p.mean(1)).mean()


class XMoCo(MoCoV2):
    name = "xmoco"
    Config = XMoCoConfig

    def loss(self, s1, s2, t1, t2):
        c = self.cfg
        k1, k2 = self.keys(s1, s2, t1, t2)
        queue = self.queue.clone()
        # view 1's queries meet view 2's keys and queue, as in MoCo v2+ (mocov2.py)
        contrast = self.combine(info_nce(s1.z, k2, queue[1], c.temperature),
                                info_nce(s2.z, k1, queue[0], c.temperature))
        cross = xmoco_cross_consistency(s1.z, k1, s2.z, k2, c.cc_temperature)

        def negatives(q: Tensor, k: Tensor, past: Tensor) -> Tensor:
            # the key view's queue and its other in-batch keys: (N, K + N - 1)
            q = F.normalize(q, dim=1)
            return torch.cat([q @ past.T, _off_diagonal(q @ k.T)], dim=1) / c.temperature

        uniform = self.combine(xmoco_negative_uniformity(negatives(s1.z, k2, queue[1])),
                               xmoco_negative_uniformity(negatives(s2.z, k1, queue[0])))
        self.enqueue(k1, k2)
        loss = contrast + c.cc_weight * cross + c.uniform_weight * uniform
        return loss, {"cross_consistency": cross.detach(), "negative_uniformity": uniform.detach()}
