"""MoCo v3 (Chen, Xie & He, 2021, arXiv 2104.02057): in-batch contrast of the predictor's query
against the other view's key, keys gathered from every rank."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ...plumbing.distributed import gather_local_first
from ..models.heads import mlp
from .base import Method, target


@dataclass(frozen=True)
class MoCoV3Config:
    """Defaults: solo-learn's mocov3 CIFAR config (hidden 4096, out 256, t = 0.2; moco-v3's
    ResNet recipe uses t = 1.0, 0.2 being its ViT setting: docs/RECIPES.md); heads as
    moco-v3's ``MoCo_ResNet`` (moco/builder.py): a 2-layer projector
    Linear-BN-ReLU-Linear-BN(affine=False) and a 2-layer predictor, bias-free. ``proj_layers:
    3`` is its ViT variant (``MoCo_ViT``), whose extra 4096x4096 layer outweighs a ResNet-18."""

    proj_hidden: int = 4096
    proj_out: int = 256
    pred_hidden: int = 4096
    temperature: float = 0.2
    proj_layers: Literal[2, 3] = 2


def moco_v3_loss(q: Tensor, k: Tensor, temperature: float = 0.2) -> Tensor:
    """ctr(q, k) = CE(q k^T / t, labels = own index) * 2t (MoCo v3, Algorithm 1).
    q: (N, D); k: (M, D), M >= N, k_i the positive of q_i and rows past N further negatives
    (the other ranks' keys). Both normalised here."""
    if q.ndim != 2 or k.ndim != 2 or q.shape[1] != k.shape[1] or len(k) < len(q) or len(q) < 2:
        raise ValueError(f"q must be (N, D) with N >= 2 and k (M, D) with M >= N, got "
                         f"{tuple(q.shape)} and {tuple(k.shape)}")
    logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).T / temperature  # N x M
    labels = torch.arange(len(q), device=q.device)
    return F.cross_entropy(logits, labels) * 2 * temperature


class MoCoV3(Method):
    name = "mocov3"
    Config = MoCoV3Config

    def projector(self, dim: int):
        c = self.cfg
        hidden = [c.proj_hidden] * (c.proj_layers - 1)
        return mlp([dim, *hidden, c.proj_out], hidden_bias=False, last_bias=False, last_bn=True,
                   last_bn_affine=False)

    def predictor(self):
        c = self.cfg
        return mlp([c.proj_out, c.pred_hidden, c.proj_out], hidden_bias=False, last_bias=False)

    def loss(self, s1, s2, t1, t2):
        k1 = gather_local_first(target(s1, t1))
        k2 = gather_local_first(target(s2, t2))
        t = self.cfg.temperature
        return moco_v3_loss(s1.p, k2, t) + moco_v3_loss(s2.p, k1, t), {}
