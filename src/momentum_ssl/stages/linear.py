"""The papers' linear evaluation: the ``linear`` stage, on when a profile sets ``linear: true``.

    linear(params, "byol-full", seed=0)   # results/linear/byol-full/s0.json

A linear head on the frozen student backbone of a trained run: the backbone in eval mode and
under ``no_grad`` (its BatchNorm statistics stay those of pretraining, as MoCo v3's
main_lincls.py insists), the head ``nn.Linear`` with weights N(0, 0.01) and zero bias (MoCo v3's
main_lincls.py, DINO's eval_linear.py), no BatchNorm. It trains with SGD (``recipes.linear``:
momentum, weight decay, lr per 256 images scaled by batch / 256, a step or cosine schedule set
per epoch) on one random-resized crop and flip of each train image an epoch
(data/loaders.py, ``linear_train_loader``), then scores top-1 on the test split's evaluation
view (the probes' centre view). The probe stage's logistic regression fits the same head on
fixed centre-crop features with L-BFGS; this is the protocol the papers' tables report.

On the CPU the result is deterministic for a seed, as every stage's; on a GPU it claims one
as ``evaluate`` does (cli.py) and trains there, in fp32 as MoCo v3's and DINO's linear
evaluations do (no autocast).

A stopped evaluation resumes: after each epoch the head, its optimiser and the epochs' losses
are written atomically to ``results/linear/<run>/s<seed>.checkpoint.pt`` (the one it replaces
kept as ``s<seed>.checkpoint.prev.pt``: plumbing/checkpoint.py), which neither driver
declares, so a rerun finds it and goes on from the next epoch with the same batches (the loader
is seeded per epoch): the same result, bit for bit on the CPU, as an uninterrupted run. A
checkpoint of another recipe, plan or backbone weights is not resumed; the finished evaluation
removes it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..config import ConfigError, LinearConfig, Params, params_hash, run_params, to_dict, \
    with_seed
from ..core.encoders import encode_device, load_learner
from ..core.models.vit import LastBlocksTokens, class_token
from ..data.augment import stream_seed
from ..data.loaders import beton_folder, eval_batches, linear_train_loader, read_labels
from ..plumbing.artifacts import atomic_write_text
from ..plumbing.checkpoint import load_checkpoint, remove_checkpoints, save_checkpoint
from ..plumbing.compute import state_digest
from ..plumbing.paths import cell, linear_file, seed_flag

HEAD_STREAM = 0x6C696E  # "lin": the head's initialisation draws from its own stream
KEYS = ("head", "optimizer", "epoch", "train_loss", "params_hash")  # what a checkpoint holds


def checkpoint_path(out: Path) -> Path:
    """The checkpoint of the evaluation writing ``out``: ``s0.json`` -> ``s0.checkpoint.pt``."""
    return out.with_name(f"{out.stem}.checkpoint.pt")


def linear_head(dim: int, classes: int, seed: int) -> torch.nn.Linear:
    """(N, dim) features -> (N, classes) logits, weights N(0, 0.01) and zero bias, seeded."""
    head = torch.nn.Linear(dim, classes)
    gen = torch.Generator().manual_seed(stream_seed(seed, HEAD_STREAM))
    with torch.no_grad():
        head.weight.copy_(torch.randn(classes, dim, generator=gen) * 0.01)
        head.bias.zero_()
    return head


def features_of(backbone: torch.nn.Module, recipe: LinearConfig,
                architecture: str) -> torch.nn.Module:
    """What the head classifies: the backbone's pooled feature, or for a ViT with
    ``recipe.vit_last_blocks`` > 1 or ``vit_avgpool``, DINO's concatenated class tokens
    (core/models/vit.py, :class:`LastBlocksTokens`); a ResNet with either is refused in one
    line."""
    if recipe.vit_last_blocks == 1 and not recipe.vit_avgpool:
        return backbone
    if getattr(backbone, "pool", None) is not class_token:
        raise ConfigError(f"recipes.linear.vit_last_blocks / vit_avgpool are for a ViT; this "
                          f"run's backbone is {architecture}: set vit_last_blocks 1 and "
                          "vit_avgpool false")
    try:
        return LastBlocksTokens(backbone, recipe.vit_last_blocks, recipe.vit_avgpool).eval()
    except ValueError as err:
        raise ConfigError(f"recipes.linear.vit_last_blocks: {err}") from None


def train_head(backbone: torch.nn.Module, head: torch.nn.Linear, loader, recipe: LinearConfig,
               device: torch.device, desc: str = "linear", resume: dict | None = None,
               save=None) -> list[float]:
    """``recipe.epochs`` epochs of SGD on ``head`` over ``loader``'s ``(images, labels)``
    batches, through the frozen ``backbone``; each epoch's mean training loss. ``resume``: a
    checkpoint's state to go on from (its head, optimiser, epochs done and their losses; the
    loader set to the next epoch by the caller); ``save(state)``: called after every epoch
    with that state."""
    optimizer = torch.optim.SGD(head.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    scale = recipe.batch_size / 256  # the linear scaling rule, as every reference
    losses, start = [], 0
    if resume is not None:
        head.load_state_dict(resume["head"])
        optimizer.load_state_dict(resume["optimizer"])
        losses, start = [float(x) for x in resume["train_loss"]], int(resume["epoch"])
    for epoch in tqdm(range(start, recipe.epochs), desc=desc, leave=False, initial=start,
                      total=recipe.epochs):
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr_at(epoch) * scale
        # summed on the device in float64 (float32 loss x batch size, exact as on the host):
        # read once an epoch, not at every step, which would wait for a GPU each time
        total, count = torch.zeros((), dtype=torch.float64, device=device), 0
        for x, y in loader:
            with torch.no_grad():
                features = backbone(x.to(device))  # (N, D), no graph: the backbone is frozen
            loss = F.cross_entropy(head(features), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach().double() * len(y)
            count += len(y)
        losses.append(float(total) / max(count, 1))
        if save is not None:
            save({"head": head.state_dict(), "optimizer": optimizer.state_dict(),
                  "epoch": epoch + 1, "train_loss": list(losses)})
    return losses


@torch.no_grad()
def top1(backbone: torch.nn.Module, head: torch.nn.Linear, batches,
         device: torch.device) -> tuple[float, int]:
    """(top-1 accuracy, number of images) of ``head`` over ``(images, labels)`` batches."""
    correct = total = 0
    for x, y in batches:
        predicted = head(backbone(x.to(device))).argmax(dim=1).cpu()
        correct += int((predicted == y.cpu().reshape(-1)).sum())
        total += len(y)
    return correct / max(total, 1), total


def linear(params: Params, name: str, seed: int | None = None, out: Path | None = None) -> Path:
    """Train and score the linear head of grid run ``name`` (trained with ``seed``); writes
    ``results/linear/<run>/s<seed>.json`` (atomically) and returns its path."""
    runs = {run.name: run for run in params.grid}
    if name not in runs:
        raise ConfigError(f"{name!r} is not a grid run; the linear evaluation runs on trained "
                          f"runs only: {', '.join(runs)}")
    params, label = with_seed(params, seed), cell(name, seed)
    out = Path(out) if out is not None else linear_file(label)
    recipe = params.recipes.linear.for_method(runs[name].method)
    device = encode_device(params, name)
    backbone = load_learner(params, name, seed=seed).backbone.to(device).eval()
    backbone.requires_grad_(False)
    weights = state_digest(backbone.state_dict())
    frozen = features_of(backbone, recipe, params.model.backbone)  # what the head classifies
    folder = beton_folder(params)
    train_labels = read_labels(folder, "train")
    if len(train_labels) < recipe.batch_size:  # drop_last: not one step would be taken
        raise ConfigError(f"recipes.linear.batch_size: {recipe.batch_size} is more than the "
                          f"{len(train_labels)} train images of {folder}; lower it")
    classes = int(max(train_labels.max(), read_labels(folder, "test").max())) + 1
    side = params.augment.size
    with torch.no_grad():
        dim = int(frozen(torch.zeros(1, 3, side, side, device=device)).shape[1])
    head = linear_head(dim, classes, params.seed).to(device)
    stamp = params_hash(run_params(params, runs[name]))
    result_hash = params_hash({"plan": stamp, "linear": to_dict(recipe)})
    # a checkpoint resumes only onto the same recipe, plan and backbone weights
    resume_hash = params_hash({"result": result_hash, "backbone": weights})
    checkpoint = checkpoint_path(out)
    command = f"python -m momentum_ssl linear --run {name}" + seed_flag(seed)
    state = load_checkpoint(checkpoint, resume_hash, label, keys=KEYS, command=command)
    loader = linear_train_loader(params, device)
    if state is not None:
        print(f"linear {label}: resuming after epoch {state['epoch']} of {recipe.epochs}",
              flush=True)
        loader.set_epoch(int(state["epoch"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    losses = train_head(frozen, head, loader, recipe, device, f"linear {label}", resume=state,
                        save=lambda s: save_checkpoint({**s, "params_hash": resume_hash},
                                                       checkpoint))
    accuracy, tested = top1(frozen, head, eval_batches(params, "test", device), device)
    result = {"name": name, "seed": seed, "encoder": "student", "top1": accuracy,
              "num_test": tested, "num_classes": classes, "features_dim": dim,
              "train_loss": losses, "recipe": to_dict(recipe), "plan_hash": stamp,
              "params_hash": result_hash}
    atomic_write_text(out, json.dumps(result, indent=2, sort_keys=True) + "\n")
    remove_checkpoints(checkpoint)  # finished: a later rerun starts afresh
    return out
