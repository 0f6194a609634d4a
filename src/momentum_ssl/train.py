"""The pretraining loop: one grid run (a method with a momentum variant), plain PyTorch.

    out = pretrain(params, run)      # results/runs/<run>/{checkpoint.pt, model.pt, dvclive/, params.yaml}

Per step, in order: (1) the learning rate, linear warm-up then cosine; (2) tau from the loop's
own step counter (cosine or constant); (3) forward of both views (bf16 autocast and
channels_last on CUDA, fp32 on CPU); (4) the NaN guard; (5) backward and the optimiser step;
(6) the teacher's EMA; (7) logging every ``log_every`` steps. A checkpoint is written atomically
at the end of every epoch; the same call finds it and resumes from the next epoch, with the same
batches as an uninterrupted run.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from .config import Params, RunSpec, to_dict
from .artifacts import atomic_torch_save, atomic_write_text
from .data.loaders import train_loader
from .learner import build_learner
from .momentum import cosine_tau


class TrainingDiverged(RuntimeError):
    """The loss stopped being finite; the message names the step and the last finite values."""


def learning_rate(step: int, total_steps: int, warmup_steps: int, peak: float) -> float:
    """Linear warm-up from 0 to ``peak`` over ``warmup_steps``, then cosine decay to 0."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


class LARS(torch.optim.Optimizer):
    """LARS (You et al., 2017) as in SimCLR/BYOL: SGD with momentum whose step for each weight
    matrix is scaled by eta * ||w|| / ||g + wd w||; biases and BatchNorm parameters (1-D) get
    neither weight decay nor adaptation."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      eta=eta))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if p.ndim > 1:
                    grad = grad.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.norm(p), torch.norm(grad)
                    trust = torch.where((w_norm > 0) & (g_norm > 0),
                                        group["eta"] * w_norm / g_norm, torch.ones_like(w_norm))
                    grad = grad.mul(trust)
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                buf.mul_(group["momentum"]).add_(grad)
                p.add_(buf, alpha=-group["lr"])


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("pretrain.device is cuda but no CUDA device is visible; use auto or "
                           "cpu")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def pretrain(params: Params, run: RunSpec, out: Path | None = None) -> Path:
    """Train ``run`` to ``params.pretrain.epochs``, resuming from ``out/checkpoint.pt`` if a
    previous call was stopped; returns the run folder."""
    from dvclive import Live

    cfg = params.pretrain
    out = Path(out) if out is not None else Path(cfg.out_dir) / run.name
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "params.yaml", yaml.safe_dump(
        {**to_dict(params), "run": to_dict(run)}, sort_keys=False))
    device = resolve_device(cfg.device)
    torch.manual_seed(params.seed)
    loader = train_loader(params, device)
    learner = build_learner(params, run).to(device)
    if device.type == "cuda":
        learner = learner.to(memory_format=torch.channels_last)
    peak = cfg.lr * params.loader.batch_size / 256  # the linear scaling rule
    trainable = [p for p in learner.parameters() if p.requires_grad]
    optimizer = (LARS(trainable, peak, cfg.momentum, cfg.weight_decay) if cfg.optimizer == "lars"
                 else torch.optim.SGD(trainable, peak, momentum=cfg.momentum,
                                      weight_decay=cfg.weight_decay))
    steps_per_epoch = len(loader)
    total, warmup = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch

    checkpoint, epoch, step = out / "checkpoint.pt", 0, 0
    if checkpoint.is_file():
        # on the CPU: the RNG state must stay a CPU tensor; load_state_dict moves the rest
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        learner.load_state_dict(state["learner"])
        optimizer.load_state_dict(state["optimizer"])
        epoch, step = state["epoch"], state["step"]
        torch.set_rng_state(state["torch_rng"])
    loader.set_epoch(epoch)

    live = Live(str(out / "dvclive"), resume=epoch > 0, save_dvc_exp=False, dvcyaml=None)
    last_good: dict[str, float] = {}
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    while epoch < cfg.epochs:
        learner.train()
        for x1, x2, _ in tqdm(loader, desc=f"{run.name} epoch {epoch + 1}/{cfg.epochs}",
                              leave=False):
            lr = learning_rate(step, total, warmup, peak)  # (1)
            for group in optimizer.param_groups:
                group["lr"] = lr
            tau = (cosine_tau(step, total, params.momentum.tau)  # (2)
                   if params.momentum.schedule == "cosine" else params.momentum.tau)
            with autocast:  # (3)
                loss, logs = learner(x1, x2)
            if not torch.isfinite(loss):  # (4)
                raise TrainingDiverged(
                    f"{run.name}: the loss is {loss.item()} at step {step} (epoch {epoch + 1}); "
                    f"last finite values: {last_good or 'none yet'}. The last good checkpoint "
                    f"({checkpoint if checkpoint.is_file() else 'none yet'}) is kept; lower "
                    "pretrain.lr or raise pretrain.warmup_epochs, then rerun")
            optimizer.zero_grad(set_to_none=True)  # (5)
            loss.backward()
            optimizer.step()
            learner.update_teacher(tau)  # (6)
            if step % cfg.log_every == 0:  # (7)
                last_good = {"step": step, "lr": lr, "tau": tau,
                             **{k: round(float(v), 6) for k, v in logs.items()}}
                for name, value in last_good.items():
                    if name != "step":
                        live.log_metric(f"train/{name}", value)
                live.next_step()
            step += 1
        epoch += 1
        atomic_torch_save({"learner": learner.state_dict(), "optimizer": optimizer.state_dict(),
                      "epoch": epoch, "step": step, "torch_rng": torch.get_rng_state(),
                      "run": to_dict(run)}, checkpoint)
    atomic_torch_save({"learner": learner.state_dict(), "run": to_dict(run), "epochs": cfg.epochs},
                 out / "model.pt")
    live.end()
    return out
