"""UniGrad (Tao et al., CVPR 2022, arXiv 2112.05141): the unified gradient -u_t + lambda F u,
with F a moving average of the targets' correlation; no memory bank, no predictor."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...plumbing.distributed import all_reduce_mean
from ..models.heads import mlp
from .base import Method, check_pair, normalized, target


@dataclass(frozen=True)
class UniGradConfig:
    """Defaults: the reference code (fundamentalvision/UniGrad, configs/unigrad.py): 3-layer
    projector with bias-free hidden layers, 2048 -> 2048, lambda 100, rho 0.99. The paper pairs
    it with scope full and tau0 0.996 (momentum.tau)."""

    proj_hidden: int = 2048
    proj_out: int = 2048
    lambd: float = 100.0
    rho: float = 0.99


def unigrad_loss(u1: Tensor, u2_t: Tensor, F: Tensor, lambd: float = 100.0) -> Tensor:
    """Surrogate mean_i (sg(-u2_t,i + lambd F u1,i) . u1,i), whose gradient w.r.t. u1 is
    (-u2_t + lambd u1 F) / N. u1: the online view's normalised projections (N, D); u2_t: the
    other view's normalised targets (N, D); F: (D, D), symmetric. The inputs are used as given:
    the formula is stated for unit vectors u = normalise(z), which the method computes."""
    check_pair(u1, u2_t, "u1 and u2_t")
    if F.shape != (u1.shape[1], u1.shape[1]):
        raise ValueError(f"F must be ({u1.shape[1]}, {u1.shape[1]}), got {tuple(F.shape)}")
    gradient = -u2_t + lambd * u1 @ F.to(u1.dtype)
    return (gradient.detach() * u1).sum(1).mean()


class UniGrad(Method):
    name = "unigrad"
    Config = UniGradConfig

    def __init__(self, cfg: UniGradConfig):
        super().__init__(cfg)
        self.register_buffer("F", torch.zeros(cfg.proj_out, cfg.proj_out))
        self.register_buffer("F_ready", torch.zeros((), dtype=torch.bool))  # set by 1st batch
        # the flag on the host too: reading the buffer (bool()) waits for the GPU every step;
        # None after a load_state_dict until the next update reads it once (as MoCo's pointer)
        self._ready: bool | None = False

    def projector(self, dim: int):
        c = self.cfg
        return mlp([dim, c.proj_hidden, c.proj_hidden, c.proj_out], hidden_bias=False)

    @torch.no_grad()
    def update_F(self, u1_t: Tensor, u2_t: Tensor) -> None:
        """F <- rho F + (1 - rho) (u1_t^T u1_t + u2_t^T u2_t) / 2N, averaged over ranks; the
        first batch sets F, as the reference code does."""
        u1_t, u2_t = u1_t.float(), u2_t.float()
        # in fp32 under bf16 autocast too: autocast would run these products in bf16 whatever
        # their inputs' dtype (the CPU path has no autocast: the same bits there)
        with torch.autocast(u1_t.device.type, enabled=False):
            batch = all_reduce_mean((u1_t.T @ u1_t + u2_t.T @ u2_t) / (2 * len(u1_t)))
        ready = bool(self.F_ready) if self._ready is None else self._ready
        if ready:
            self.F.mul_(self.cfg.rho).add_(batch, alpha=1 - self.cfg.rho)
        else:
            self.F.copy_(batch)
            self.F_ready.fill_(True)
            self._ready = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self._ready = None  # a resumed F_ready: read once, at the next update
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def loss(self, s1, s2, t1, t2):
        u1, u2 = normalized(s1.z), normalized(s2.z)
        u1_t, u2_t = normalized(target(s1, t1)), normalized(target(s2, t2))
        self.update_F(u1_t, u2_t)
        lambd = self.cfg.lambd
        loss = (unigrad_loss(u1, u2_t, self.F, lambd) + unigrad_loss(u2, u1_t, self.F, lambd)) / 2
        positive = ((u1 * u2_t).sum(1).mean() + (u2 * u1_t).sum(1).mean()).detach() / 2
        return loss, {"positive_similarity": positive}
