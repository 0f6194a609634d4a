"""The pretraining loop: one grid run (a method with a momentum variant), plain PyTorch.

    out = pretrain(params, run)      # results/runs/<run>/{model.pt, dvclive/, params.yaml}

Per step, in order: (1) the learning rate, linear warm-up then cosine; (2) tau from the loop's
own step counter (cosine or constant); (3) forward of both views (bf16 autocast and
channels_last on CUDA, fp32 on CPU); (4) the NaN guard; (5) backward and the optimiser step;
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
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from torch import nn
from tqdm import tqdm

from .artifacts import atomic_torch_save, atomic_write_text
from .checkpoint import load_checkpoint, remove_checkpoints, save_checkpoint
from .config import ConfigError, Params, RunSpec, params_hash, run_params, to_dict
from .data.loaders import train_loader
from .learner import build_learner
from .momentum import cosine_tau
from .paths import run_dir
from .telemetry import StabilityMonitor


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


def pretrain(params: Params, run: RunSpec, out: Path | None = None) -> Path:
    """Train ``run`` to ``params.pretrain.epochs``, resuming from ``out/checkpoint.pt`` if a
    previous call with the same run params was stopped; returns the run folder. Under
    ``torchrun`` every rank calls it; rank 0 logs and writes."""
    from dvclive import Live

    cfg = params.pretrain
    out = Path(out) if out is not None else run_dir(run.name)
    device, rank, world = init_distributed(cfg.device)
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
    trainable = [p for p in learner.parameters() if p.requires_grad]
    optimizer = (LARS(trainable, peak, cfg.momentum, cfg.weight_decay) if cfg.optimizer == "lars"
                 else torch.optim.SGD(trainable, peak, momentum=cfg.momentum,
                                      weight_decay=cfg.weight_decay))
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
        print(f"{run.name}: resuming after epoch {epoch} (step {step})")
    loader.set_epoch(epoch)

    live = None
    if rank == 0:
        if epoch > 0:
            _truncate_history(out / "dvclive", step)
        live = Live(str(out / "dvclive"), resume=epoch > 0, save_dvc_exp=False, dvcyaml=None,
                    report=None)
    last_good: dict[str, float] = {}
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    while epoch < cfg.epochs:
        model.train()
        started = time.perf_counter()
        for x1, x2, _ in tqdm(loader, desc=f"{run.name} epoch {epoch + 1}/{cfg.epochs}",
                              leave=False, disable=rank != 0):
            lr = learning_rate(step, total, warmup, peak)  # (1)
            for group in optimizer.param_groups:
                group["lr"] = lr
            tau = (cosine_tau(step, total, params.momentum.tau)  # (2)
                   if params.momentum.schedule == "cosine" else params.momentum.tau)
            with autocast:  # (3)
                loss, logs = model(x1, x2)
            if not torch.isfinite(loss):  # (4)
                raise TrainingDiverged(
                    f"{run.name}: the loss is {loss.item()} at step {step} (epoch {epoch + 1}); "
                    f"last finite values: {last_good or 'none yet'}. The last good checkpoint "
                    f"({checkpoint if checkpoint.is_file() else 'none yet'}) is kept; lower "
                    "pretrain.lr or raise pretrain.warmup_epochs, then rerun")
            optimizer.zero_grad(set_to_none=True)  # (5)
            loss.backward()
            optimizer.step()
            monitor.step()
            learner.update_teacher(tau)  # (6)
            if step % cfg.log_every == 0:  # (7)
                last_good = {"step": step, "lr": lr, "tau": tau,
                             **{k: round(float(v), 6) for k, v in logs.items()}}
                grads = monitor.latest()
                if live is not None:
                    live.step = step
                    for name, value in last_good.items():
                        if name != "step":
                            live.log_metric(f"train/{name}", value)
                    for name, value in grads.items():
                        live.log_metric(f"grad_norm/{name}", round(value, 6))
                    live.next_step()
            step += 1
        epoch += 1
        elapsed += time.perf_counter() - started
        if rank == 0:
            save_checkpoint({"learner": learner.state_dict(),
                             "optimizer": optimizer.state_dict(),
                             "stability": monitor.state_dict(), "epoch": epoch, "step": step,
                             "elapsed_s": elapsed, "torch_rng": torch.get_rng_state(),
                             "params_hash": stamp, "run": to_dict(run)}, checkpoint)
        if world > 1:
            dist.barrier()
    if rank == 0:
        for block, stats in monitor.summary().items():
            for name, value in stats.items():
                live.log_metric(f"stability/{block}/{name}", round(value, 6), plot=False)
        live.log_metric("time/pretrain_s", round(elapsed, 1), plot=False)
        live.log_metric("time/steps", step, plot=False)
        live.make_summary()
        live.end()
        atomic_torch_save({"learner": learner.state_dict(), "run": to_dict(run),
                           "epochs": cfg.epochs, "params_hash": stamp}, out / "model.pt")
        # done: a later rerun of this stage (say, after a code change) must not resume
        remove_checkpoints(checkpoint)
    if world > 1:
        dist.barrier()
    monitor.remove()
    return out
