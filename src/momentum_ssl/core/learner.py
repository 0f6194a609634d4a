"""The learner: student, teacher, method and residual momentum, as the training loop calls them.

    learner = build_learner(params, run)
    loss, logs = learner(x1, x2)         # two views (N, 3, H, W)
    loss, logs = learner(x1, x2, *local_crops, epoch=epoch)  # multi-crop (DINO)
    loss.backward(); optimizer.step()
    learner.update_teacher(cosine_tau(step, total_steps, params.momentum.tau))

Per view the student runs backbone, projector and (if the method has one) predictor; the
teacher, when the scope gives one, continues from where its scope starts (the view itself, the
student's activation entering the last k stages, or its last feature map). With a teacher, the
logs carry the student-teacher gap, mean(1 - cos) on the same view, at backbone and projector
level; residual momentum adds ``residual_weight`` times the gap at ``residual_level``. Under
autocast (bf16 or fp16 on a GPU) the heads run in low precision but the method's loss and the
gap are computed in fp32 from fp32 copies of the representations: Barlow Twins' and VICReg's
correlation matrices, UniGrad's ``u @ F`` and DINO's prototype logits lose too much in bf16.

Multi-crop (Caron et al., 2020, SwAV; DINO): further views (local crops, of another size) run
through the student only; the teacher, the gap and the residual term see the two global views.
Only a method that takes them (``multi_crop``: DINO) may be given local crops, and it also gets
the epoch (DINO's teacher temperature is a schedule over epochs).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import Tensor, nn

from .methods import Branch, Method, build_method
from .models.backbones import Backbone, backbone_from_config
from .momentum import Teacher, residual_momentum_loss, teacher_start

LEVELS = {"backbone": "y", "projector": "z"}


class Learner(nn.Module):
    def __init__(self, backbone: Backbone, method: Method, scope: str = "none", k: int = 1,
                 residual_weight: float = 0.0, residual_level: str = "projector",
                 loss_scale: float = 1.0):
        super().__init__()
        start = teacher_start(scope, k, backbone)
        if residual_level not in LEVELS:
            raise ValueError(f"residual level must be one of {', '.join(LEVELS)}, got "
                             f"{residual_level!r}")
        if residual_weight < 0:
            raise ValueError(f"residual weight must be >= 0, got {residual_weight}")
        if residual_weight > 0 and start is None:
            raise ValueError("the residual-momentum loss needs a teacher, and momentum scope "
                             "'none' has none: choose scope full, last_k or projector, or set "
                             "the residual weight to 0")
        if residual_weight > 0 and residual_level == "backbone" and scope == "projector":
            raise ValueError("the residual-momentum loss at the backbone level is always 0 with "
                             "scope 'projector', whose teacher has no backbone: choose level "
                             "projector, or scope full or last_k")
        self.scope, self.k, self.loss_scale = scope, k, loss_scale
        self.residual_weight, self.residual_level = residual_weight, residual_level
        self.backbone, self.method = backbone, method
        self.projector = method.projector(backbone.dim)
        self.predictor = method.predictor()
        self.teacher = Teacher(backbone, self.projector, start) if start is not None else None

    def student(self, x: Tensor, tap: int | None) -> tuple[Branch, Tensor | None]:
        y, entry = self.backbone.forward_tap(x, tap)
        z = self.projector(y)
        return Branch(y, z, self.predictor(z) if self.predictor is not None else None), entry

    def forward(self, x1: Tensor, x2: Tensor, *local: Tensor,
                epoch: int = 0) -> tuple[Tensor, dict[str, Tensor]]:
        multi_crop = getattr(self.method, "multi_crop", False)
        if local and not multi_crop:
            raise ValueError(f"{self.method.name} takes two views, got {2 + len(local)}: local "
                             "crops (augment.local_crops) are for dino only; set them to 0")
        tap = self.teacher.start if self.teacher is not None else None
        # local crops first: the health monitor keeps the projector's last two inputs, which
        # should stay the global views
        crops = [self.student(x, None)[0] for x in local]
        students, teachers = [], []
        for x in (x1, x2):
            branch, entry = self.student(x, tap)
            students.append(branch)
            if self.teacher is not None:
                teachers.append(Branch(*self.teacher(x if tap == 0 else entry)))
        autocast = torch.is_autocast_enabled(x1.device.type)
        if autocast:  # the losses in fp32: bf16's 8-bit mantissa is too coarse for them
            students, teachers, crops = ([_fp32(b) for b in branches]
                                         for branches in (students, teachers, crops))
        with torch.autocast(x1.device.type, enabled=False) if autocast else nullcontext():
            t1, t2 = teachers if teachers else (None, None)
            if multi_crop:
                loss, logs = self.method.loss(students[0], students[1], t1, t2, local=crops,
                                              epoch=epoch)
            else:
                loss, logs = self.method.loss(students[0], students[1], t1, t2)
            if self.loss_scale != 1.0:  # the recipe's loss scale (Barlow Twins' scale_loss)
                loss = self.loss_scale * loss
            logs = {name: value.detach() for name, value in logs.items()}
            if teachers:
                for level, attr in LEVELS.items():
                    gap = sum(residual_momentum_loss(getattr(s, attr), getattr(t, attr).detach())
                              for s, t in zip(students, teachers)) / 2
                    if level == self.residual_level and self.residual_weight > 0:
                        logs["residual"] = gap.detach()
                        loss = loss + self.residual_weight * gap
                    logs[f"gap_{level}"] = gap.detach()
        logs["loss"] = loss.detach()
        return loss, logs

    def update_teacher(self, tau: float) -> None:
        """The EMA step, after the optimiser's."""
        if self.teacher is not None:
            self.teacher.update(tau)


def _fp32(branch: Branch) -> Branch:
    """``branch`` with its representations in fp32 (a no-op for fp32 ones)."""
    return Branch(*(t.float() if t is not None else None for t in (branch.y, branch.z, branch.p)))


def build_learner(params, run) -> Learner:
    """The learner of one grid cell (a :class:`~momentum_ssl.config.RunSpec`), with the run's
    recipe (:func:`~momentum_ssl.config.resolve`) applied."""
    from ..config import resolve

    params = resolve(params, run)
    backbone = backbone_from_config(params.model, params.augment.size)
    method = build_method(run.method, getattr(params.methods, run.method))
    weight = params.residual.weight if run.residual else 0.0
    return Learner(backbone, method, run.scope, run.k, weight, params.residual.level,
                   params.pretrain.loss_scale)
