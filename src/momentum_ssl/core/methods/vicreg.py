"""VICReg (Bardes, Ponce & LeCun, 2022, arXiv 2105.04906): invariance, variance, covariance."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ...plumbing.distributed import gather_with_grad
from ..models.heads import mlp
from .base import Method, check_pair, two_branch


@dataclass(frozen=True)
class VICRegConfig:
    """Defaults: the paper's coefficients (25, 25, 1) and 3-layer expander, at solo-learn's
    CIFAR sizes (2048 -> 2048)."""

    proj_hidden: int = 2048
    proj_out: int = 2048
    sim_coeff: float = 25.0
    std_coeff: float = 25.0
    cov_coeff: float = 1.0


def vicreg_loss(z1: Tensor, z2: Tensor, sim_coeff: float = 25.0, std_coeff: float = 25.0,
                cov_coeff: float = 1.0) -> Tensor:
    """sim * MSE(z1, z2) + std * (mean relu(1 - sqrt(var(z1) + 1e-4)) + same for z2) / 2
    + cov * (sum offdiag(cov(z1))^2 / D + same for z2); var and cov with N - 1. z1, z2: (N, D)."""
    check_pair(z1, z2, "z1 and z2")
    n, d = z1.shape
    invariance = F.mse_loss(z1, z2)

    def variance(z: Tensor) -> Tensor:
        return F.relu(1 - torch.sqrt(z.var(0) + 1e-4)).mean()

    def covariance(z: Tensor) -> Tensor:
        z = z - z.mean(0)
        cov = z.T @ z / (n - 1)
        return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / d

    return (sim_coeff * invariance + std_coeff * (variance(z1) + variance(z2)) / 2
            + cov_coeff * (covariance(z1) + covariance(z2)))


class VICReg(Method):
    name = "vicreg"
    Config = VICRegConfig

    def projector(self, dim: int):
        c = self.cfg
        return mlp([dim, c.proj_hidden, c.proj_hidden, c.proj_out])

    def loss(self, s1, s2, t1, t2):
        c = self.cfg

        def fn(a: Tensor, b: Tensor) -> Tensor:  # statistics over the global batch
            return vicreg_loss(gather_with_grad(a), gather_with_grad(b), c.sim_coeff,
                               c.std_coeff, c.cov_coeff)

        return two_branch(fn, s1, s2, t1, t2), {}
