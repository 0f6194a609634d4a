"""The pretraining loop: one grid run (a method with a momentum variant), plain PyTorch.

    out = pretrain(params, run)      # results/runs/<run>/{model.pt, dvclive/, params.yaml}

:func:`pretrain` reads as DINO's ``train_dino``: :func:`set_up` builds the loader, the learner
(wrapped for DDP), its monitors and the optimiser (core/optim.py) once; :func:`resume` loads a
checkpoint; then :func:`train_one_epoch` and :func:`end_epoch` per epoch, and :func:`finish`.

Per step, in order: (1) the learning rate, linear warm-up then cosine (to ``min_lr``), and
the weight decay's cosine when ``weight_decay_end`` is set; (2) tau from the loop's
own step counter (cosine or constant); (3) forward of both views, and of the local crops when
``augment.local_crops`` asks for them (``pretrain.precision``'s autocast, bf16 by default, and
channels_last on CUDA, fp32 on CPU: plumbing/precision.py);
(4) the NaN guard (a flag on the device, read at log and monitor steps, and at each epoch's
end); (5)
backward, the per-parameter gradient clipping of ``pretrain.clip_grad``, the method's cancelled
gradients (DINO's last layer in its first epoch), the optimiser step;
(6) the teacher's EMA; (7) logging every ``log_every`` steps: loss, lr, tau, the gap and each
block's gradient norm, at the step's number (telemetry.py), and the health of the
representations (health.py: output std, effective ranks, the collapse finding; every
``health_every`` steps when set); (8) the kNN
monitor (monitor.py) every ``eval_every`` steps and at each epoch's end.

A checkpoint (checkpoint.pt) is written atomically at the end of every epoch (every
``pretrain.checkpoint_every`` epochs and the last, when set); the same call
finds it and resumes from the next epoch, with the same batches as an uninterrupted run, if it
was written for the same run params (the hash of :func:`~momentum_ssl.config.run_params`); a
damaged checkpoint is set aside and the previous epoch's is used (checkpoint.py). It holds the
CPU's RNG state, the GPU's on CUDA, and fp16's gradient scaler. A finished run writes model.pt, its summary (stability
per block, pretraining time) and removes the checkpoints. With ``pretrain.keep_every``, the
learner's weights after every N epochs and the last are kept (``epochs/e0005.pt``, model.pt's
format with the epoch): written while it trains into ``epochs.partial/``, kept by a resumed run,
renamed ``epochs/`` when it finishes (checkpoint.py).

Under ``torchrun --nproc-per-node=N`` each process trains on its shard of every epoch (FFCV's
distributed order) with ``loader.batch_size / N`` images, BatchNorm synchronised across
processes on GPUs (SyncBatchNorm; on the CPU, gloo, each process keeps its own batch statistics)
and gradients averaged by DDP; rank 0 logs and writes, and sets a damaged checkpoint aside
before the other ranks read; every rank leaves the process group at the end.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from tqdm import tqdm

from ..analysis.health import HealthMonitor
from ..analysis.monitor import KnnMonitor
from ..analysis.telemetry import StabilityMonitor
from ..config import (ConfigError, Params, PretrainConfig, RunSpec, params_hash, resolve,
                      run_params, to_dict, with_seed)
from ..core.learner import build_learner
from ..core.momentum import cosine_tau
from ..core.optim import (build_optimizer, clip_gradients, learning_rate, set_learning_rates,
                          set_weight_decay, weight_decay)
from ..data.loaders import train_loader
from ..plumbing.artifacts import atomic_torch_save, atomic_write_text
from ..plumbing.checkpoint import (is_due, keep_weights, load_checkpoint_on_every_rank,
                                   publish_kept, remove_checkpoints, save_checkpoint,
                                   start_kept)
from ..plumbing.compute import provenance
from ..plumbing.distributed import (all_reduce_mean, barrier, close_distributed,
                                     init_distributed)
from ..plumbing.paths import cell, run_dir
from ..plumbing.precision import Precision


class TrainingDiverged(RuntimeError):
    """The loss stopped being finite; the message names the step and the last finite values."""


@dataclass
class Training:
    """What the loop trains with, built once before it (:func:`set_up`)."""

    params: Params  # resolved: the run's recipe and seed
    run: RunSpec
    out: Path
    stamp: str  # params_hash of the run params: a checkpoint of other params is not resumed
    device: torch.device
    rank: int
    world: int
    loader: Any
    learner: nn.Module  # what is trained, hooked and saved (SyncBatchNorm's, under DDP on GPUs)
    model: nn.Module  # what the forward calls: the learner, or DDP around it
    optimizer: torch.optim.Optimizer
    monitor: StabilityMonitor
    health: HealthMonitor
    knn: Any  # KnnMonitor, or its inactive stand-in
    peak: float  # the lr after the linear scaling rule
    steps_per_epoch: int
    total: int  # steps of the run
    warmup: int  # steps of the lr's warm-up
    amp: Precision  # autocast and fp16's gradient scaler (plumbing/precision.py)

    @property
    def cfg(self) -> PretrainConfig:
        return self.params.pretrain

    @property
    def checkpoint(self) -> Path:
        return self.out / "checkpoint.pt"


@dataclass
class Progress:
    """Where the run is: what a checkpoint saves beside the weights."""

    epoch: int = 0  # epochs done
    step: int = 0  # steps done
    elapsed_s: float = 0.0  # time in the epochs' loops
    last_good: dict[str, float] = field(default_factory=dict)  # the last logged values
    # (4): whether a loss since the last check was not finite (a tensor on the device, read
    # only at log steps and epoch ends), and the first step since that check
    nonfinite: Any = None
    unchecked_from: int = 0


def pretrain(params: Params, run: RunSpec, out: Path | None = None,
             seed: int | None = None) -> Path:
    """Train ``run`` to ``params.pretrain.epochs``, resuming from ``out/checkpoint.pt`` if a
    previous call with the same run params was stopped; returns the run folder. Under
    ``torchrun`` every rank calls it; rank 0 logs and writes. ``seed``: one of ``params.seeds``
    (the folder is then ``<run>/s<seed>``); None trains with ``params.seed``."""
    out = Path(out) if out is not None else run_dir(cell(run.name, seed))
    params = resolve(with_seed(params, seed), run)  # the method's recipe, the seed's draws
    device, rank, world = init_distributed(params.pretrain.device)
    t = set_up(params, run, out, device, rank, world)
    progress = resume(t)
    if t.rank == 0 and t.cfg.keep_every is not None:
        start_kept(out, progress.epoch)  # a resumed run keeps the weights it kept
    live = open_log(t, progress)
    while progress.epoch < t.cfg.epochs:
        started = time.perf_counter()
        train_one_epoch(t, progress, live)
        end_epoch(t, progress, started)
    finish(t, progress, live)
    if world > 1:
        close_distributed()
    return out


def set_up(params: Params, run: RunSpec, out: Path, device: torch.device, rank: int,
           world: int) -> Training:
    """The loader, the learner (wrapped for DDP), its monitors and the optimiser; rank 0
    writes the run's params.yaml."""
    cfg = params.pretrain
    amp = Precision.for_device(cfg.precision, device)  # autocast and fp16's gradient scaler
    if params.loader.batch_size % world:
        raise ConfigError(f"loader.batch_size ({params.loader.batch_size}) is the global batch "
                          f"and must divide among {world} processes")
    plan = run_params(params, run)
    torch.manual_seed(params.seed)
    loader = train_loader(params, device, world, rank)  # checks the data: before any write
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "params.yaml", yaml.safe_dump(plan, sort_keys=False))
    learner = build_learner(params, run).to(device)
    if device.type == "cuda":
        learner = learner.to(memory_format=torch.channels_last)
    if world > 1 and device.type == "cuda":  # PyTorch's SyncBatchNorm runs on GPUs only
        learner = nn.SyncBatchNorm.convert_sync_batchnorm(learner)
    # the monitors hook the module that trains: the converted one
    monitor = StabilityMonitor.attach(learner)
    health = HealthMonitor.attach(learner, cfg.collapse_std)
    knn = KnnMonitor.build(params, learner, device, active=rank == 0)
    model = learner
    if world > 1:
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
    return Training(params, run, out, params_hash(plan), device, rank, world, loader, learner,
                    model, optimizer, monitor, health, knn, peak, steps_per_epoch,
                    cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch),
                    amp)


