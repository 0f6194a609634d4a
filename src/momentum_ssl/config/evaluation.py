"""The evaluation sections' schemas: ``probe`` and ``transfer``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .base import _require
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
