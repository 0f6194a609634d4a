"""The evaluation sections' schemas: ``probe``, ``transfer`` and the linear evaluation's
recipe (``recipes.linear``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Optional

from .base import METHODS, _interval, _require
from .data import DataConfig


@dataclass(frozen=True)
class ProbeConfig:
    """Section ``probe``: the frozen-feature probes (METHODS.md, "Evaluation")."""

    knn_k: tuple[int, ...] = (20, 200)  # InstDisc / solo-learn: 200 and 20 neighbours
    temperature: float = 0.07  # weighted votes exp(cos / T), as in InstDisc (Wu et al., 2018)
    logistic_c: tuple[float, ...] = (0.01, 0.1, 1.0)  # inverse L2 strengths to choose from
    val_fraction: float = 0.1  # stratified share of train that chooses C
    max_iter: int = 1000  # L-BFGS iterations per logistic fit (logistic.py)
    # a fit has converged when max |gradient of its objective| <= tol: scikit-learn's lbfgs
    # criterion, at its default tolerance
    tol: float = 1e-4
    # Choose C on at most this many train images (stratified, seeded; val_fraction of them
    # validate); the chosen C is then fitted on all of train. null: choose on all of train.
    c_search_max_train: Optional[int] = None

    def __post_init__(self) -> None:
        _require(len(self.knn_k) >= 1 and min(self.knn_k) >= 1, "knn_k",
                 f"must list k >= 1, got {list(self.knn_k)}")
        _require(self.temperature > 0, "temperature", f"must be > 0, got {self.temperature}")
        _require(len(self.logistic_c) >= 1 and min(self.logistic_c) > 0, "logistic_c",
                 f"must list values > 0, got {list(self.logistic_c)}")
        _require(0 < self.val_fraction < 1, "val_fraction",
                 f"must be in (0, 1), got {self.val_fraction}")
        _require(self.max_iter >= 1, "max_iter", f"must be >= 1, got {self.max_iter}")
        _require(self.tol > 0, "tol", f"must be > 0, got {self.tol}")
        _require(self.c_search_max_train is None or self.c_search_max_train >= 10,
                 "c_search_max_train", f"must be null or >= 10, got {self.c_search_max_train}")


@dataclass(frozen=True)
class TransferConfig:
    """Section ``transfer``: downstream datasets for the frozen student, each given like the
    ``data`` section (dataset, root, download, train_per_class, test_per_class); images are
    resized to ``augment.size`` and normalised with the pretraining data's mean and std."""

    targets: tuple[DataConfig, ...] = (DataConfig(dataset="digits"),)

    def __post_init__(self) -> None:
        names = [t.dataset for t in self.targets]
        _require(len(set(names)) == len(names), "targets",
                 f"lists a dataset twice: {names}")


@dataclass(frozen=True)
class LinearConfig:
    """``recipes.linear``: the papers' linear evaluation, which ``linear: true`` in a profile
    turns on (stages/linear.py; docs/STAGES.md, "Linear evaluation"). A linear head on the
    frozen student backbone (eval mode, no gradient), trained with SGD on random-resized crops
    and flips of train for ``epochs``, then scored top-1 on the centre view of test. The
    defaults are
    solo-learn's ImageNet-100 linear recipe (scripts/linear/imagenet-100/<method>.yaml; it
    publishes none for CIFAR); each recipe file in params/recipes/ gives its own with sources
    (docs/RECIPES.md, "Linear evaluation")."""

    source: str = ""
    epochs: int = 100
    batch_size: int = 256
    lr: float = 0.3  # per 256 images, scaled linearly with the batch (as every reference)
    # a method's own lr (per 256) where its reference's differs from ``lr``: solo-learn tunes
    # it per method (scripts/linear/imagenet-100/<method>.yaml; simsiam's is 100x byol's)
    lr_by_method: Mapping[str, float] = dataclasses.field(default_factory=dict)
    schedule: Literal["step", "cosine"] = "step"  # per epoch; step: x step_gamma at step_epochs
    step_epochs: tuple[int, ...] = (60, 80)
    step_gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    crop_scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop's area range
    crop_ratio: tuple[float, float] = (0.75, 4 / 3)
    flip_p: float = 0.5
    # a ViT's features: the normed class tokens of its last N blocks concatenated (DINO's
    # n_last_blocks, 4 for ViT-S); 1 is its pooled feature (MoCo v3's, solo-learn's)
    vit_last_blocks: int = 1
    vit_avgpool: bool = False  # and the mean normed patch token (DINO's ViT-B setting, N = 1)

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        _require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        _require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        for method, lr in self.lr_by_method.items():
            _require(method in METHODS, f"lr_by_method.{method}",
                     f"is not a method; the methods: {', '.join(METHODS)}")
            _require(isinstance(lr, (int, float)) and not isinstance(lr, bool)
                     and math.isfinite(lr) and lr > 0, f"lr_by_method.{method}",
                     f"must be a number > 0, got {lr!r}")
        _require(all(e > 0 and (self.schedule != "step" or e < self.epochs)
                     for e in self.step_epochs)
                 and list(self.step_epochs) == sorted(set(self.step_epochs)), "step_epochs",
                 f"must be increasing epochs in (0, epochs={self.epochs}), got "
                 f"{list(self.step_epochs)}")
        _require(0 < self.step_gamma <= 1, "step_gamma",
                 f"must be in (0, 1], got {self.step_gamma}")
        _require(0 <= self.momentum < 1, "momentum", f"must be in [0, 1), got {self.momentum}")
        _require(self.weight_decay >= 0, "weight_decay",
                 f"must be >= 0, got {self.weight_decay}")
        _interval(self.crop_scale, "crop_scale", 1e-6, 1.0)
        _interval(self.crop_ratio, "crop_ratio", 1e-3, 1e3)
        _require(0 <= self.flip_p <= 1, "flip_p", f"must be in [0, 1], got {self.flip_p}")
        _require(self.vit_last_blocks >= 1, "vit_last_blocks",
                 f"must be >= 1, got {self.vit_last_blocks}")
        _require(not self.vit_avgpool or self.vit_last_blocks == 1, "vit_avgpool",
                 "the average-pooled patch tokens go with vit_last_blocks 1 (DINO's ViT-B "
                 f"setting), got vit_last_blocks {self.vit_last_blocks}: set one of them")

    def for_method(self, method: str) -> "LinearConfig":
        """The recipe one method's run trains with: ``lr`` its own where ``lr_by_method``
        names it, the map left out (so a run's record holds only what it used)."""
        return dataclasses.replace(self, lr=float(self.lr_by_method.get(method, self.lr)),
                                   lr_by_method={})

    def lr_at(self, epoch: int) -> float:
        """The learning rate of 0-based ``epoch`` at batch 256 (scale it by batch / 256): a
        cosine from ``lr`` to 0 over the epochs, set at each epoch's start (MoCo v3's
        ``adjust_learning_rate``, DINO's ``CosineAnnealingLR`` stepped per epoch), or ``lr``
        times ``step_gamma`` per milestone passed (solo-learn's ``MultiStepLR``)."""
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))
        return self.lr * self.step_gamma ** sum(epoch >= e for e in self.step_epochs)
