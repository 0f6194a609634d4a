"""Typed configuration: ``params.yaml`` loaded into frozen dataclasses.

``params.yaml`` is the one source of configuration. Every top-level section must be present
(a profile that forgets one fails loudly rather than silently running on code defaults); inside
a section, a key left out takes the default documented on its field. Unknown keys, wrong types
and out-of-range values raise :class:`ConfigError` naming the dotted key and what is allowed,
before any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from .methods import MethodsConfig

DatasetName = Literal["fashion_mnist", "digits", "cifar10", "cifar100", "stl10", "imagefolder"]
MethodName = Literal["mocov2", "mocov3", "byol", "simclr", "simsiam", "barlow_twins", "vicreg",
                     "unigrad", "xmoco"]
Scope = Literal["none", "projector", "last_k", "full"]
DATASETS: tuple[str, ...] = typing.get_args(DatasetName)
METHODS: tuple[str, ...] = typing.get_args(MethodName)
SCOPES: tuple[str, ...] = typing.get_args(Scope)


class ConfigError(ValueError):
    """A params file that cannot be used; the message names the key and the fix."""


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _in_unit(value: float, key: str) -> None:
    _require(0.0 <= value <= 1.0, key, f"must be a probability in [0, 1], got {value}")


def _interval(pair: tuple[float, float], key: str, low: float, high: float) -> None:
    a, b = pair
    _require(low <= a <= b <= high, key,
             f"must be [min, max] with {low} <= min <= max <= {high}, got [{a}, {b}]")


@dataclass(frozen=True)
class DataConfig:
    """Section ``data``: which dataset to convert to ``.beton`` and how."""

    dataset: DatasetName = "fashion_mnist"
    # Folder holding the dataset; null means the dataset's default (Debian's
    # /usr/share/datasets/fashion-mnist for fashion_mnist, data/raw/<dataset> for the others).
    root: Optional[str] = None
    # torchvision datasets only: fetch into `root` when absent (needs a network).
    download: bool = False
    out_dir: str = "data/beton"
    # Deterministic class-stratified subsets for quick profiles: images per class, null = all.
    train_per_class: Optional[int] = None
    test_per_class: Optional[int] = None
    # Images with more pixels (H*W) than this are stored as JPEG, smaller ones raw.
    # 96*96 keeps MNIST/CIFAR/STL-10 lossless and compresses ImageNet-sized images.
    jpeg_above: int = 9216
    jpeg_quality: int = 90
    # Longest side images are shrunk to on write (ImageFolder); null keeps them as they are.
    max_resolution: Optional[int] = None

    def __post_init__(self) -> None:
        for key in ("train_per_class", "test_per_class", "max_resolution"):
            value = getattr(self, key)
            _require(value is None or value >= 1, key, f"must be null or >= 1, got {value}")
        _require(self.jpeg_above >= 0, "jpeg_above", f"must be >= 0, got {self.jpeg_above}")
        _require(1 <= self.jpeg_quality <= 100, "jpeg_quality",
                 f"must be in 1..100, got {self.jpeg_quality}")


@dataclass(frozen=True)
class AugmentConfig:
    """Section ``augment``: the two-view SSL augmentations.

    Defaults are the CIFAR-scale recipe of solo-learn / BYOL (random resized crop with scale
    (0.08, 1), flip 0.5, colour jitter 0.4/0.4/0.2/0.1 with p 0.8, grayscale 0.2). The
    ImageNet-scale recipe of BYOL (Grill et al., 2020, table 6) adds per-view Gaussian blur
    p (1.0, 0.1) with sigma in [0.1, 2.0] and solarisation p (0.0, 0.2).
    """

    size: int = 28  # side of the augmented views and of the evaluation images
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: tuple[float, float] = (0.0, 0.0)  # per view
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: tuple[float, float] = (0.0, 0.0)  # per view

    def __post_init__(self) -> None:
        _require(self.size >= 8, "size", f"must be >= 8 pixels, got {self.size}")
        _interval(self.crop_scale, "crop_scale", 1e-6, 1.0)
        _interval(self.crop_ratio, "crop_ratio", 1e-6, math.inf)
        _interval(self.blur_sigma, "blur_sigma", 1e-6, math.inf)
        for key in ("flip_p", "jitter_p", "grayscale_p", "brightness", "contrast",
                    "saturation"):
            _require(getattr(self, key) >= 0, key, f"must be >= 0, got {getattr(self, key)}")
        for key in ("flip_p", "jitter_p", "grayscale_p"):
            _in_unit(getattr(self, key), key)
        _require(0.0 <= self.hue <= 0.5, "hue", f"must be in [0, 0.5], got {self.hue}")
        for key in ("blur_p", "solarize_p"):
            for p in getattr(self, key):
                _in_unit(p, key)


@dataclass(frozen=True)
class LoaderConfig:
    """Section ``loader``: how batches are read."""

    backend: Literal["ffcv", "torchvision"] = "ffcv"
    batch_size: int = 256
    # num_workers, os_cache, batches_ahead: FFCV's loader thread, which decodes JPEG or
    # varying-size images; raw images of one size are read in the training thread
    # (data/loaders.py), and torchvision's DataLoader takes num_workers and batches_ahead
    num_workers: int = 2
    # FFCV: let the OS page cache hold the .beton (shared between processes) rather than
    # each process reading it into its own memory.
    os_cache: bool = True
    batches_ahead: int = 3

    def __post_init__(self) -> None:
        _require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        _require(self.num_workers >= 1, "num_workers", f"must be >= 1, got {self.num_workers}")
        _require(self.batches_ahead >= 1, "batches_ahead",
                 f"must be >= 1, got {self.batches_ahead}")


@dataclass(frozen=True)
class ModelConfig:
    """Section ``model``: the backbone every run of the grid trains."""

    backbone: Literal["resnet18", "resnet50", "resnet_tiny"] = "resnet_tiny"
    width: int = 16  # base channels of resnet_tiny (ResNet-18's layout; resnet18 has 64)
    cifar_stem: bool = True  # 3x3 stride-1 first convolution and no max-pool, for small images
    # Start each residual block as the identity: the last BatchNorm of every block gets weight 0
    # (Goyal et al., 2017, section 5.1; torchvision's ``zero_init_residual``). SimSiam, Barlow
    # Twins, VICReg and UniGrad set it in their reference code; a method's recipe may set it.
    zero_init_residual: bool = False

    def __post_init__(self) -> None:
        _require(self.width >= 8 and self.width % 8 == 0, "width",
                 f"must be a multiple of 8, got {self.width} (narrower channels_last "
                 "convolutions corrupt memory in oneDNN on the CPU)")


@dataclass(frozen=True)
class MomentumConfig:
    """Section ``momentum``: the teacher's EMA coefficient (the scope is per grid run)."""

    tau: float = 0.99  # tau0: 0.99 at CIFAR scale, 0.996 at ImageNet scale (and UniGrad's)
    # where the cosine schedule ends: 1.0 in BYOL (eq. 7); solo-learn's MoCo v2+ ends at 0.999
    final_tau: float = 1.0
    schedule: Literal["cosine", "constant"] = "cosine"

    def __post_init__(self) -> None:
        _require(0.0 <= self.tau <= 1.0, "tau", f"must be in [0, 1], got {self.tau}")
        _require(self.tau <= self.final_tau <= 1.0, "final_tau",
                 f"must be in [tau, 1] = [{self.tau}, 1], got {self.final_tau}")


