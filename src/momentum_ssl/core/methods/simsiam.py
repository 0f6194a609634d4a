"""SimSiam (Chen & He, 2021, arXiv 2011.10566): predictor against the stop-gradient other view."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from ..models.heads import mlp
from .base import Method, check_pair, target


@dataclass(frozen=True)
class SimSiamConfig:
    """Defaults: SimSiam's heads (3-layer projector, BN on every layer, the last without affine;
    bottleneck predictor), at solo-learn's CIFAR sizes (2048 -> 2048, predictor hidden 512)."""

    proj_hidden: int = 2048
    proj_out: int = 2048
    pred_hidden: int = 512


def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    """-mean_i cos(p_i, z_i) (SimSiam eq. 1). p, z: (N, D)."""
    check_pair(p, z, "p and z")
    return -F.cosine_similarity(p, z, dim=1).mean()


class SimSiam(Method):
    name = "simsiam"
    Config = SimSiamConfig

    def projector(self, dim: int):
        c = self.cfg
        return mlp([dim, c.proj_hidden, c.proj_hidden, c.proj_out], hidden_bias=False,
                   last_bias=False, last_bn=True, last_bn_affine=False)

    def predictor(self):
        c = self.cfg
        return mlp([c.proj_out, c.pred_hidden, c.proj_out], hidden_bias=False)

    def loss(self, s1, s2, t1, t2):
        return (negative_cosine(s1.p, target(s2, t2))
                + negative_cosine(s2.p, target(s1, t1))) / 2, {}