def resume(t: Training) -> Progress:
    """The progress of the newest undamaged checkpoint of these run params, its state loaded;
    a fresh start without one (checkpoint.py). The loader is set to the next epoch."""
    state = load_checkpoint_on_every_rank(t.checkpoint, t.stamp, t.run.name)
    progress = Progress()
    if state is not None:
        t.learner.load_state_dict(state["learner"])
        t.optimizer.load_state_dict(state["optimizer"])
        t.monitor.load_state_dict(state["stability"])
        progress = Progress(state["epoch"], state["step"], state["elapsed_s"])
        # on the CPU: the RNG state must stay a CPU tensor; load_state_dict moves the rest
        torch.set_rng_state(state["torch_rng"])
        t.amp.load_state_dict(state.get("precision"))
        if t.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], t.device)
        print(f"{t.run.name}: resuming after epoch {progress.epoch} (step {progress.step})")
    t.loader.set_epoch(progress.epoch)
    return progress


def open_log(t: Training, progress: Progress):
    """Rank 0's DVCLive logger (None on the other ranks); a resumed run's rows from its
    checkpoint's step on are dropped first, since it logs them again."""
    from dvclive import Live

    if t.rank != 0:
        return None
    if progress.epoch > 0:
        _truncate_history(t.out / "dvclive", progress.step)
    return Live(str(t.out / "dvclive"), resume=progress.epoch > 0, save_dvc_exp=False,
                dvcyaml=None, report=None)


