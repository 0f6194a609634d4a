"""Momentum: the teacher as data, its coefficient schedule, its update, the residual loss.

Every scope is one :class:`Teacher`: EMA copies of the student's backbone blocks from ``start``
on, plus its projector. The scopes differ only in ``start``, which fixes both the list of
(online, teacher) pairs the EMA runs over and where the teacher's input comes from:

============  ==========================  =================================================
scope         teacher owns                teacher's input for a view
============  ==========================  =================================================
``full``      all blocks (stem, stages)   the view itself: its own backbone forward
``last_k``    the last k stages           sg(student's activation entering those stages)
``projector`` no block                    sg(student's last feature map): no backbone pass
``none``      (no teacher)
============  ==========================  =================================================

The teacher runs in train mode (batch statistics), as in the MoCo and BYOL reference code;
its BatchNorm running buffers follow its own forwards and are not averaged.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import SCOPES
from .models.backbones import Backbone


def cosine_tau(step: int, total_steps: int, tau0: float, final_tau: float = 1.0) -> float:
    """BYOL's schedule (Grill et al., 2020, eq. 7): tau0 at step 0, rising to ``final_tau`` (1 in
    BYOL; solo-learn's ``final_tau``) at the end.
    tau(step) = final - (final - tau0) * (cos(pi * step / total_steps) + 1) / 2."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    cos = math.cos(math.pi * min(step, total_steps) / total_steps)
    return final_tau - (final_tau - tau0) * (cos + 1) / 2


@torch.no_grad()
def ema_update_(pairs: list[tuple[nn.Module, nn.Module]], tau: float) -> None:
    """teacher = tau * teacher + (1 - tau) * online, over the parameters of every pair at once:
    one foreach lerp, teacher += (1 - tau) * (online - teacher), which reads each tensor once
    (1.4x faster on the CPU than a foreach mul then add; bench/ema.py). Buffers are left alone
    (see the module docstring)."""
    online = [p for s, _ in pairs for p in s.parameters()]
    teacher = [p for _, t in pairs for p in t.parameters()]
    if len(online) != len(teacher):
        raise ValueError(f"pairs hold {len(online)} online but {len(teacher)} teacher parameters")
    torch._foreach_lerp_(teacher, online, 1.0 - tau)


def residual_momentum_loss(s: Tensor, t: Tensor) -> Tensor:
    """Residual momentum (Pham et al., 2022, arXiv 2211.09861), our reading of the abstract:
    mean_i (1 - cos(s_i, t_i)) between the student's (s) and the teacher's (t) representation
    of the *same* view, both (N, D). The caller stops the gradient of ``t``; without a weight
    this is also the logged student-teacher gap."""
    if s.shape != t.shape or s.ndim != 2:
        raise ValueError(f"s and t must be (N, D) of one shape, got {tuple(s.shape)} and "
                         f"{tuple(t.shape)}")
    return (1.0 - F.cosine_similarity(s, t, dim=1)).mean()


def teacher_start(scope: str, k: int, backbone: Backbone) -> int | None:
    """Index of the first backbone block the teacher owns; None for no teacher."""
    if scope == "none":
        return None
    if scope == "full":
        return 0
    if scope == "projector":
        return len(backbone.blocks)
    if scope == "last_k":
        if not 1 <= k <= backbone.num_stages - 1:
            raise ValueError(f"momentum scope last_k needs 1 <= k <= {backbone.num_stages - 1} "
                             f"for a backbone of {backbone.num_stages} stages, got k={k}; use "
                             "scope full for every stage")
        return len(backbone.blocks) - k
    raise ValueError(f"unknown momentum scope {scope!r}; choose one of {', '.join(SCOPES)}")


class Teacher(nn.Module):
    """EMA copies of ``backbone.blocks[start:]`` and of ``projector``."""

    def __init__(self, backbone: Backbone, projector: nn.Module, start: int):
        super().__init__()
        self.start = start
        self.pool = backbone.pool  # a function: the class token of a ViT, the mean of a ResNet
        self.blocks = nn.ModuleList(copy.deepcopy(b) for b in backbone.blocks[start:])
        for block in self.blocks:  # stochastic depth is the student's only (DINO's teacher
            if hasattr(block, "drop_path"):  # is built without it): deterministic targets
                block.drop_path = 0.0
        self.projector = copy.deepcopy(projector)
        self.requires_grad_(False)
        # (online, teacher) pairs for the EMA; a plain list, so the online modules are not
        # registered (and saved) twice
        self.pairs = list(zip(backbone.blocks[start:], self.blocks))
        self.pairs.append((projector, self.projector))

    @torch.no_grad()
    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """``h``: the view (start 0) or the student's activation entering block ``start``.
        Returns the teacher's pooled features y_t and projection z_t."""
        h = h.detach()
        for block in self.blocks:
            h = block(h)
        y = self.pool(h)
        return y, self.projector(y)

    def update(self, tau: float) -> None:
        ema_update_(self.pairs, tau)
