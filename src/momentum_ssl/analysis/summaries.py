"""What the report's tables and its plots both read: a run's DVCLive logs, the label of a
momentum variant, each metric's summary over seeds, and the unit of a claim's difference.

    steps, values = read_history(results/runs/<run>/s<seed>/dvclive, "train/loss")
    summaries(entry)    # {metric: Summary over seeds} of one entry of the report's collect()
"""

from __future__ import annotations

import math

import csv
from pathlib import Path

from ..config import RunSpec
from ..plumbing.artifacts import corrupt, read_json
from ..plumbing.paths import seed_flag
from .claims import Verdict
from .stats import Summary, summarize


def variant(run: RunSpec) -> str:
    """The momentum variant, and what a named variant varies (``full+tau0.99``)."""
    own = run.name[len(run.base_name):]  # "+tau0.99" for a variant, "" for a plain run
    if run.scope == "last_k":
        return f"last{run.k}" + ("+res" if run.residual else "") + own
    return run.scope + ("+res" if run.residual else "") + own


def read_history(live_dir: Path, metric: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one DVCLive metric, e.g. ``train/loss``."""
    path = live_dir / "plots" / "metrics" / f"{metric}.tsv"
    if not path.is_file():
        return [], []
    name = metric.rsplit("/", 1)[-1]
    try:
        with path.open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        return [int(r["step"]) for r in rows], [float(r[name]) for r in rows]
    except (KeyError, TypeError, ValueError) as err:  # a cut row reads as None or ''
        run, seed = live_dir.parent.parent.name, live_dir.parent.name.removeprefix("s")
        raise corrupt(path, f"is not a complete DVCLive table ({err!r})",
                      f"python -m momentum_ssl pretrain --run {run} --seed {seed}") from None


def live_summary(live_dir: Path, name: str, seed: int | None) -> dict:
    """A run's DVCLive summary, checked as every artifact is; {} when it has none."""
    path = live_dir / "metrics.json"
    return (read_json(path, f"python -m momentum_ssl pretrain --run {name}{seed_flag(seed)}")
            if path.is_file() else {})


SCALARS = ("knn_student", "knn_teacher", "knn_gap", "knn_gap_abs", "logistic_student",
           "logistic_teacher", "linear_student",
           "logistic_gap", "gap_backbone", "gap_projector", "pretrain_s", "step_s")


def summaries(entry: dict) -> dict[str, Summary]:
    """Each scalar metric of one run over its seeds (stats.summarize); a metric missing at a
    seed, or not finite there (a nan gap, say), is left out, and the tables print "—"."""
    seeds = list(entry["seeds"].values())
    names = [m for m in SCALARS if m in seeds[0]]
    names += sorted(m for m in seeds[0] if m.startswith("transfer_"))
    return {m: summarize([s[m] for s in seeds]) for m in names
            if all(m in s and s[m] is not None and math.isfinite(s[m]) for s in seeds)}


def in_points(v: Verdict) -> bool:
    """Whether a claim's differences are accuracies, shown in points."""
    return v.claim.kind != "rising" and v.claim.metric.startswith(("knn", "logistic", "transfer"))


def claim_interval(v: Verdict) -> tuple[float, float, float] | None:
    """(low, high, level): the interval the row's verdict is read on (95% at alpha 0.05, for
    every kind); None without one."""
    if v.test is not None and v.test.low is not None:
        return v.test.low, v.test.high, v.test.level
    return None
