"""The interface between the learner and a method.

A method builds its heads and turns the two views' representations into a loss:

    loss, logs = method.loss(s1, s2, t1, t2)

``s1``, ``s2``: the student's :class:`Branch` for each view (y, z and, with a predictor, p).
``t1``, ``t2``: the teacher's (y, z) for the same views, or None without a teacher. Stop-gradients
and the symmetrisation over views belong to the method, the formulas to its pure loss function.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class Branch:
    """One view's representations: pooled backbone y (N, D), projection z (N, P), and the
    prediction p (N, P) for methods with a predictor."""

    y: Tensor
    z: Tensor
    p: Tensor | None = None


class Method(nn.Module):
    """Base of the ten methods: holds the method's config and any state that must survive a
    restart (a queue, a matrix) as registered buffers."""

    name: ClassVar[str]
    # takes local crops (``loss(..., local=[Branch, ...], epoch=epoch)``): DINO
    multi_crop: ClassVar[bool] = False

    def __init__(self, cfg):
        super().__init__()
        validate_config(cfg)
        self.cfg = cfg

    def projector(self, dim: int) -> nn.Module:
        raise NotImplementedError

    def predictor(self) -> nn.Module | None:
        return None

    def cancel_gradients(self, projector: nn.Module, epoch: int) -> None:
        """Called by the loop between backward and the optimiser step, with the student's
        projector and the 0-based epoch: a method that holds parameters still for a while
        (DINO's last layer) drops their gradients here."""

    def loss(self, s1: Branch, s2: Branch, t1: Branch | None,
             t2: Branch | None) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError


def validate_config(cfg) -> None:
    """Ranges shared by the methods' settings, by the names they all use: sizes (``proj_*``,
    ``pred_*``, ``queue_size``) >= 1, temperatures > 0, weights and coefficients >= 0,
    ``rho`` in [0, 1). Raises ValueError naming the key."""
    for f in dataclasses.fields(cfg):
        name, value = f.name, getattr(cfg, f.name)
        if isinstance(value, (str, bool)):  # choices: checked by their Literal type
            continue
        if name.startswith(("proj_", "pred_")) or name == "queue_size":
            ok, rule = value >= 1, ">= 1"
        elif name.endswith("temperature"):
            ok, rule = value > 0, "> 0"
        elif name == "rho":
            ok, rule = 0 <= value < 1, "in [0, 1)"
        else:  # lambd, *_coeff, *_weight
            ok, rule = value >= 0, ">= 0"
        if not ok:
            raise ValueError(f"{name}: must be {rule}, got {value}")


def target(s: Branch, t: Branch | None) -> Tensor:
    """The target projection of a view: the teacher's when there is one, else sg(student's)."""
    return t.z if t is not None else s.z.detach()


def normalized(x: Tensor) -> Tensor:
    return F.normalize(x, dim=1)


def two_branch(loss_fn: Callable[[Tensor, Tensor], Tensor], s1: Branch, s2: Branch,
               t1: Branch | None, t2: Branch | None) -> Tensor:
    """A momentum-free method's loss: loss(z1, z2), both branches online; with a teacher the
    second branch comes from it: loss(z1, sg(t2)) + loss(z2, sg(t1)) (METHODS.md)."""
    if t1 is None or t2 is None:
        return loss_fn(s1.z, s2.z)
    return loss_fn(s1.z, t2.z.detach()) + loss_fn(s2.z, t1.z.detach())


def check_pair(a: Tensor, b: Tensor, names: str = "inputs") -> None:
    """Pure losses take two (N, D) tensors of one shape."""
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"{names} must be (N, D) tensors of the same shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 2:
        raise ValueError(f"{names} need a batch of at least 2, got {a.shape[0]}")