@dataclass(frozen=True)
class ResidualConfig:
    """Section ``residual``: the residual-momentum loss of the grid runs marked residual."""

    weight: float = 1.0
    level: Literal["projector", "backbone"] = "projector"

    def __post_init__(self) -> None:
        _require(self.weight >= 0, "weight", f"must be >= 0, got {self.weight}")


@dataclass(frozen=True)
class LarsConfig:
    """``pretrain.lars``: LARS (You et al., 2017) as solo-learn implements it
    (solo/utils/lars.py): for each weight, trust = eta * ||w|| / (||g|| + wd * ||w|| + 1e-8);
    with ``clip_lr`` the step's lr is min(trust, lr), else lr * trust; with
    ``exclude_bias_n_norm`` 1-D parameters (biases, norms) get neither adaptation nor weight
    decay. Defaults: solo-learn's CIFAR and ImageNet-100 configs (eta 0.02, clip, exclude)."""

    eta: float = 0.02
    clip_lr: bool = True
    exclude_bias_n_norm: bool = True

    def __post_init__(self) -> None:
        _require(self.eta > 0, "eta", f"must be > 0, got {self.eta}")


@dataclass(frozen=True)
class ParamGroupConfig:
    """One entry of ``pretrain.param_groups``: the parameters ``select`` picks get ``lr_scale``
    times the run's peak lr, following the warm-up and cosine (``schedule: warmup_cosine``) or
    held there from the first step (``constant``: SimSiam's fixed predictor lr, paper section
    4.2 and solo-learn's ``static_lr``). ``weight_decay`` null keeps the run's. A parameter
    goes to the first group that selects it; the rest form the main group."""

    select: Literal["predictor", "projector", "backbone", "bias_and_norm"]
    lr_scale: float = 1.0
    schedule: Literal["warmup_cosine", "constant"] = "warmup_cosine"
    weight_decay: Optional[float] = None

    def __post_init__(self) -> None:
        _require(self.lr_scale > 0, "lr_scale", f"must be > 0, got {self.lr_scale}")
        _require(self.weight_decay is None or self.weight_decay >= 0, "weight_decay",
                 f"must be null or >= 0, got {self.weight_decay}")


