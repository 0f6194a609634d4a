"""Encoders of trained learners and baselines, and encoding batches to feature arrays.

    encoder, stamp = encoder_for(params, "byol-full", seed=0)   # or "raw", "random"
    columns, labels = encode(encoder, batches, device)          # {"student": (N, D), ...}, (N,)

An encoder maps images (N, C, H, W) to named pooled features: ``student`` (the backbone's
output) and, when the run's teacher owns backbone blocks (scopes full and last_k), ``teacher``;
``raw`` for the pixel baseline. The extract and transfer stages encode with these, and the kNN
monitor embeds its subsets with :class:`Encoders` while a run trains.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..config import ConfigError, Params, params_hash, run_params, to_dict, with_seed
from ..plumbing.artifacts import corrupt, load_torch
from ..plumbing.devices import resolve_device
from ..plumbing.paths import BASELINES, cell, run_dir, seed_flag
from .learner import Learner, build_learner
from .models.backbones import build_backbone


def load_learner(params: Params, name: str, model_path: Path | None = None,
                 seed: int | None = None) -> Learner:
    """The trained learner of grid run ``name`` (trained with ``seed``) from its model.pt, in
    eval mode."""
    runs = {run.name: run for run in params.grid}
    run = runs[name]
    params = with_seed(params, seed)
    model_path = model_path or run_dir(cell(name, seed)) / "model.pt"
    rewrite = f"python -m momentum_ssl pretrain --run {name}" + seed_flag(seed)
    state = load_torch(model_path, rewrite, ("learner", "params_hash"))
    if state["params_hash"] != params_hash(run_params(params, run)):
        raise ConfigError(f"{model_path} was trained with other params than {name} has now; "
                          f"rerun {rewrite} (or dvc repro)")
    learner = build_learner(params, run)
    try:
        learner.load_state_dict(state["learner"])
    except (RuntimeError, TypeError, AttributeError) as err:  # garbled, or another code version
        raise corrupt(model_path, "holds weights that do not fit the run's learner "
                      f"({' '.join(str(err).split())[:160]})", rewrite) from None
    return learner.eval()


class Encoders(torch.nn.Module):
    """Pooled features of the student and, when it owns backbone blocks, of the teacher."""

    def __init__(self, learner: Learner):
        super().__init__()
        self.learner = learner
        teacher = learner.teacher
        self.names = ["student"] + (["teacher"] if teacher is not None and teacher.blocks
                                    else [])

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        teacher = self.learner.teacher
        if len(self.names) == 1:
            return {"student": self.learner.backbone(x)}
        y, entry = self.learner.backbone.forward_tap(x, teacher.start)
        y_t, _ = teacher(x if teacher.start == 0 else entry)
        return {"student": y, "teacher": y_t}


class PixelEncoder(torch.nn.Module):
    names = ["raw"]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"raw": x.flatten(1)}


class SingleEncoder(torch.nn.Module):
    names = ["student"]

    def __init__(self, backbone: torch.nn.Module):
        super().__init__()
        self.backbone = backbone

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"student": self.backbone(x)}


def random_backbone(params: Params) -> torch.nn.Module:
    torch.manual_seed(params.seed)
    model = params.model
    return build_backbone(model.backbone, model.width, model.cifar_stem,
                          patch_size=model.patch_size,
                          image_size=model.image_size or params.augment.size,
                          freeze_patch_embed=model.freeze_patch_embed).eval()


def encoder_for(params: Params, name: str,
                seed: int | None = None) -> tuple[torch.nn.Module, str]:
    """The encoder of a grid run or baseline (trained or drawn with ``seed``), and the params
    hash it stands for."""
    params = with_seed(params, seed)
    if name == "raw":
        return PixelEncoder(), params_hash({"baseline": "raw", "data": to_dict(params.data),
                                            "size": params.augment.size})
    if name == "random":
        return SingleEncoder(random_backbone(params)), params_hash(
            {"baseline": "random", "seed": params.seed, "data": to_dict(params.data),
             "size": params.augment.size, "model": to_dict(params.model)})
    runs = {run.name: run for run in params.grid}
    if name not in runs:
        raise ConfigError(f"{name!r} is neither a grid run nor a baseline; choose one of "
                          + ", ".join([*runs, *BASELINES]))
    return (Encoders(load_learner(params, name, seed=seed)),
            params_hash(run_params(params, runs[name])))


@torch.no_grad()
def encode(encoder: torch.nn.Module, batches, device: torch.device,
           desc: str = "encode") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Run ``encoder`` over ``(images, labels)`` batches; float32 features per name, labels."""
    encoder = encoder.to(device).eval()
    parts: dict[str, list[np.ndarray]] = {name: [] for name in encoder.names}
    labels = []
    for x, y in tqdm(batches, desc=desc, leave=False):
        for name, f in encoder(x.to(device)).items():
            parts[name].append(f.float().cpu().numpy().copy())
        # a copy: FFCV hands out the same label buffer again a few batches later
        labels.append(y.cpu().numpy().reshape(-1).copy())
    return ({name: np.concatenate(p) for name, p in parts.items()},
            np.concatenate(labels).astype(np.int64))


def single_channel(pixels: np.ndarray, channels: int = 3) -> np.ndarray:
    """Grayscale images stored as RGB: keep one channel (cosine and probes see the same data
    at a third of the size)."""
    per = pixels.reshape(len(pixels), channels, -1)
    if all(np.array_equal(per[:, 0], per[:, c]) for c in range(1, channels)):
        return np.ascontiguousarray(per[:, 0])
    return pixels


def needs_accelerator(name: str) -> bool:
    """Whether encoding grid run or baseline ``name`` uses a GPU when there is one: raw pixels
    do not (and claim none: their rules ask for gpu=0)."""
    return name != "raw"


def encode_device(params: Params, name: str) -> torch.device:
    """Where extract and transfer encode ``name``."""
    if not needs_accelerator(name):
        return torch.device("cpu")
    return resolve_device(params.pretrain.device)
