"""Collapse and health telemetry: how spread out a batch's representations are.

    health = HealthMonitor.attach(learner, collapse_std=0.1)  # a forward hook on the projector
    loss, logs = learner(x1, x2)      # the hook keeps each view's (y, z), detached: no copy
    health.measure()                  # {"z_std": ..., "erank_y": ..., "erank_z": ...}, last step
    health.end_epoch("byol-full", 1)  # prints a line if z_std stayed low all epoch

Each statistic is computed per view and averaged over the step's two views, only when
:meth:`HealthMonitor.measure` is called (every ``log_every`` steps, or ``pretrain.health_every``
when set: a GPU profile measures less often, docs/GPU.md); the loss never sees it.

- ``z_std`` (:func:`output_std`): the standard deviation over the batch of the L2-normalised
  projector output, per dimension, averaged over the d dimensions (SimSiam, Chen & He, 2021,
  sec. 4.1 and fig. 2). A collapsed output (every image mapped to one vector) gives 0; unit
  vectors spread isotropically over the sphere give about 1/sqrt(d). Unit rows make the
  per-dimension variances sum to 1 - ||mean||^2 <= 1, so z_std <= 1/sqrt(d) always.
- ``erank_y``, ``erank_z`` (:func:`effective_rank`): the effective rank (Roy & Vetterli, 2007)
  of the batch's pooled backbone features y (N, D) and projections z (N, P): exp of the Shannon
  entropy of the singular values normalised to sum to 1, without centring, as RankMe (Garrido et
  al., 2023) computes it. It is 1 for a batch of one repeated vector and min(N, D) when every
  direction carries the same energy; it catches dimensional collapse, which z_std can miss.
  A matrix with a side longer than :data:`GRAM_ABOVE` (DINO's N x 65,536 prototype logits) has
  its singular values taken from its smaller Gram matrix (:func:`singular_values`): one matmul
  and an eigendecomposition of min(N, D)^2, in float64, instead of an SVD of N x 65,536.

**Collapse finding.** An epoch is collapsed when z_std stayed below ``collapse_std / sqrt(d)``
at every logged step of it (:func:`collapsed_epochs`; an epoch without a logged step is not
judged). For outputs spread evenly over k of d orthogonal directions, z_std * sqrt(d) =
sqrt(k / d), so the default 0.1 flags outputs concentrated on fewer than d / 100 directions'
worth of spread: SimSiam's collapsed run without stop-gradient (fig. 2), not a narrow but
working one. The training loop prints the finding at the epoch's end and the report lists it;
it is a finding, not a failure.
"""

from __future__ import annotations

import collections
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

STATS = ("z_std", "erank_y", "erank_z")


def output_std(z: Tensor) -> Tensor:
    """(N, P) -> mean over the P dimensions of the population std over the N rows of
    z / ||z||_2 (a 0-d tensor)."""
    if z.ndim != 2:
        raise ValueError(f"z must be (N, P), got {tuple(z.shape)}")
    return F.normalize(z.float(), dim=1).std(dim=0, correction=0).mean()


# Sides up to this take torch's SVD as they always did (every CPU profile's projections: at
# most 1,024 prototypes); a longer one, the Gram matrix's eigenvalues.
GRAM_ABOVE = 8192


def singular_values(x: Tensor) -> Tensor:
    """(N, D) -> the min(N, D) singular values. Above :data:`GRAM_ABOVE` on a side, the square
    roots of the eigenvalues of x x^T (or x^T x, the smaller), in float64: the same values up to
    rounding, at the cost of one (N, D) x (D, N) product (DINO's N x 65,536 logits)."""
    if max(x.shape) <= GRAM_ABOVE:
        return torch.linalg.svdvals(x.float())
    x = x.double()
    gram = x @ x.T if x.shape[0] <= x.shape[1] else x.T @ x
    return torch.linalg.eigvalsh(gram).clamp_min(0).sqrt().flip(0).float()


