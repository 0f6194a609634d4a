"""Barlow Twins (Zbontar et al., 2021, arXiv 2103.03230): cross-correlation towards identity."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...plumbing.distributed import gather_with_grad
from ..models.heads import mlp
from .base import Method, check_pair, two_branch

BN_EPS = 1e-5  # nn.BatchNorm1d's, which the reference code standardises with


@dataclass(frozen=True)
class BarlowTwinsConfig:
    """Defaults: the paper's 3-layer projector at solo-learn's CIFAR sizes (2048 -> 2048),
    lambda 0.0051 (the paper's)."""

    proj_hidden: int = 2048
    proj_out: int = 2048
    lambd: float = 0.0051


def barlow_twins_loss(z1: Tensor, z2: Tensor, lambd: float = 0.0051) -> Tensor:
    """Standardise each dimension over the batch (biased variance, eps 1e-5, as BatchNorm without
    affine), C = z1n^T z2n / N (D x D), loss = sum_i (1 - C_ii)^2 + lambd sum_{i!=j} C_ij^2.
    z1, z2: (N, D)."""
    check_pair(z1, z2, "z1 and z2")

    def standardise(z: Tensor) -> Tensor:
        return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + BN_EPS)

    c = standardise(z1).T @ standardise(z2) / len(z1)
    diagonal = torch.diagonal(c)
    on = (1 - diagonal).pow(2).sum()
    off = c.pow(2).sum() - diagonal.pow(2).sum()
    return on + lambd * off


class BarlowTwins(Method):
    name = "barlow_twins"
    Config = BarlowTwinsConfig

    def projector(self, dim: int):
        c = self.cfg
        return mlp([dim, c.proj_hidden, c.proj_hidden, c.proj_out], last_bias=False)

    def loss(self, s1, s2, t1, t2):
        def fn(a: Tensor, b: Tensor) -> Tensor:  # statistics over the global batch
            return barlow_twins_loss(gather_with_grad(a), gather_with_grad(b), self.cfg.lambd)

        return two_branch(fn, s1, s2, t1, t2), {}
