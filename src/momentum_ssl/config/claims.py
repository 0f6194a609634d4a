"""The schema of ``claims`` and the claims the report judges when params.yaml lists none
(analysis/claims.py judges them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from .base import MethodName, _require


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