def train_one_epoch(t: Training, progress: Progress, live) -> None:
    """One pass over the loader: steps (1)-(8) of the module docstring per batch."""
    cfg, momentum = t.cfg, t.params.momentum
    t.model.train()
    for *views, _ in tqdm(t.loader, desc=f"{t.run.name} epoch {progress.epoch + 1}/{cfg.epochs}",
                          leave=False, disable=t.rank != 0):
        step, epoch = progress.step, progress.epoch
        lr = learning_rate(step, t.total, t.warmup, t.peak, cfg.min_lr)  # (1)
        set_learning_rates(t.optimizer, lr, t.peak)
        wd = None if cfg.weight_decay_end is None else weight_decay(
            step, t.total, cfg.weight_decay, cfg.weight_decay_end)
        if wd is not None:
            set_weight_decay(t.optimizer, cfg, wd)
        tau = (cosine_tau(step, t.total, momentum.tau, momentum.final_tau)  # (2)
               if momentum.schedule == "cosine" else momentum.tau)
        with t.amp.autocast():  # (3)
            loss, logs = t.model(*views, epoch=epoch)  # two global views, then local crops
        bad = ~torch.isfinite(loss.detach())  # (4) noted on the device, read at log steps
        if progress.nonfinite is None:
            progress.nonfinite, progress.unchecked_from = bad, step
        else:
            progress.nonfinite = progress.nonfinite | bad
        t.optimizer.zero_grad(set_to_none=True)  # (5)
        t.amp.backward(loss, t.optimizer)  # fp16: scaled, then unscaled before clipping
        if cfg.clip_grad > 0:
            clip_gradients(t.learner, cfg.clip_grad)
        t.learner.method.cancel_gradients(t.learner.projector, epoch)  # DINO's frozen last layer
        t.monitor.step(t.amp.grad_scale())  # the norms with fp16's scale divided out
        t.amp.step(t.optimizer)  # fp16: skipped when a gradient overflowed
        t.learner.update_teacher(tau)  # (6)
        # (4) read where the host reads anyway, before the logs or the kNN monitor (8) use the
        # weights: log steps, the monitor's steps, each epoch's last step (alike on every rank)
        if step % cfg.log_every == 0 or (step + 1) % t.steps_per_epoch == 0 or (
                cfg.eval_every > 0 and step % cfg.eval_every == 0):
            check_finite(t, progress, step)
        if step % cfg.log_every == 0:  # (7)
            progress.last_good = {"step": step, "lr": lr, "tau": tau,
                                  **({"weight_decay": wd} if wd is not None else {}),
                                  **{k: round(float(v), 6) for k, v in logs.items()}}
            log_step(t, progress.last_good, live)
        t.knn.after_step(step, t.steps_per_epoch, live)  # (8)
        progress.step += 1
    check_finite(t, progress, progress.step - 1)  # before end_epoch writes the checkpoint


def check_finite(t: Training, progress: Progress, step: int) -> None:
    """(4) Stop the run if a loss since the last check was not finite (on every rank, if it
    was on any); ``step``: the last step done. Checked at log steps, the kNN monitor's steps
    and each epoch's last step, not every step: reading the flag waits for the device. So a
    diverged run stops up to ``log_every`` steps late, before its weights are logged, monitored
    or checkpointed, and the last good checkpoint is kept."""
    if progress.nonfinite is None:
        return
    bad, first = progress.nonfinite, progress.unchecked_from
    progress.nonfinite = None
    if t.world > 1:
        bad = all_reduce_mean(bad.float()) > 0
    if bool(bad):
        last = step if first == step else f"{first}-{step}"
        raise TrainingDiverged(
            f"{t.run.name}: the loss was not finite at a step of {last} (epoch "
            f"{progress.epoch + 1}; checked every pretrain.log_every = {t.cfg.log_every} steps, "
            f"at the kNN monitor's and at each epoch's end); last finite values: "
            f"{progress.last_good or 'none yet'}. "
            f"The last good checkpoint ({t.checkpoint if t.checkpoint.is_file() else 'none yet'}"
            ") is kept; lower pretrain.lr or raise pretrain.warmup_epochs, then rerun")


