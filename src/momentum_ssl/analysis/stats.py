"""Statistics over seeds: summaries with Student-t intervals, paired differences, and claim
verdicts. The report renders what this module computes; nothing here reads files.

    summary = summarize([0.781, 0.776, 0.790])        # mean, std, 95% CI over seeds
    effect = paired({0: 0.79, 1: 0.78}, {0: 0.77, 1: 0.775})   # a - b, same seeds only
    verdict(effect, direction="greater")               # supported | contradicted | inconclusive
    equivalence(effect, margin=0.01)                   # two one-sided tests (TOST)

An effect is a paired difference over seeds: two runs trained with the same seed see the same
data order and the same initialisation draws, so their difference removes that shared noise.
A direction claim is **supported** when the 95% interval of the mean difference excludes zero
on the claimed side, **contradicted** when it excludes zero on the other side, and
**inconclusive** otherwise. An equivalence claim within +-margin is supported when both
one-sided tests reject at alpha (the 1 - 2 alpha interval lies inside the margin), contradicted
when the 95% interval lies wholly outside it, and inconclusive otherwise. Fewer than two paired
seeds give no interval: inconclusive, whatever the single difference says (METHODS.md: one seed
is a smoke test, not evidence).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
LEVEL = 0.95


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(p, df))


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (n - 1) and the Student-t interval of the mean at
    ``level`` over n values; std and the interval are None for a single value."""

    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None
    level: float = LEVEL

    @property
    def half_width(self) -> float | None:
        return None if self.high is None else (self.high - self.low) / 2

    def as_dict(self) -> dict:
        return {"n": self.n, "mean": self.mean, "std": self.std, "ci_low": self.low,
                "ci_high": self.high, "half_width": self.half_width, "level": self.level}


def summarize(values: Sequence[float], level: float = LEVEL) -> Summary:
    """mean +- t_{(1+level)/2, n-1} * std / sqrt(n), the interval of the mean over seeds."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summarize needs at least one value")
    if any(not math.isfinite(v) for v in values):
        raise ValueError(f"values must be finite, got {values}")
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        return Summary(1, mean, None, None, None, level)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile((1 + level) / 2, n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half, level)


@dataclass(frozen=True)
class Effect:
    """Paired differences a - b over the seeds both runs have, and their summary."""

    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    summary: Summary



def paired(a: Mapping[int, float], b: Mapping[int, float]) -> Effect:
    """a - b per seed, over the seeds present in both (seed -> value mappings)."""
    seeds = tuple(sorted(set(a) & set(b)))
    if not seeds:
        raise ValueError(f"no seed in common: {sorted(a)} and {sorted(b)}")
    differences = tuple(float(a[s]) - float(b[s]) for s in seeds)
    return Effect(seeds, differences, summarize(differences))


def verdict(effect: Effect, direction: str) -> str:
    """A direction claim (``greater``: a > b, ``less``: a < b) from the 95% interval."""
    if direction not in ("greater", "less"):
        raise ValueError(f"direction must be 'greater' or 'less', got {direction!r}")
    s = effect.summary
    if s.low is None:
        return INCONCLUSIVE
    sign = 1 if direction == "greater" else -1
    low, high = sorted((sign * s.low, sign * s.high))
    if low > 0:
        return SUPPORTED
    if high < 0:
        return CONTRADICTED
    return INCONCLUSIVE


def tost(effect: Effect, margin: float, alpha: float = 0.05) -> tuple[float, float]:
    """The two one-sided tests of |mean difference| < margin: their p-values (H0: mean <=
    -margin, and H0: mean >= margin), each a one-sided Student-t test on the differences."""
    from scipy.stats import t

    s = effect.summary
    if s.std is None:
        return 1.0, 1.0
    if margin <= 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    sem = s.std / math.sqrt(s.n)
    if sem == 0:  # identical differences: decided by where they lie
        inside = -margin < s.mean < margin
        return (0.0, 0.0) if inside else (1.0, 1.0)
    lower = float(t.sf((s.mean + margin) / sem, s.n - 1))
    upper = float(t.cdf((s.mean - margin) / sem, s.n - 1))
    return lower, upper


def equivalence(effect: Effect, margin: float, alpha: float = 0.05) -> str:
    """An equivalence claim |a - b| < margin: supported when both one-sided tests reject at
    ``alpha`` (the same as the 1 - 2 alpha interval lying inside +-margin), contradicted when the
    95% interval lies wholly outside +-margin, inconclusive otherwise."""
    if effect.summary.low is None:
        return INCONCLUSIVE
    if max(tost(effect, margin, alpha)) < alpha:
        return SUPPORTED
    s = effect.summary
    if s.low >= margin or s.high <= -margin:
        return CONTRADICTED
    return INCONCLUSIVE


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); nan when a side is constant."""
    from scipy.stats import spearmanr

    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"need two sequences of one length >= 2, got {len(x)} and {len(y)}")
    return float(spearmanr(x, y).statistic)


def one_sample(values: Mapping[int, float]) -> Effect:
    """Per-seed values tested against zero (a rank correlation per seed, say), as an Effect."""
    return paired(values, {seed: 0.0 for seed in values})
