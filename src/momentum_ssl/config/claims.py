"""The schema of ``claims`` and the claims the report judges when params.yaml lists none
(analysis/claims.py judges them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from .base import ConfigError, MethodName, _build, _require


CLAIM_METRICS = ("knn_student", "knn_teacher", "knn_gap", "knn_gap_abs", "logistic_student",
                 "logistic_teacher",
                 "logistic_gap", "transfer", "gap_backbone", "gap_projector", "step_s",
                 "pretrain_s", "cv", "rel_change")


BLOCK_METRICS = ("cv", "rel_change")  # per block (telemetry.py); other claims average `blocks`


ACCURACY_PREFIXES = ("knn", "logistic", "transfer")  # differences in points; 1 point pre-declared


@dataclass(frozen=True)
class ClaimConfig:
    """One claim of the papers behind the project, judged from paired differences over seeds
    (stats.py, docs/STATISTICS.md). ``kind``:

    - ``greater`` / ``less``: a > b (a < b) on ``metric``; without ``b``, a's metric > 0 (< 0);
    - ``equivalent``: |a - b| < ``margin`` (two one-sided tests);
    - ``noninferior``: a - b > -``margin`` ("comparable or preferable");
    - ``rising``: run a's per-block ``metric`` rises with depth through ``blocks``
      (a t on each seed's mean of the final blocks minus that of the earlier ones);
    - ``dominant``: the mean effect of a over b across methods exceeds the largest difference
      between the methods' a runs (``{method}`` in both).

    ``a`` and ``b`` name grid runs; ``{method}`` in them expands to every method of ``methods``
    (all when empty) whose runs are in the grid, one row each, the first listed method's the
    claim's primary row; ``{other}`` in ``b`` expands to every other method, and the claim holds
    only if it holds against each (its primary row is the weakest of them); ``{k}`` matches any
    ``last_k`` run. ``effect``: the effect declared before the runs, in the metric's units, at
    which the seeds needed for 80% power are stated (default: the margin, or 1 point for
    accuracies). ``cost``: also note a's step time over b's. Metrics: ``knn_student``,
    ``knn_teacher``, ``knn_gap`` and ``logistic_gap`` (student - teacher), ``knn_gap_abs`` (its
    size, whichever leads), ``logistic_student``,
    ``logistic_teacher``, ``transfer`` (the mean over transfer targets), ``transfer_<dataset>``,
    ``gap_backbone`` and ``gap_projector`` (training's last logged student-teacher gap,
    1 - cos), ``step_s``, ``pretrain_s``, and per block ``cv`` (coefficient of variation of the
    gradient norm) and ``rel_change`` (its mean relative step-to-step change)."""

    name: str
    source: str
    kind: Literal["greater", "less", "equivalent", "noninferior", "rising", "dominant"]
    a: str
    b: Optional[str] = None
    metric: str = "knn_student"
    margin: Optional[float] = None
    effect: Optional[float] = None
    methods: tuple[MethodName, ...] = ()
    blocks: tuple[str, ...] = ("stem", "stage1", "stage2", "stage3", "stage4", "projector")
    cost: bool = False

    def __post_init__(self) -> None:
        _require(self.kind in ("greater", "less", "rising") or self.b is not None, "b",
                 f"a {self.kind} claim contrasts two runs: give b")
        _require(self.kind != "rising" or self.b is None, "b",
                 "a rising claim reads one run's blocks: leave b out")
        _require(self.kind not in ("equivalent", "noninferior")
                 or (self.margin is not None and self.margin > 0),
                 "margin", f"an {self.kind} claim needs a margin > 0 (in the metric's units)")
        _require(self.effect is None or self.effect > 0, "effect",
                 f"must be > 0 (the effect declared in advance), got {self.effect}")
        _require(self.kind != "rising" or len(self.blocks) >= 3, "blocks",
                 "a rising claim needs at least 3 blocks in order of depth")
        _require(len(self.blocks) >= 1, "blocks", "name at least one block")
        _require("{best}" not in f"{self.a}{self.b}", "b",
                 "{best} is gone: picking the top run on the seeds it is tested on inflates it; "
                 "use {other} (the claim must hold against every other method)")
        _require("{other}" not in self.a, "a", "{other} may stand in b only")
        _require(self.kind != "dominant" or ("{method}" in self.a and "{method}" in (self.b or "")),
                 "a", "a dominant claim compares methods: use {method} in both a and b")
        _require(self.metric in CLAIM_METRICS or self.metric.startswith("transfer_"), "metric",
                 f"{self.metric!r} is not a metric the report keeps; choose one of "
                 f"{', '.join(CLAIM_METRICS)} or transfer_<dataset>")
        _require(self.kind != "rising" or self.metric in BLOCK_METRICS, "metric",
                 f"a rising claim is judged per block: {' or '.join(BLOCK_METRICS)}")

    @property
    def planned_effect(self) -> float | None:
        """The effect the seeds needed are stated at: ``effect``, else the margin, else 1 point
        for an accuracy; None when nothing was declared."""
        if self.effect is not None:
            return self.effect
        if self.margin is not None:
            return self.margin
        return 0.01 if self.metric.startswith(ACCURACY_PREFIXES) else None


CLAIMS_FILE = Path(__file__).with_name("claims.yaml")


PAPERS = "papers"


def _claims(data: Any, where: str) -> tuple[ClaimConfig, ...]:
    if not isinstance(data, list):
        raise ConfigError(f"{where}: expected a list of claims, got {data!r}")
    return tuple(_build(ClaimConfig, item, f"claims[{i}]") for i, item in enumerate(data))


def _claims_file(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:  # a broken install, not a user's mistake
        raise ConfigError(f"{path}: the papers' claims cannot be read ({err}); reinstall "
                          "momentum_ssl") from None



# The claims the report judges unless params.yaml lists its own (``claims``), from the papers
# behind the project (METHODS.md, "The four ideas").
CLAIMS: tuple[ClaimConfig, ...] = _claims(_claims_file(CLAIMS_FILE), str(CLAIMS_FILE))