def log_step(t: Training, values: dict[str, float], live) -> None:
    """(7): the step's values, each block's gradient norm and the health measures, at
    ``values["step"]`` (rank 0; every rank folds its gradient norms in)."""
    grads = t.monitor.latest()
    if live is None:
        return
    live.step = values["step"]
    for name, value in values.items():
        if name != "step":
            live.log_metric(f"train/{name}", value)
    for name, value in grads.items():
        live.log_metric(f"grad_norm/{name}", round(value, 6))
    if t.cfg.health_every is None or values["step"] % t.cfg.health_every == 0:
        for name, value in t.health.measure().items():
            live.log_metric(f"health/{name}", round(value, 6))
    live.next_step()


def end_epoch(t: Training, progress: Progress, started: float) -> None:
    """The epoch's time counted, its health and kNN lines printed, a checkpoint written when
    due, and the weights kept when due (rank 0); every rank waits for it."""
    progress.epoch += 1
    progress.elapsed_s += time.perf_counter() - started
    if t.rank == 0:
        t.health.end_epoch(t.run.name, progress.epoch)
        t.knn.end_epoch(t.run.name, progress.epoch, time.perf_counter() - started)
        state = {"learner": t.learner.state_dict(), "optimizer": t.optimizer.state_dict(),
                 "stability": t.monitor.state_dict(), "epoch": progress.epoch,
                 "step": progress.step, "elapsed_s": progress.elapsed_s,
                 "torch_rng": torch.get_rng_state(), "precision": t.amp.state_dict(),
                 "params_hash": t.stamp,
                 "run": to_dict(t.run)}
        if t.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(t.device)
        if is_due(progress.epoch, t.cfg.checkpoint_every, t.cfg.epochs):
            save_checkpoint(state, t.checkpoint)
        if t.cfg.keep_every is not None and is_due(progress.epoch, t.cfg.keep_every,
                                                   t.cfg.epochs):
            keep_weights({"learner": t.learner.state_dict(), "run": to_dict(t.run),
                          "epochs": t.cfg.epochs, "params_hash": t.stamp,
                          "epoch": progress.epoch}, t.out, progress.epoch)
    barrier()


def finish(t: Training, progress: Progress, live) -> None:
    """Rank 0 writes the summary metrics, model.pt and provenance.json, then removes the
    checkpoints; every rank waits for it and unhooks its monitors."""
    if t.rank == 0:
        for block, stats in t.monitor.summary().items():
            for name, value in stats.items():
                live.log_metric(f"stability/{block}/{name}", round(value, 6), plot=False)
        live.log_metric("time/pretrain_s", round(progress.elapsed_s, 1), plot=False)
        live.log_metric("time/steps", progress.step, plot=False)
        t.health.summarize(live)
        t.knn.summarize(live)
        live.make_summary()
        live.end()
        atomic_torch_save({"learner": t.learner.state_dict(), "run": to_dict(t.run),
                           "epochs": t.cfg.epochs, "params_hash": t.stamp}, t.out / "model.pt")
        # where it ran: a difference between two machines' results explains itself
        atomic_write_text(t.out / "provenance.json",
                          json.dumps(provenance(t.params.compute, t.device, t.amp.name),
                                     indent=2) + "\n")
        if t.cfg.keep_every is not None:
            publish_kept(t.out)  # epochs.partial/ -> epochs/, the stage's output
        # done: a later rerun of this stage (say, after a code change) must not resume
        remove_checkpoints(t.checkpoint)
    barrier()
    t.monitor.remove()
    t.health.remove()


def _truncate_history(live_dir: Path, before: int) -> None:
    """Drop DVCLive rows logged at step >= ``before``: a resumed run logs them again."""
    for tsv in (live_dir / "plots" / "metrics").rglob("*.tsv"):
        lines = tsv.read_text().splitlines(keepends=True)
        kept = lines[:1] + [ln for ln in lines[1:] if int(ln.split("\t", 1)[0]) < before]
        atomic_write_text(tsv, "".join(kept))
