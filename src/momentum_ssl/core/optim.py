"""The optimiser of a run and its schedules, apart from the loop that calls them (as DINO's
``utils.py`` holds its schedules and LARS apart from ``train_one_epoch``).

    optimizer = build_optimizer(learner, params.pretrain, peak)   # SGD, LARS or AdamW
    set_learning_rates(optimizer, learning_rate(step, total, warmup, peak, cfg.min_lr), peak)
    clip_gradients(learner, cfg.clip_grad)                         # before optimizer.step()

The schedules are pure functions of the step (never of a framework's counter). LARS and the
clipping run as ``torch._foreach_*`` operations over a parameter group: on CUDA a few kernels
a step instead of one small kernel per parameter and operation; on the CPU torch runs each
foreach operation as the per-parameter operation, so the result is the per-parameter loop's to
the bit (tests/core/test_optim.py holds both against a loop written out).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..config import PretrainConfig


def learning_rate(step: int, total_steps: int, warmup_steps: int, peak: float,
                  floor: float = 0.0) -> float:
    """Linear warm-up from 0 to ``peak`` over ``warmup_steps``, then cosine decay to ``floor``
    (``pretrain.min_lr``: DINO's 1e-6, 0 elsewhere)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def weight_decay(step: int, total_steps: int, start: float, end: float) -> float:
    """A cosine from ``start`` at step 0 towards ``end`` over ``total_steps``, without warm-up:
    DINO's weight-decay schedule (``utils.cosine_scheduler(0.04, 0.4, ...)``)."""
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * step / max(1, total_steps)))


class LARS(torch.optim.Optimizer):
    """LARS (You et al., 2017) as solo-learn implements it (solo/utils/lars.py, from Lightning
    Bolts), which its CIFAR and ImageNet-100 recipes were tuned with. For each parameter with
    both norms non-zero (and, with ``exclude_bias_n_norm``, more than one dimension):

        trust = eta * ||w|| / (||g|| + wd * ||w|| + eps)
        d = (g + wd * w) * (min(trust / lr, 1) if clip_lr else trust)

    then SGD with momentum: buf = momentum * buf + d; w -= lr * buf. With clipping the step is
    lr * min(trust / lr, 1) = min(trust, lr), so LARS can only slow a layer down. Excluded
    parameters (biases, norms) take the plain gradient: no adaptation and no weight decay.
    The official BYOL/SimCLR/Barlow Twins code divides by ||g + wd * w|| instead, with eta 0.001
    and no clipping (set ``pretrain.lars``); the two denominators differ by at most wd * ||w||.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.02, clip_lr: bool = True, exclude_bias_n_norm: bool = True,
                 eps: float = 1e-8):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      eta=eta, clip_lr=clip_lr,
                                      exclude_bias_n_norm=exclude_bias_n_norm, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            lr, wd = group["lr"], group["weight_decay"]
            steps = [p.grad for p in params]  # d of each parameter
            adapted = [i for i, p in enumerate(params)
                       if p.ndim > 1 or not group["exclude_bias_n_norm"]]
            if adapted:
                ws, gs = [params[i] for i in adapted], [steps[i] for i in adapted]
                for i, d in zip(adapted, _lars_steps(ws, gs, group)):
                    steps[i] = d
            bufs = [self.state[p].get("momentum_buffer") for p in params]
            kept = [i for i, buf in enumerate(bufs) if buf is not None]
            if kept:  # buf = momentum * buf + d
                old = [bufs[i] for i in kept]
                torch._foreach_mul_(old, group["momentum"])
                torch._foreach_add_(old, [steps[i] for i in kept])
            for i, buf in enumerate(bufs):
                if buf is None:
                    bufs[i] = self.state[params[i]]["momentum_buffer"] = steps[i].clone()
            torch._foreach_add_(params, bufs, alpha=-lr)


def _lars_steps(ws: list[Tensor], gs: list[Tensor], group: dict) -> list[Tensor]:
    """Each adapted parameter's d: (g + wd * w) * trust where both norms are non-zero, else g."""
    lr, wd = group["lr"], group["weight_decay"]
    w_norms, g_norms = torch._foreach_norm(ws), torch._foreach_norm(gs)
    # trust = eta * ||w|| / (||g|| + wd * ||w|| + eps)
    den = torch._foreach_add(g_norms, torch._foreach_mul(w_norms, wd))
    torch._foreach_add_(den, group["eps"])
    trust = torch._foreach_div(torch._foreach_mul(w_norms, group["eta"]), den)
    if group["clip_lr"] and lr > 0:
        torch._foreach_div_(trust, lr)
        torch._foreach_clamp_max_(trust, 1.0)
    decayed = torch._foreach_add(gs, ws, alpha=wd)
    torch._foreach_mul_(decayed, trust)  # each by its own 0-dim trust
    # both norms > 0, as min(||w||, ||g||) > 0 (a NaN norm fails both): one kernel for all
    adapt = torch.stack(torch._foreach_minimum(w_norms, g_norms)) > 0
    return [torch.where(a, d, g) for a, d, g in zip(adapt.unbind(), decayed, gs)]