@dataclass(frozen=True)
class PretrainConfig:
    """Section ``pretrain``: the optimisation of every grid run; a method's recipe
    (``recipes.<method>.pretrain``) and a grid entry's own ``pretrain`` override it."""

    epochs: int = 20
    optimizer: Literal["sgd", "lars"] = "sgd"
    lr: float = 0.3  # per 256 images; the peak is lr * batch_size / 256
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lars: LarsConfig = LarsConfig()  # read when optimizer is lars
    warmup_epochs: float = 1.0  # may be a fraction of an epoch
    # the method's loss is multiplied by this (Barlow Twins' scale_loss 0.1 in solo-learn's
    # CIFAR config); the residual-momentum term is added after, unscaled
    loss_scale: float = 1.0
    param_groups: tuple[ParamGroupConfig, ...] = ()
    log_every: int = 10  # steps between logged points
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # kNN monitor (monitor.py): images of train and test (class-stratified, seeded) scored at
    # each epoch's end and, if eval_every > 0, every eval_every steps; 0 images: off. The
    # embedded default uses 1000 / 500 every 120 steps: under 5% of its CPU epoch (README).
    monitor_train: int = 2000
    monitor_test: int = 1000
    eval_every: int = 0
    # Collapse finding (health.py): an epoch whose z_std stays below collapse_std / sqrt(d) at
    # every logged step. Healthy outputs have about 1/sqrt(d), collapsed ones 0 (SimSiam, Chen
    # & He, 2021, fig. 2); 0.1 is the z_std of outputs spread over only d/100 directions.
    collapse_std: float = 0.1

    def __post_init__(self) -> None:
        _require(self.loss_scale > 0, "loss_scale", f"must be > 0, got {self.loss_scale}")
        selects = [g.select for g in self.param_groups]
        _require(len(set(selects)) == len(selects), "param_groups",
                 f"selects the same parameters twice: {selects}")
        _require(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        _require(0 <= self.warmup_epochs <= self.epochs, "warmup_epochs",
                 f"must be in 0..epochs ({self.epochs}), got {self.warmup_epochs}")
        _require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        _require(0 <= self.momentum < 1, "momentum", f"must be in [0, 1), got {self.momentum}")
        _require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        _require(self.log_every >= 1, "log_every", f"must be >= 1, got {self.log_every}")
        _require(min(self.monitor_train, self.monitor_test) >= 1
                 or self.monitor_train == self.monitor_test == 0, "monitor_train",
                 f"monitor_train and monitor_test must both be >= 1 (kNN monitor on) or both 0 "
                 f"(off), got {self.monitor_train} and {self.monitor_test}")
        _require(self.eval_every >= 0, "eval_every", f"must be >= 0, got {self.eval_every}")
        _require(0 <= self.collapse_std <= 1, "collapse_std",
                 f"must be in [0, 1] (a fraction of 1/sqrt(d)), got {self.collapse_std}")


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
class RunSpec:
    """One cell of the experiment grid: a method trained with one momentum variant."""

    method: MethodName
    scope: Scope = "none"
    k: int = 1  # stages under EMA, used by scope last_k only
    residual: bool = False  # add the residual-momentum loss (needs a teacher)
    gpus: int = 1  # GPUs of this run: more than one trains it under torchrun (DDP)
    # this run's own overrides of the recipe, applied over recipes.<method> (see Recipe)
    pretrain: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    momentum: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    augment: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    method_settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        _require(self.k >= 1, "k", f"must be >= 1, got {self.k}")
        _require(self.gpus >= 1, "gpus", f"must be >= 1, got {self.gpus}")
        _require(not (self.residual and self.scope == "none"), "residual",
                 "the residual-momentum loss needs a teacher; use a scope other than 'none' "
                 "or set residual: false")

    @property
    def name(self) -> str:
        scope = f"last{self.k}" if self.scope == "last_k" else self.scope
        return f"{self.method}-{scope}" + ("-res" if self.residual else "")


CLAIM_METRICS = ("knn_student", "knn_teacher", "knn_gap", "logistic_student", "logistic_teacher",
                 "gap_backbone", "gap_projector", "step_s", "pretrain_s", "cv")


@dataclass(frozen=True)
class ClaimConfig:
    """One claim of the papers behind the project, judged from paired differences over seeds
    (stats.py). ``kind``: ``greater`` (a > b on ``metric``), ``less`` (a < b), ``equivalent``
    (|a - b| < ``margin``, two one-sided tests), or ``rising`` (run a's ``metric`` per block
    rises with depth through ``blocks``: Spearman's rho per seed, its mean > 0).

    ``a`` and ``b`` name grid runs; ``{method}`` in them expands to every method of ``methods``
    (all when empty) whose runs are in the grid, one verdict each; ``{best}`` in ``b`` is the
    other method whose run has the highest mean ``metric``. A claim whose runs are not in the
    grid is listed as not tested. ``cost``: also report a's step time over b's. Metrics:
    ``knn_student``, ``knn_teacher``, ``knn_gap`` (student - teacher), ``logistic_student``,
    ``logistic_teacher``, ``gap_backbone`` and ``gap_projector`` (training's last logged
    student-teacher gap, 1 - cos), ``step_s``, ``pretrain_s``, ``transfer_<dataset>``, and for
    ``rising`` claims ``cv`` (the per-block coefficient of variation of the gradient norm)."""

    name: str
    source: str
    kind: Literal["greater", "less", "equivalent", "rising"]
    a: str
    b: Optional[str] = None
    metric: str = "knn_student"
    margin: Optional[float] = None
    methods: tuple[MethodName, ...] = ()
    blocks: tuple[str, ...] = ("stem", "stage1", "stage2", "stage3", "stage4")
    cost: bool = False

    def __post_init__(self) -> None:
        _require(self.kind == "rising" or self.b is not None, "b",
                 f"a {self.kind} claim contrasts two runs: give b")
        _require(self.kind != "equivalent" or (self.margin is not None and self.margin > 0),
                 "margin", "an equivalent claim needs a margin > 0 (in the metric's units)")
        _require(self.kind != "rising" or len(self.blocks) >= 3, "blocks",
                 "a rising claim needs at least 3 blocks in order of depth")
        _require("{best}" not in self.a, "a", "{best} may stand in b only")
        _require(self.metric in CLAIM_METRICS or self.metric.startswith("transfer_"), "metric",
                 f"{self.metric!r} is not a metric the report keeps; choose one of "
                 f"{', '.join(CLAIM_METRICS)} or transfer_<dataset>")
        _require((self.kind == "rising") == (self.metric == "cv"), "metric",
                 "a rising claim is judged on cv (per block), and cv only by a rising claim")


# The claims the report judges unless params.yaml lists its own (``claims``), from the papers
# behind the project (METHODS.md, "The four ideas").
CLAIMS: tuple[ClaimConfig, ...] = (
    ClaimConfig("residual momentum narrows the student-teacher gap",
                "Pham et al., 2022 (arXiv 2211.09861)", "less", "{method}-full-res",
                "{method}-full", "gap_projector"),
    ClaimConfig("residual momentum improves the student",
                "Pham et al., 2022 (arXiv 2211.09861): +2.8 CIFAR-100, +0.7 ImageNet over MoCo v3",
                "greater", "{method}-full-res", "{method}-full", "knn_student"),
    ClaimConfig("EMA of the projector improves a momentum-free method",
                "Pham et al., 2022 (arXiv 2208.05744)", "greater", "{method}-projector",
                "{method}-none", "knn_student",
                methods=("simclr", "simsiam", "barlow_twins", "vicreg")),
    ClaimConfig("full EMA improves a momentum-free method",
                "Pham et al., 2022 (arXiv 2208.05744)", "greater", "{method}-full",
                "{method}-none", "knn_student",
                methods=("simclr", "simsiam", "barlow_twins", "vicreg")),
    ClaimConfig("projector-only EMA is equivalent to full EMA, at a lower step cost",
                "Pham et al., 2022 (arXiv 2208.05744)", "equivalent", "{method}-projector",
                "{method}-full", "knn_student", margin=0.01, cost=True),
    ClaimConfig("the final blocks' gradients fluctuate more than the earlier blocks'",
                "Pham et al., 2022 (arXiv 2208.05744)", "rising", "{method}-full", None, "cv"),
    ClaimConfig("a momentum teacher is the factor that matters most",
                "Tao et al., CVPR 2022 (arXiv 2112.05141)", "greater", "{method}-full",
                "{method}-none", "knn_student"),
    ClaimConfig("UniGrad is within a margin of the best other method",
                "Tao et al., CVPR 2022 (arXiv 2112.05141): within ~0.5% with a momentum encoder",
                "equivalent", "unigrad-full", "{best}-full", "knn_student", margin=0.01),
    ClaimConfig("XMoCo's regularisers improve MoCo v2",
                "Seyfi et al., 2022 (arXiv 2206.04676)", "greater", "xmoco-full", "mocov2-full",
                "knn_student"),
)


# The sections a method's recipe (and a grid entry) may override, and the keys in them that
# stay shared by every run: evaluation reads augment.size, and every run's features must come
# from the same backbone. ``method_settings`` overrides methods.<method>.
RECIPE_SECTIONS: tuple[str, ...] = ("pretrain", "momentum", "augment", "model",
                                    "method_settings")
SHARED_KEYS: dict[str, tuple[str, ...]] = {
    "pretrain": ("log_every", "device", "monitor_train", "monitor_test", "eval_every",
                 "collapse_std"),  # telemetry: every run watched alike, so curves compare
    "augment": ("size",),
    "model": ("backbone", "width", "cifar_stem")}


@dataclass(frozen=True)
class Recipe:
    """``recipes.<method>``: one method's published recipe, as overrides of the shared sections
    ``pretrain`` (optimizer, lr, weight decay, LARS, warm-up, loss scale, parameter groups),
    ``momentum`` (tau0, final tau), ``augment`` (the per-view recipe) and
    ``model.zero_init_residual``, and of the method's own settings ``methods.<method>``
    (``method_settings``: heads, temperature, loss options). ``source`` names the reference it
    follows; docs/RECIPES.md gives every value's source. A grid entry may override any of it
    again, with the same keys (``byol-full: {method: byol, scope: full, pretrain: {lr: 0.5}}``).
    """

    source: str = ""
    pretrain: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    momentum: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    augment: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    method_settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class RecipesConfig:
    """Section ``recipes`` (optional): a recipe per method; a method left out trains with the
    shared sections as they are."""

    mocov2: Recipe = Recipe()
    mocov3: Recipe = Recipe()
    byol: Recipe = Recipe()
    simclr: Recipe = Recipe()
    simsiam: Recipe = Recipe()
    barlow_twins: Recipe = Recipe()
    vicreg: Recipe = Recipe()
    unigrad: Recipe = Recipe()
    xmoco: Recipe = Recipe()


@dataclass(frozen=True)
class Params:
    """The whole of ``params.yaml``."""

    seed: int
    data: DataConfig
    augment: AugmentConfig
    loader: LoaderConfig
    model: ModelConfig
    pretrain: PretrainConfig
    momentum: MomentumConfig
    residual: ResidualConfig
    methods: MethodsConfig
    probe: ProbeConfig
    transfer: TransferConfig
    grid: tuple[RunSpec, ...]
    recipes: RecipesConfig = RecipesConfig()
    # Training seeds, a grid dimension: every grid run (and the random-init baseline) trains
    # once per seed, each in its own folder (<run>/s<seed>); ``seed`` above stays the seed of
    # the data (subsets, conversion). Paired differences over these seeds judge the claims.
    seeds: tuple[int, ...] = (0,)
    # the claims the report judges (stats.py, claims.py); left out: CLAIMS above
    claims: tuple[ClaimConfig, ...] = CLAIMS

    def __post_init__(self) -> None:
        _require(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        _require(len(self.seeds) >= 1 and min(self.seeds) >= 0, "seeds",
                 f"must list seeds >= 0, got {list(self.seeds)}")
        _require(len(set(self.seeds)) == len(self.seeds), "seeds",
                 f"lists a seed twice: {list(self.seeds)}")
        _require(len(self.grid) >= 1, "grid", "must list at least one run")
        names = [run.name for run in self.grid]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        _require(not duplicates, "grid", f"lists the same run twice: {', '.join(duplicates)}")


# --- loading ------------------------------------------------------------------------------


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a)
                           for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} numbers"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false",
            str: "a string"}.get(tp, str(tp))


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    wrong = ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: {value!r} is not allowed; allowed values: "
                              + ", ".join(str(v) for v in typing.get_args(tp)))
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, key)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise wrong
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise wrong
        return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is Mapping:  # recipe overrides: checked when resolved against their section
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of that section's keys, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if tp is float:
        # PyYAML reads `1e-4` (no dot) as a string: accept numeric strings for floats.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise wrong from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        if not math.isfinite(value):
            raise wrong
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise wrong
        return value
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # a bug in this module


