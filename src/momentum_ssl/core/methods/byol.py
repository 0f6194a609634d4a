"""BYOL (Grill et al., 2020, arXiv 2006.07733): the predictor regresses the other view's target."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from ..models.heads import mlp
from .base import Method, check_pair, target


@dataclass(frozen=True)
class BYOLConfig:
    """Defaults: BYOL's heads (sec. 3.3: Linear 4096, BN, ReLU, Linear 256, for the projector and
    the predictor), also solo-learn's CIFAR config."""

    proj_hidden: int = 4096
    proj_out: int = 256
    pred_hidden: int = 4096


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    """mean_i (2 - 2 cos(p_i, z_i)) (BYOL eq. 2). p, z: (N, D)."""
    check_pair(p, z, "p and z")
    return (2 - 2 * F.cosine_similarity(p, z, dim=1)).mean()


class BYOL(Method):
    name = "byol"
    Config = BYOLConfig

    def projector(self, dim: int):
        return mlp([dim, self.cfg.proj_hidden, self.cfg.proj_out])

    def predictor(self):
        return mlp([self.cfg.proj_out, self.cfg.pred_hidden, self.cfg.proj_out])

    def loss(self, s1, s2, t1, t2):
        return byol_loss(s1.p, target(s2, t2)) + byol_loss(s2.p, target(s1, t1)), {}