SELECTORS = {  # pretrain.param_groups[].select: which trainable parameters a group takes
    "predictor": lambda name, p: name.startswith("predictor."),
    "projector": lambda name, p: name.startswith("projector."),
    "backbone": lambda name, p: name.startswith("backbone."),
    "bias_and_norm": lambda name, p: p.ndim == 1,
}


def param_groups(learner: nn.Module, cfg: PretrainConfig) -> list[dict]:
    """The optimiser's parameter groups for ``cfg``: one per entry of ``cfg.param_groups`` that
    selects any trainable parameter (first match wins), then the rest. Each group carries
    ``lr_scale`` and ``constant`` for :func:`set_learning_rates`."""
    groups = [{"params": [], "lr_scale": g.lr_scale, "constant": g.schedule == "constant",
               "weight_decay": cfg.weight_decay if g.weight_decay is None else g.weight_decay,
               "select": g.select} for g in cfg.param_groups]
    rest = {"params": [], "lr_scale": 1.0, "constant": False, "weight_decay": cfg.weight_decay,
            "select": "rest"}
    for name, p in learner.named_parameters():
        if not p.requires_grad:
            continue
        chosen = next((g for g in groups if SELECTORS[g["select"]](name, p)), rest)
        chosen["params"].append(p)
    return [g for g in [*groups, rest] if g["params"]]


def build_optimizer(learner: nn.Module, cfg: PretrainConfig,
                    peak: float) -> torch.optim.Optimizer:
    """SGD, LARS or AdamW (``cfg.optimizer``) over :func:`param_groups`, at ``peak`` lr."""
    groups = param_groups(learner, cfg)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, peak, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "lars":
        return LARS(groups, peak, cfg.momentum, cfg.weight_decay, cfg.lars.eta,
                    cfg.lars.clip_lr, cfg.lars.exclude_bias_n_norm)
    return torch.optim.SGD(groups, peak, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


@torch.no_grad()
def clip_gradients(module: nn.Module, clip: float) -> None:
    """Each parameter's gradient scaled to norm <= ``clip``, one parameter at a time: DINO's
    ``utils.clip_gradients`` (factor clip / (norm + 1e-6) where that is below 1)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    factors = torch._foreach_norm(grads)
    torch._foreach_add_(factors, 1e-6)
    torch._foreach_reciprocal_(factors)  # clip / x: torch computes it as reciprocal(x) * clip
    torch._foreach_mul_(factors, clip)
    torch._foreach_clamp_max_(factors, 1.0)
    torch._foreach_mul_(grads, factors)  # each by its own 0-dim factor


def set_learning_rates(optimizer: torch.optim.Optimizer, lr: float, peak: float) -> None:
    """Each group's lr this step: its ``lr_scale`` times the scheduled ``lr``, or times ``peak``
    for a ``constant`` group (SimSiam's predictor: never warmed up nor decayed)."""
    for group in optimizer.param_groups:
        group["lr"] = group["lr_scale"] * (peak if group["constant"] else lr)


def set_weight_decay(optimizer: torch.optim.Optimizer, cfg: PretrainConfig, wd: float) -> None:
    """``wd`` in every group that takes the run's weight decay; a ``pretrain.param_groups``
    entry with its own ``weight_decay`` keeps it (DINO: biases and norms stay at 0)."""
    own = {g.select for g in cfg.param_groups if g.weight_decay is not None}
    for group in optimizer.param_groups:
        if group["select"] not in own:
            group["weight_decay"] = wd