def effective_rank(x: Tensor, eps: float = 1e-12) -> Tensor:
    """(N, D) -> exp(-sum_k p_k log p_k), p = singular values / their sum (a 0-d tensor);
    0 log 0 counts as 0, so an all-zero batch gives 1."""
    if x.ndim != 2:
        raise ValueError(f"x must be (N, D), got {tuple(x.shape)}")
    s = singular_values(x)
    p = s / s.sum().clamp_min(eps)
    return torch.exp(-(p * torch.log(p.clamp_min(eps))).sum())


def stayed_below(values: list[float], threshold: float) -> bool:
    """The collapse rule for one epoch's logged values: there is one, and all are below."""
    return bool(values) and all(v < threshold for v in values)


def collapsed_epochs(steps: list[int], values: list[float], steps_per_epoch: int,
                     threshold: float) -> list[int]:
    """The epochs (1-based) whose logged values (at training steps ``steps``) all stayed below
    ``threshold``."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    per_epoch: dict[int, list[float]] = collections.defaultdict(list)
    for step, value in zip(steps, values):
        per_epoch[step // steps_per_epoch + 1].append(value)
    return [epoch for epoch, vals in sorted(per_epoch.items()) if stayed_below(vals, threshold)]


def collapse_threshold(collapse_std: float, dim: int) -> float:
    """``collapse_std`` as a fraction of 1/sqrt(d), the z_std of a healthy d-dim output."""
    return collapse_std / math.sqrt(dim)


class HealthMonitor:
    """Keeps the last step's (y, z) of each view through a forward hook on the student's
    projector (the learner runs it once per view; the teacher's projector is a separate copy)
    and turns them into the statistics above on request."""

    def __init__(self, projector: nn.Module, collapse_std: float):
        self.collapse_std = collapse_std
        self.dim: int | None = None
        self._views: collections.deque = collections.deque(maxlen=2)
        self._epoch: list[float] = []  # z_std at the logged steps of the current epoch
        self._handle = projector.register_forward_hook(self._hook)

    @classmethod
    def attach(cls, learner: nn.Module, collapse_std: float) -> "HealthMonitor":
        return cls(learner.projector, collapse_std)

    def _hook(self, module, inputs, output) -> None:
        self._views.append((inputs[0].detach(), output.detach()))

    @property
    def threshold(self) -> float | None:
        return None if self.dim is None else collapse_threshold(self.collapse_std, self.dim)

    def measure(self) -> dict[str, float]:
        """The statistics of the last step's views (one host synchronisation), recorded for
        the epoch's collapse check; {} before any forward."""
        if not self._views:
            return {}
        per_view = [torch.stack([output_std(z), effective_rank(y), effective_rank(z)])
                    for y, z in self._views]
        values = torch.stack(per_view).mean(0).tolist()
        self.dim = int(self._views[-1][1].shape[1])
        self._epoch.append(values[0])
        return dict(zip(STATS, values))

    def end_epoch(self, name: str, epoch: int) -> str | None:
        """Close epoch ``epoch`` (1-based): print and return the collapse finding, if any."""
        values, self._epoch = self._epoch, []
        if self.threshold is None or not stayed_below(values, self.threshold):
            return None
        line = (f"{name}: collapse in epoch {epoch}: the std of the L2-normalised projector "
                f"output stayed below {self.threshold:.4g} (pretrain.collapse_std "
                f"{self.collapse_std} / sqrt({self.dim})) at all {len(values)} logged steps "
                f"(last {values[-1]:.3g}; healthy is about {1 / math.sqrt(self.dim):.3g})")
        print(line, flush=True)
        return line

    def summarize(self, live) -> None:
        """The threshold the report judges this run's ``health/z_std`` log by."""
        if self.threshold is not None:
            live.log_metric("health/collapse_threshold", round(self.threshold, 8), plot=False)

    def remove(self) -> None:
        self._handle.remove()
        self._views.clear()
