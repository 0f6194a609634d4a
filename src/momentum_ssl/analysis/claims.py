"""Claims judged from seeds: each claim of params.yaml's ``claims`` (config.ClaimConfig) against
the per-seed metrics of the grid's runs.

    values = {"byol-full": {0: {"knn_student": 0.77, ...}, 1: {...}}, ...}   # run -> seed -> metric
    for verdict in judge(params.claims, values):
        print(verdict.label, verdict.status, verdict.effect)

``values[run][seed]`` maps metric names to numbers, and ``cv`` to a mapping of block names to
the gradient norm's coefficient of variation (telemetry.py). The maths is stats.py's; this
module only expands the claims' templates and pairs the seeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..config import METHODS, ClaimConfig
from .stats import Effect, equivalence, one_sample, paired, spearman, summarize, verdict

NOT_TESTED = "not tested"

Values = Mapping[str, Mapping[int, Mapping]]


@dataclass(frozen=True)
class Verdict:
    """One judged claim: the runs it contrasted, the paired effect over their common seeds
    (a - b; Spearman's rho per seed for a rising claim), and the status."""

    claim: ClaimConfig
    a: str
    b: str | None
    status: str
    effect: Effect | None = None
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.a} vs {self.b}" if self.b else self.a


def _method_of(run: str) -> str | None:
    return next((m for m in METHODS if run.startswith(f"{m}-")), None)


def _mean(values: Values, run: str, metric: str) -> float:
    return summarize([seeds[metric] for seeds in values[run].values()]).mean


def expand(claim: ClaimConfig, values: Values) -> list[tuple[str, str | None]]:
    """The (a, b) run pairs a claim stands for in this grid; empty when none is in it."""
    methods = claim.methods or METHODS
    templates = ([{"method": m} for m in methods] if "{method}" in claim.a
                 else [{"method": ""}])
    pairs = []
    for fill in templates:
        a = claim.a.format(**fill)
        if a not in values:
            continue
        if claim.b is None:
            pairs.append((a, None))
            continue
        if "{best}" in claim.b:  # the other method whose run scores highest
            own = _method_of(a)
            candidates = [r for m in METHODS if m != own
                          for r in [claim.b.format(best=m, **fill)] if r in values]
            if not candidates:
                continue
            b = max(candidates, key=lambda r: _mean(values, r, claim.metric))
        else:
            b = claim.b.format(**fill)
        if b in values:
            pairs.append((a, b))
    return pairs


def _per_seed(values: Values, run: str, metric: str) -> dict[int, float]:
    return {seed: float(m[metric]) for seed, m in values[run].items()
            if m.get(metric) is not None}


def _rising(values: Values, run: str, blocks: tuple[str, ...]) -> dict[int, float]:
    """Spearman's rho between depth and each block's value, per seed."""
    rho = {}
    for seed, metrics in values[run].items():
        cv = metrics.get("cv", {})
        if all(b in cv for b in blocks):
            rho[seed] = spearman(range(len(blocks)), [cv[b] for b in blocks])
    return rho


def judge_one(claim: ClaimConfig, values: Values) -> list[Verdict]:
    pairs = expand(claim, values)
    if not pairs:
        runs = claim.a if claim.b is None else f"{claim.a} and {claim.b}"
        which = "no method has" if "{method}" in runs else "the grid lacks"
        return [Verdict(claim, claim.a, claim.b, NOT_TESTED, note=f"{which} {runs} in the grid"
                        if which == "no method has" else f"{which} {runs}")]
    out = []
    for a, b in pairs:
        if claim.kind == "rising":
            rho = _rising(values, a, claim.blocks)
            if not rho:
                out.append(Verdict(claim, a, None, NOT_TESTED,
                                   note=f"{a} logged no {claim.metric} for {list(claim.blocks)}"))
                continue
            effect = one_sample(rho)
            out.append(Verdict(claim, a, None, verdict(effect, "greater"), effect,
                               note="Spearman's rho of the per-block CV with depth"))
            continue
        first, second = _per_seed(values, a, claim.metric), _per_seed(values, b, claim.metric)
        if not set(first) & set(second):
            out.append(Verdict(claim, a, b, NOT_TESTED,
                               note=f"no seed with {claim.metric} for both runs"))
            continue
        effect = paired(first, second)
        status = (equivalence(effect, claim.margin) if claim.kind == "equivalent"
                  else verdict(effect, claim.kind))
        notes = []
        if effect.summary.n < 2:
            notes.append("one seed: no interval")
        if claim.cost:
            cost_a, cost_b = (_per_seed(values, r, "step_s") for r in (a, b))
            common = set(cost_a) & set(cost_b)
            if common:
                ratio = (sum(cost_a[s] for s in common) / sum(cost_b[s] for s in common))
                notes.append(f"step time {a} / {b} = {ratio:.2f}")
        out.append(Verdict(claim, a, b, status, effect, "; ".join(notes)))
    return out


def judge(claims: tuple[ClaimConfig, ...], values: Values) -> list[Verdict]:
    """Every claim's verdicts, in the claims' order."""
    return [v for claim in claims for v in judge_one(claim, values)]


__all__ = ["NOT_TESTED", "Verdict", "expand", "judge", "judge_one"]