def _build(cls: type, data: Any, path: str) -> Any:
    where = path or "the params file"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{path}." if path else ""
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown key '{prefix}{key}'{hint}; allowed keys in {where}: "
                              + ", ".join(fields))
    missing = [name for name, f in fields.items()
               if name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required key '{prefix}{missing[0]}'")
    kwargs = {name: _coerce(hints[name], value, f"{prefix}{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (ConfigError, ValueError) as err:  # __post_init__ checks name the key
        raise ConfigError(f"{prefix}{err}") from None


def _grid_runs(grid: Any) -> list:
    """``grid`` maps each run's name to its spec; the name must be the one the spec implies
    (``byol-full``, ``simclr-last2``, ``byol-full-res``), since DVC and Snakemake name stages
    and output folders by it."""
    if not isinstance(grid, Mapping):
        raise ConfigError("grid: expected a mapping from run name to {method, scope, k, "
                          f"residual}}, e.g. 'byol-full: {{method: byol, scope: full}}'; got "
                          f"{grid!r}")
    runs = []
    for name, spec in grid.items():
        run = _build(RunSpec, spec, f"grid.{name}")
        _require(run.name == name, f"grid.{name}",
                 f"the run's name must be '{run.name}' for method {run.method}, scope "
                 f"{run.scope}" + (f", k {run.k}" if run.scope == "last_k" else "")
                 + (", residual" if run.residual else "") + "; rename the key")
        runs.append(spec)
    return runs


def params_from_dict(data: Any) -> Params:
    """Validate a parsed params mapping into :class:`Params`."""
    if isinstance(data, Mapping) and "grid" in data:
        data = {**data, "grid": _grid_runs(data["grid"])}
    params = _build(Params, data, "")
    # every recipe is checked before any work: each run's, and those no run uses yet
    for run in (*params.grid, *(RunSpec(method) for method in METHODS)):
        resolve(params, run)
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file; raises :class:`ConfigError` naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} not found; run from the repository root or pass "
                          "--params PATH (profiles live in params/)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if isinstance(data, Mapping) and isinstance(data.get("recipes"), str):
        data = {**data, "recipes": _recipes_file(path.parent / data["recipes"], path)}
    try:
        return params_from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def _recipes_file(path: Path, params_path: Path) -> Any:
    """``recipes: FILE`` in a params file: the recipes section read from FILE (relative to the
    params file's folder), so profiles at one scale (CIFAR-10 and CIFAR-100) share one."""
    if not path.is_file():
        raise ConfigError(f"{params_path}: recipes: file {path} not found; give a path relative "
                          f"to {params_path.parent}/ (recipe files live in params/recipes/)")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None


def with_seed(params: Params, seed: int | None) -> Params:
    """``params`` for one training seed of the grid (None: as they are): the seed every
    per-run stage draws from (initialisation, augmentations, data order, probe splits)."""
    return params if seed is None else dataclasses.replace(params, seed=seed)


def run_params(params: Params, run: RunSpec) -> dict:
    """The resolved params one grid run depends on, as plain data: every section that shapes its
    training, with only its own method's settings and the residual section only when the run
    uses the residual loss. ``dvc.yaml`` tracks this (``results/plan/<run>.yaml``) instead of
    params.yaml, so a change reruns exactly the runs it touches."""
    resolved = resolve(params, run)
    out = {name: to_dict(getattr(resolved, name))
           for name in ("seed", "data", "augment", "loader", "model", "pretrain", "momentum")}
    if run.residual:
        out["residual"] = to_dict(params.residual)
    out["method"] = to_dict(getattr(resolved.methods, run.method))
    out["run"] = {"name": run.name, **{k: v for k, v in to_dict(run).items()
                                       if k not in RECIPE_SECTIONS}}
    return out


def recipe(params: Params, run: RunSpec) -> dict:
    """The recipe ``run`` trains with, as plain data: every setting a published recipe fixes
    (optimizer, lr, weight decay, LARS, warm-up, epochs, batch, loss scale, parameter groups,
    tau0 and final tau, the augmentations of each view, zero_init_residual, the method's own
    settings) after :func:`resolve`, and the ``source`` its method's recipe names.
    ``python -m momentum_ssl params`` prints it; docs/RECIPES.md is held to it."""
    resolved = resolve(params, run)

    def section(name: str) -> dict:
        skip = SHARED_KEYS.get(name, ())
        if name == "pretrain" and resolved.pretrain.optimizer != "lars":
            skip = (*skip, "lars")  # not read by SGD
        return {k: v for k, v in to_dict(getattr(resolved, name)).items() if k not in skip}

    return {"source": getattr(params.recipes, run.method).source,
            "loader": {"batch_size": resolved.loader.batch_size},
            "pretrain": section("pretrain"), "momentum": section("momentum"),
            "augment": section("augment"),
            "model": {"zero_init_residual": resolved.model.zero_init_residual},
            "method": to_dict(getattr(resolved.methods, run.method))}


def _merge(base: dict, over: Mapping) -> dict:
    """``over`` on ``base``; nested mappings (``pretrain.lars``) merge key by key, anything
    else (lists such as ``param_groups``) is replaced whole."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve(params: Params, run: RunSpec) -> Params:
    """``params`` as ``run`` trains with them: the shared sections, then the recipe of its
    method (``recipes.<method>``), then the grid entry's own overrides. Raises
    :class:`ConfigError` naming the key and where it was set."""
    from .methods import validate_config

    recipe = getattr(params.recipes, run.method)
    sections = {}
    for name in RECIPE_SECTIONS:
        base = (getattr(params.methods, run.method) if name == "method_settings"
                else getattr(params, name))
        cls, data = type(base), to_dict(base)
        layers = [(f"recipes.{run.method}.{name}", getattr(recipe, name)),
                  (f"grid.{run.name}.{name}", getattr(run, name))]
        if not any(over for _, over in layers):
            continue
        for where, over in layers:
            for key in over:
                _require(key not in SHARED_KEYS.get(name, ()), f"{where}.{key}",
                         f"is shared by every run; set it in the {name} section instead")
            data = _merge(data, over)
            built = _build(cls, data, where)  # names the key, and the layer that set it
            if name == "method_settings":
                try:
                    validate_config(built)
                except ValueError as err:
                    raise ConfigError(f"{where}.{err}") from None
        sections[name] = built
    if "method_settings" in sections:
        sections["methods"] = dataclasses.replace(
            params.methods, **{run.method: sections.pop("method_settings")})
    return dataclasses.replace(params, **sections) if sections else params


def params_hash(data: Any) -> str:
    """sha256 of plain data in canonical JSON: the version stamp of features and metrics."""
    import hashlib
    import json

    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def to_dict(obj: Any) -> Any:
    """Plain-data form of a config (tuples as lists), for resolved-params files and hashing."""
    if isinstance(obj, Params):
        out = {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        out["grid"] = {run.name: to_dict(run) for run in obj.grid}
        return out
    if isinstance(obj, RunSpec):  # a grid entry: its own overrides only when it has some
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.name in RECIPE_SECTIONS and not getattr(obj, f.name))}
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {key: to_dict(value) for key, value in obj.items()}
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    return obj


__all__ = ["AugmentConfig", "ConfigError", "DataConfig", "LarsConfig", "LoaderConfig",
           "MethodsConfig", "ClaimConfig", "CLAIMS", "ModelConfig", "MomentumConfig", "ParamGroupConfig", "Params",
           "PretrainConfig", "ProbeConfig", "Recipe", "RecipesConfig", "ResidualConfig",
           "RunSpec", "TransferConfig", "params_hash", "recipe", "resolve", "run_params", "with_seed",
           "DATASETS", "METHODS", "SCOPES", "load_params", "params_from_dict", "to_dict"]
