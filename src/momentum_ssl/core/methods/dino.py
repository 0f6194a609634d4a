"""DINO (Caron et al., 2021, arXiv 2104.14294): self-distillation with no labels. The student's
softmax over K prototypes, at a temperature, matches the teacher's centred and sharpened
softmax of another view; with multi-crop the student sees every crop, the teacher only the two
global views."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...plumbing.distributed import all_reduce_mean
from .base import Method, target


@dataclass(frozen=True)
class DINOConfig:
    """Defaults: solo-learn's DINO (solo/methods/dino.py defaults, scripts/pretrain/cifar/
    dino.yaml): head 2048 -> 2048 -> 256 bottleneck -> 4096 prototypes without BatchNorm, the
    last layer weight-normalised with its norm fixed at 1 and frozen for the first epoch,
    student temperature 0.1, teacher temperature 0.07 after a linear warm-up from 0.04 over
    ``warmup_teacher_epochs`` (0: none), centre momentum 0.9. The official repository's ViT
    defaults (main_dino.py) differ in K = 65536 and a teacher temperature of 0.04."""

    proj_hidden: int = 2048
    proj_bottleneck: int = 256
    proj_out: int = 4096  # K, the prototypes
    proj_bn: bool = False  # BatchNorm in the head's hidden layers (use_bn_in_head)
    norm_last_layer: bool = True  # the prototypes' norm fixed at 1 (weight_g not trained)
    freeze_last_layer: int = 1  # epochs during which the prototypes get no update
    student_temperature: float = 0.1
    teacher_temperature: float = 0.07
    warmup_teacher_temperature: float = 0.04
    warmup_teacher_epochs: int = 0
    center_momentum: float = 0.9

    def __post_init__(self) -> None:
        if not 0 <= self.center_momentum < 1:
            raise ValueError(f"center_momentum: must be in [0, 1), got {self.center_momentum}")


def teacher_temperature(epoch: int, warmup_epochs: int, start: float, end: float) -> float:
    """The teacher's temperature at ``epoch`` (0-based): ``np.linspace(start, end,
    warmup_epochs)[epoch]`` during the warm-up, then ``end`` (main_dino.py, DINOLoss)."""
    if epoch >= warmup_epochs:
        return end
    if warmup_epochs == 1:
        return start
    return start + (end - start) * epoch / (warmup_epochs - 1)


def dino_loss(student: list[Tensor], teacher: list[Tensor], center: Tensor,
              student_temperature: float = 0.1, teacher_temperature: float = 0.04) -> Tensor:
    """Mean over the pairs (i, v), v != i, of H(P_t,i, P_s,v) = mean_n sum_k -P_t,i log P_s,v
    (DINO, eq. 3 and Algorithm 1), with P_t,i = softmax((t_i - center) / teacher_temperature)
    (centering, then sharpening) and P_s,v = softmax(s_v / student_temperature).
    student: V >= 2 logits (N, K), the first G the global views in the teacher's order;
    teacher: G logits (N, K) (the caller stops their gradient); center: (K,) or (1, K).
    Computed in fp32."""
    if len(teacher) < 1 or len(student) < max(2, len(teacher)):
        raise ValueError(f"need at least one teacher view and at least max(2, teacher views) "
                         f"student views, got {len(teacher)} and {len(student)}")
    shape = teacher[0].shape
    if len(shape) != 2 or any(x.shape[1:] != shape[1:] or x.ndim != 2 for x in
                              (*student, *teacher)) or center.numel() != shape[1]:
        raise ValueError(f"views must be (N, K) and center (K,), got "
                         f"{[tuple(x.shape) for x in (*student, *teacher)]} and "
                         f"{tuple(center.shape)}")
    log_p = [F.log_softmax(s.float() / student_temperature, dim=1) for s in student]
    c = center.float().reshape(1, -1)
    total, terms = 0.0, 0
    for i, t in enumerate(teacher):
        q = F.softmax((t.float() - c) / teacher_temperature, dim=1)
        for v, lp in enumerate(log_p):
            if v == i:  # never the teacher's own view
                continue
            total = total + (-q * lp).sum(1).mean()
            terms += 1
    return total / terms


def dino_center(center: Tensor, teacher: list[Tensor], momentum: float = 0.9) -> Tensor:
    """center <- m center + (1 - m) mean of every teacher row of the batch (both views, all
    ranks) (DINO, eq. 4; main_dino.py, update_center). center: (1, K); teacher: G x (N, K)."""
    batch = all_reduce_mean(torch.cat(teacher).float().mean(0, keepdim=True))
    return center * momentum + batch * (1 - momentum)


class WeightNormLinear(nn.Module):
    """A bias-free Linear whose weight is weight_g * weight_v / ||weight_v|| per output row
    (Salimans & Kingma, 2016), ``torch.nn.utils.weight_norm``'s parametrisation and names, as
    DINO's last layer. weight_g starts at 1; ``fixed_norm``: it stays there."""

    def __init__(self, d_in: int, d_out: int, fixed_norm: bool = True):
        super().__init__()
        self.weight_v = nn.Parameter(nn.Linear(d_in, d_out, bias=False).weight.detach())
        self.weight_g = nn.Parameter(torch.ones(d_out, 1), requires_grad=not fixed_norm)

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight_g * self.weight_v / self.weight_v.norm(dim=1, keepdim=True)
        return x @ weight.T


