"""SimCLR (Chen et al., 2020, arXiv 2002.05709): NT-Xent over the 2N embeddings of a batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ...plumbing.distributed import gather_with_grad
from ..models.heads import mlp
from .base import Method, check_pair, two_branch


@dataclass(frozen=True)
class SimCLRConfig:
    """Defaults: solo-learn's CIFAR sizes (projector 2048 -> 256), temperature 0.2 (METHODS.md).
    ``proj_hidden_bn`` and ``proj_out_bn``: the projector of SimCLR's code
    (google-research/simclr, tf2/model.py ``ProjectionHead``): BatchNorm after the hidden
    layer, and after the output layer a BatchNorm that scales but does not shift
    (``center=False``), with no bias in the Linear before it. lightly's
    ``SimCLRProjectionHead`` has both too (its output BatchNorm also shifts). solo-learn's
    projector (solo/methods/simclr.py) has neither, and the paper-scale profiles follow it.
    On the embedded default's simclr-none the output BatchNorm is worth about 1.7 kNN points
    (bench/peer.py's momentum-ssl side, seeds 0-2: 75.29 against 73.62 on average)."""

    proj_hidden: int = 2048
    proj_out: int = 256
    temperature: float = 0.2
    proj_hidden_bn: bool = True
    proj_out_bn: bool = True


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.2) -> Tensor:
    """NT-Xent (SimCLR eq. 1). z1, z2: (N, D), row i of each a view of image i; normalised here.
    Each of the 2N embeddings is an anchor whose positive is its image's other view and whose
    negatives are the 2N - 2 others; returns the mean over the 2N anchors."""
    check_pair(z1, z2, "z1 and z2")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature  # 2N x 2N
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    # built on the device: a copy from the host would wait for the GPU
    positives = torch.arange(2 * n, device=z.device).roll(n)  # n..2n-1, then 0..n-1
    return F.cross_entropy(logits, positives)


class SimCLR(Method):
    name = "simclr"
    Config = SimCLRConfig

    def projector(self, dim: int):
        return mlp([dim, self.cfg.proj_hidden, self.cfg.proj_out],
                   hidden_bn=self.cfg.proj_hidden_bn, last_bn=self.cfg.proj_out_bn,
                   last_bias=not self.cfg.proj_out_bn, last_bn_center=False)

    def loss(self, s1, s2, t1, t2):
        # negatives from every rank: gather the embeddings (gradients return to their owner)
        def fn(a: Tensor, b: Tensor) -> Tensor:
            return nt_xent(gather_with_grad(a), gather_with_grad(b), self.cfg.temperature)

        return two_branch(fn, s1, s2, t1, t2), {}
