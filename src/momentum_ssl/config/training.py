"""The training sections' schemas: ``pretrain`` (with ``lars`` and ``param_groups``), ``compute``,
``momentum`` and ``residual``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from .base import _require
from .data import OMIT_AT_DEFAULT


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
    # adamw: torch's AdamW (betas 0.9, 0.999; ``momentum`` unused), the ViT recipes' (DINO's
    # main_dino.py, MoCo v3's CONFIG.md)
    optimizer: Literal["sgd", "lars", "adamw"] = "sgd"
    lr: float = 0.3  # per 256 images; the peak is lr * batch_size / 256
    # the cosine's end (absolute, not scaled with the batch): DINO's --min_lr 1e-6; 0 elsewhere
    min_lr: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    # null: weight_decay throughout. A value: the weight decay follows a cosine from
    # weight_decay at step 0 to this at the last step (DINO's 0.04 -> 0.4, utils.cosine_scheduler
    # without warm-up), in the parameter groups that take the run's weight decay (not in a
    # group with its own, such as DINO's biases and norms at 0)
    weight_decay_end: Optional[float] = None
    lars: LarsConfig = LarsConfig()  # read when optimizer is lars
    warmup_epochs: float = 1.0  # may be a fraction of an epoch
    # the method's loss is multiplied by this (Barlow Twins' scale_loss 0.1 in solo-learn's
    # CIFAR config); the residual-momentum term is added after, unscaled
    loss_scale: float = 1.0
    param_groups: tuple[ParamGroupConfig, ...] = ()
    # > 0: each parameter's gradient is scaled to norm <= clip_grad before the step, one
    # parameter at a time, as DINO's utils.clip_gradients (3.0 in main_dino.py); 0: off
    clip_grad: float = 0.0
    log_every: int = 10  # steps between logged points
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # CUDA's arithmetic (plumbing/precision.py): bf16 autocast, fp16 autocast with a gradient
    # scaler (GPUs without bf16: V100, T4), or fp32; auto: bf16 where the GPU has it, else
    # fp16. The CPU trains in fp32 (auto or fp32; bf16 and fp16 are refused there). The losses
    # are computed in fp32 either way.
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    # kNN monitor (monitor.py): images of train and test (class-stratified, seeded) scored at
    # each epoch's end and, if eval_every > 0, every eval_every steps; 0 images: off. The
    # embedded default uses 1000 / 500 every 120 steps: under 5% of its CPU epoch (docs/BENCHMARKS.md).
    monitor_train: int = 2000
    monitor_test: int = 1000
    eval_every: int = 0
    # Collapse finding (health.py): an epoch whose z_std stays below collapse_std / sqrt(d) at
    # every logged step. Healthy outputs have about 1/sqrt(d), collapsed ones 0 (SimSiam, Chen
    # & He, 2021, fig. 2); 0.1 is the z_std of outputs spread over only d/100 directions.
    collapse_std: float = 0.1
    # Added after runs were cached: each is left out of a plan while at its default (a run
    # that sets one reruns; the others keep their bytes).
    # The health statistics (health.py: two SVDs per view) every this many steps, a multiple
    # of log_every; null: at every logged step. A GPU profile measures less often
    # (docs/GPU.md): the SVDs and the host synchronisation cost more than a step there.
    health_every: Optional[int] = field(default=None, metadata=OMIT_AT_DEFAULT)
    # checkpoint.pt (the whole training state, to resume) after every this many epochs and
    # after the last; a stopped run resumes from the last one written.
    checkpoint_every: int = field(default=1, metadata=OMIT_AT_DEFAULT)
    # Kept checkpoints: the learner's weights after every this many epochs and after the last,
    # an output of the pretrain stage (results/runs/<run>/s<seed>/epochs/e0005.pt), each scored
    # by the evaluate-epochs stage (kNN against epochs in the report); null: off.
    keep_every: Optional[int] = field(default=None, metadata=OMIT_AT_DEFAULT)

    def __post_init__(self) -> None:
        _require(self.loss_scale > 0, "loss_scale", f"must be > 0, got {self.loss_scale}")
        _require(self.clip_grad >= 0, "clip_grad", f"must be >= 0 (0: off), got {self.clip_grad}")
        selects = [g.select for g in self.param_groups]
        _require(len(set(selects)) == len(selects), "param_groups",
                 f"selects the same parameters twice: {selects}")
        _require(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        _require(0 <= self.warmup_epochs <= self.epochs, "warmup_epochs",
                 f"must be in 0..epochs ({self.epochs}), got {self.warmup_epochs}")
        _require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        _require(self.min_lr >= 0, "min_lr", f"must be >= 0, got {self.min_lr}")
        _require(self.weight_decay_end is None or self.weight_decay_end >= 0,
                 "weight_decay_end", f"must be null or >= 0, got {self.weight_decay_end}")
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
        _require(self.health_every is None or (self.health_every >= 1
                                                and self.health_every % self.log_every == 0),
                 "health_every", f"must be null (every logged step) or a multiple of log_every "
                 f"({self.log_every}), got {self.health_every}")
        _require(self.checkpoint_every >= 1, "checkpoint_every",
                 f"must be >= 1 (epochs), got {self.checkpoint_every}")
        _require(self.keep_every is None or self.keep_every >= 1, "keep_every",
                 f"must be null (off) or >= 1 (epochs), got {self.keep_every}")


@dataclass(frozen=True)
class ClusterConfig:
    """Section ``cluster`` (optional): the machines runs train on. A grid run with more ``gpus``
    than ``gpus_per_node`` spans ``gpus / gpus_per_node`` nodes of a SLURM job, one torchrun
    agent a node (plumbing/launch.py, docs/CLUSTER.md). Which nodes hold a run's processes does
    not change what it computes (its world size is its ``gpus``), so no plan holds the section,
    and it is left out of the params' plain form while unset."""

    # GPUs of one node of the cluster; null: every run on one node, whatever its gpus
    gpus_per_node: Optional[int] = None

    def __post_init__(self) -> None:
        _require(self.gpus_per_node is None or self.gpus_per_node >= 1, "gpus_per_node",
                 f"must be null or >= 1, got {self.gpus_per_node}")


@dataclass(frozen=True)
class ComputeConfig:
    """Section ``compute``: how the kernels run (compute.py, docs/REPRODUCIBILITY.md). Every
    value changes a run's bits, so each run's plan holds the section."""

    # CPU kernels pinned to AVX2 in every library (ATen, oneDNN, MKL's strict CNR branch, OpenBLAS,
    # numpy, numba): the same bits on any x86-64 CPU since 2013. false: each library takes the
    # machine's widest kernels (faster on AVX-512; bench/portable.py measures it).
    portable: bool = True
    # intra-op threads of torch and OpenMP; a reduction split over more threads sums in another
    # order. null: torch's default (one per core), so results then depend on the core count.
    threads: Optional[int] = None
    # CUDA only: deterministic algorithms, cuDNN without benchmark, cuBLAS' fixed workspace. Two
    # runs of one seed on the same GPU type then give the same weights, at a cost the GPU check
    # measures (bench/gpu_check.sh).
    deterministic: bool = False

    def __post_init__(self) -> None:
        _require(self.threads is None or self.threads >= 1, "threads",
                 f"must be null or >= 1, got {self.threads}")