class DINOHead(nn.Module):
    """DINO's projection head (vision_transformer.py, DINOHead): Linear-GELU-Linear-GELU-Linear
    to the bottleneck (BatchNorm after the hidden Linears with ``bn``), L2-normalise, then the
    weight-normalised Linear to the K prototypes. (N, dim) -> logits (N, K)."""

    def __init__(self, dim: int, hidden: int, bottleneck: int, out: int, bn: bool = False,
                 fixed_norm: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        for d_in in (dim, hidden):
            layers += [nn.Linear(d_in, hidden), *([nn.BatchNorm1d(hidden)] if bn else []),
                       nn.GELU()]
        layers.append(nn.Linear(hidden, bottleneck))
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp:
            if isinstance(m, nn.Linear):  # the reference's _init_weights
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = WeightNormLinear(bottleneck, out, fixed_norm)

    def forward(self, x: Tensor) -> Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=1))


class DINO(Method):
    name = "dino"
    Config = DINOConfig
    multi_crop = True

    def __init__(self, cfg: DINOConfig):
        super().__init__(cfg)
        # the centre's own EMA: a buffer, so the checkpoint carries it
        self.register_buffer("center", torch.zeros(1, cfg.proj_out))

    def projector(self, dim: int):
        c = self.cfg
        return DINOHead(dim, c.proj_hidden, c.proj_bottleneck, c.proj_out, c.proj_bn,
                        c.norm_last_layer)

    def cancel_gradients(self, projector: nn.Module, epoch: int) -> None:
        """The prototypes stay put for the first ``freeze_last_layer`` epochs (main_dino.py,
        cancel_gradients_last_layer): their gradients are dropped before the optimiser step,
        so neither the step nor weight decay touches them."""
        if epoch < self.cfg.freeze_last_layer:
            for p in projector.last_layer.parameters():
                p.grad = None

    def loss(self, s1, s2, t1, t2, local=(), epoch: int = 0):
        c = self.cfg
        teacher = [target(s1, t1).detach(), target(s2, t2).detach()]
        temperature = teacher_temperature(epoch, c.warmup_teacher_epochs,
                                          c.warmup_teacher_temperature, c.teacher_temperature)
        loss = dino_loss([s1.z, s2.z, *(b.z for b in local)], teacher, self.center,
                         c.student_temperature, temperature)
        with torch.no_grad():
            self.center.copy_(dino_center(self.center, teacher, c.center_momentum))
        return loss, {"teacher_temperature": torch.tensor(temperature)}
