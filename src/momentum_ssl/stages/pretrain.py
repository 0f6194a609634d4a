"""The pretraining loop: one grid run (a method with a momentum variant), plain PyTorch.

    out = pretrain(params, run)      # results/runs/<run>/{model.pt, dvclive/, params.yaml}

Per step, in order: (1) the learning rate, linear warm-up then cosine (to ``min_lr``), and
the weight decay's cosine when ``weight_decay_end`` is set; (2) tau from the loop's
own step counter (cosine or constant); (3) forward of both views, and of the local crops when
``augment.local_crops`` asks for them (``pretrain.precision``'s autocast, bf16 by default, and
channels_last on CUDA, fp32 on CPU: plumbing/precision.py);
(4) the NaN guard; (5) backward, the per-parameter gradient clipping of ``pretrain.clip_grad``,
the method's cancelled gradients (DINO's last layer in its first epoch), the optimiser step;
(6) the teacher's EMA; (7) logging every ``log_every`` steps: loss, lr, tau, the gap and each
block's gradient norm, at the step's number (telemetry.py). A checkpoint (checkpoint.pt) is
written atomically at the end of every epoch; the same call finds it and resumes from the next
epoch, with the same batches as an uninterrupted run, if it was written for the same run params
(the hash of :func:`~momentum_ssl.config.run_params`); a damaged checkpoint is set aside and the
previous epoch's is used (checkpoint.py). A finished run writes model.pt, its summary (stability
per block, pretraining time) and removes the checkpoints.

Under ``torchrun --nproc-per-node=N`` each process trains on its shard of every epoch (FFCV's
distributed order) with ``loader.batch_size / N`` images, BatchNorm synchronised across
processes on GPUs (SyncBatchNorm; on the CPU, gloo, each process keeps its own batch statistics)
and gradients averaged by DDP; rank 0 logs and writes.

Beside (7), the health of the representations (health.py: output std, effective ranks, the
collapse finding) at the same steps; after (7), the kNN monitor (monitor.py) every
``eval_every`` steps and at each epoch's end.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from torch import nn
from tqdm import tqdm

from ..analysis.health import HealthMonitor
from ..analysis.monitor import KnnMonitor
from ..analysis.telemetry import StabilityMonitor
from ..config import (ConfigError, Params, RunSpec, params_hash, resolve, run_params, to_dict,
                      with_seed)
from ..core.learner import build_learner
from ..core.momentum import cosine_tau
from ..data.loaders import train_loader
from ..plumbing.artifacts import atomic_torch_save, atomic_write_text
from ..plumbing.checkpoint import load_checkpoint, remove_checkpoints, save_checkpoint
from ..plumbing.compute import provenance
from ..plumbing.devices import resolve_device
from ..plumbing.paths import cell, run_dir
from ..plumbing.precision import Precision


class TrainingDiverged(RuntimeError):
    """The loss stopped being finite; the message names the step and the last finite values."""


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
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if p.ndim > 1 or not group["exclude_bias_n_norm"]:
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
                    trust = group["eta"] * w_norm / (g_norm + wd * w_norm + group["eps"])
                    if group["clip_lr"] and lr > 0:
                        trust = torch.clamp(trust / lr, max=1.0)
                    d = torch.where((w_norm > 0) & (g_norm > 0), d.add(p, alpha=wd) * trust, d)
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = d.clone()
                else:
                    buf.mul_(group["momentum"]).add_(d)
                p.add_(buf, alpha=-lr)


SELECTORS = {  # pretrain.param_groups[].select: which trainable parameters a group takes
    "predictor": lambda name, p: name.startswith("predictor."),
    "projector": lambda name, p: name.startswith("projector."),
    "backbone": lambda name, p: name.startswith("backbone."),
    "bias_and_norm": lambda name, p: p.ndim == 1,
}


def param_groups(learner: nn.Module, cfg) -> list[dict]:
    """The optimiser's parameter groups for ``cfg`` (a PretrainConfig): one per entry of
    ``cfg.param_groups`` that selects any trainable parameter (first match wins), then the
    rest. Each group carries ``lr_scale`` and ``constant`` for :func:`set_learning_rates`."""
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


def build_optimizer(learner: nn.Module, cfg, peak: float) -> torch.optim.Optimizer:
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
    for p in module.parameters():
        if p.grad is not None:
            factor = clip / (torch.linalg.vector_norm(p.grad) + 1e-6)
            p.grad.mul_(factor.clamp(max=1.0))


def set_learning_rates(optimizer: torch.optim.Optimizer, lr: float, peak: float) -> None:
    """Each group's lr this step: its ``lr_scale`` times the scheduled ``lr``, or times ``peak``
    for a ``constant`` group (SimSiam's predictor: never warmed up nor decayed)."""
    for group in optimizer.param_groups:
        group["lr"] = group["lr_scale"] * (peak if group["constant"] else lr)


def set_weight_decay(optimizer: torch.optim.Optimizer, cfg, wd: float) -> None:
    """``wd`` in every group that takes the run's weight decay; a ``pretrain.param_groups``
    entry with its own ``weight_decay`` keeps it (DINO: biases and norms stay at 0)."""
    own = {g.select for g in cfg.param_groups if g.weight_decay is not None}
    for group in optimizer.param_groups:
        if group["select"] not in own:
            group["weight_decay"] = wd


def init_distributed(choice: str) -> tuple[torch.device, int, int]:
    """(device, rank, world size). Under ``torchrun`` (WORLD_SIZE > 1) join the process group:
    NCCL with one GPU per local rank, or gloo on the CPU."""
    device = resolve_device(choice)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return device, 0, 1
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, dist.get_rank(), dist.get_world_size()


def _truncate_history(live_dir: Path, before: int) -> None:
    """Drop DVCLive rows logged at step >= ``before``: a resumed run logs them again."""
    for tsv in (live_dir / "plots" / "metrics").rglob("*.tsv"):
        lines = tsv.read_text().splitlines(keepends=True)
        kept = lines[:1] + [ln for ln in lines[1:] if int(ln.split("\t", 1)[0]) < before]
        atomic_write_text(tsv, "".join(kept))


def pretrain(params: Params, run: RunSpec, out: Path | None = None,
             seed: int | None = None) -> Path:
    """Train ``run`` to ``params.pretrain.epochs``, resuming from ``out/checkpoint.pt`` if a
    previous call with the same run params was stopped; returns the run folder. Under
    ``torchrun`` every rank calls it; rank 0 logs and writes. ``seed``: one of ``params.seeds``
    (the folder is then ``<run>/s<seed>``); None trains with ``params.seed``."""
    from dvclive import Live

    out = Path(out) if out is not None else run_dir(cell(run.name, seed))
    params = resolve(with_seed(params, seed), run)  # the method's recipe, the seed's draws
    cfg = params.pretrain
    device, rank, world = init_distributed(cfg.device)
    amp = Precision.for_device(cfg.precision, device)  # autocast and fp16's gradient scaler
    if params.loader.batch_size % world:
        raise ConfigError(f"loader.batch_size ({params.loader.batch_size}) is the global batch "
                          f"and must divide among {world} processes")
    plan = run_params(params, run)
    stamp = params_hash(plan)
    torch.manual_seed(params.seed)
    loader = train_loader(params, device, world, rank)  # checks the data: before any write
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "params.yaml", yaml.safe_dump(plan, sort_keys=False))
    learner = build_learner(params, run).to(device)
    monitor = StabilityMonitor.attach(learner)
    health = HealthMonitor.attach(learner, cfg.collapse_std)
    knn = KnnMonitor.build(params, learner, device, active=rank == 0)
    if device.type == "cuda":
        learner = learner.to(memory_format=torch.channels_last)
    model = learner
    if world > 1:
        if device.type == "cuda":  # PyTorch's SyncBatchNorm runs on GPUs only
            learner = nn.SyncBatchNorm.convert_sync_batchnorm(learner)
        # the MoCo queue and UniGrad's F stay equal on every rank by construction: no broadcast
        model = nn.parallel.DistributedDataParallel(
            learner, device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False)
    peak = cfg.lr * params.loader.batch_size / 256  # the linear scaling rule
    optimizer = build_optimizer(learner, cfg, peak)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ConfigError(f"loader.batch_size ({params.loader.batch_size}) is larger than the "
                          "training set; lower it")
    total, warmup = cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch)

    checkpoint, epoch, step, elapsed = out / "checkpoint.pt", 0, 0, 0.0
    # on the CPU: the RNG state must stay a CPU tensor; load_state_dict moves the rest.
    # A damaged checkpoint is set aside for the previous epoch's (checkpoint.py).
    state = load_checkpoint(checkpoint, stamp, run.name, set_aside=rank == 0)
    if state is not None:
        learner.load_state_dict(state["learner"])
        optimizer.load_state_dict(state["optimizer"])
        monitor.load_state_dict(state["stability"])
        epoch, step, elapsed = state["epoch"], state["step"], state["elapsed_s"]
        torch.set_rng_state(state["torch_rng"])
        amp.load_state_dict(state.get("precision"))
        print(f"{run.name}: resuming after epoch {epoch} (step {step})")
    loader.set_epoch(epoch)

    live = None
    if rank == 0:
        if epoch > 0:
            _truncate_history(out / "dvclive", step)
        live = Live(str(out / "dvclive"), resume=epoch > 0, save_dvc_exp=False, dvcyaml=None,
                    report=None)
    last_good: dict[str, float] = {}
    while epoch < cfg.epochs:
        model.train()
        started = time.perf_counter()
        for *views, _ in tqdm(loader, desc=f"{run.name} epoch {epoch + 1}/{cfg.epochs}",
                              leave=False, disable=rank != 0):
            lr = learning_rate(step, total, warmup, peak, cfg.min_lr)  # (1)
            set_learning_rates(optimizer, lr, peak)
            wd = None if cfg.weight_decay_end is None else weight_decay(
                step, total, cfg.weight_decay, cfg.weight_decay_end)
            if wd is not None:
                set_weight_decay(optimizer, cfg, wd)
            tau = (cosine_tau(step, total, params.momentum.tau, params.momentum.final_tau)  # (2)
                   if params.momentum.schedule == "cosine" else params.momentum.tau)
            with amp.autocast():  # (3)
                loss, logs = model(*views, epoch=epoch)  # two global views, then local crops
            if not torch.isfinite(loss):  # (4)
                raise TrainingDiverged(
                    f"{run.name}: the loss is {loss.item()} at step {step} (epoch {epoch + 1}); "
                    f"last finite values: {last_good or 'none yet'}. The last good checkpoint "
                    f"({checkpoint if checkpoint.is_file() else 'none yet'}) is kept; lower "
                    "pretrain.lr or raise pretrain.warmup_epochs, then rerun")
            optimizer.zero_grad(set_to_none=True)  # (5)
            amp.backward(loss, optimizer)
            if cfg.clip_grad > 0:
                clip_gradients(learner, cfg.clip_grad)
            learner.method.cancel_gradients(learner.projector, epoch)  # DINO's frozen last layer
            monitor.step(amp.grad_scale())
            amp.step(optimizer)
            learner.update_teacher(tau)  # (6)
            if step % cfg.log_every == 0:  # (7)
                last_good = {"step": step, "lr": lr, "tau": tau,
                             **({"weight_decay": wd} if wd is not None else {}),
                             **{k: round(float(v), 6) for k, v in logs.items()}}
                grads = monitor.latest()
                if live is not None:
                    live.step = step
                    for name, value in last_good.items():
                        if name != "step":
                            live.log_metric(f"train/{name}", value)
                    for name, value in grads.items():
                        live.log_metric(f"grad_norm/{name}", round(value, 6))
                    for name, value in health.measure().items():
                        live.log_metric(f"health/{name}", round(value, 6))
                    live.next_step()
            knn.after_step(step, steps_per_epoch, live)  # (8)
            step += 1
        epoch += 1
        elapsed += time.perf_counter() - started
        if rank == 0:
            health.end_epoch(run.name, epoch)
            knn.end_epoch(run.name, epoch, time.perf_counter() - started)
            save_checkpoint({"learner": learner.state_dict(),
                             "optimizer": optimizer.state_dict(),
                             "stability": monitor.state_dict(), "epoch": epoch, "step": step,
                             "elapsed_s": elapsed, "torch_rng": torch.get_rng_state(),
                             "precision": amp.state_dict(),
                             "params_hash": stamp, "run": to_dict(run)}, checkpoint)
        if world > 1:
            dist.barrier()
    if rank == 0:
        for block, stats in monitor.summary().items():
            for name, value in stats.items():
                live.log_metric(f"stability/{block}/{name}", round(value, 6), plot=False)
        live.log_metric("time/pretrain_s", round(elapsed, 1), plot=False)
        live.log_metric("time/steps", step, plot=False)
        health.summarize(live)
        knn.summarize(live)
        live.make_summary()
        live.end()
        atomic_torch_save({"learner": learner.state_dict(), "run": to_dict(run),
                           "epochs": cfg.epochs, "params_hash": stamp}, out / "model.pt")
        # where it ran: a difference between two machines' results explains itself
        atomic_write_text(out / "provenance.json",
                          json.dumps(provenance(params.compute, device, amp.name), indent=2) + "\n")
        # done: a later rerun of this stage (say, after a code change) must not resume
        remove_checkpoints(checkpoint)
    if world > 1:
        dist.barrier()
    monitor.remove()
    health.remove()
    return out
