"""Statistics over seeds: summaries with Student-t intervals, paired differences, the tests a
claim is judged by, Holm's adjustment across claims, and the seeds a claim would need. The
report renders what this module computes; nothing here reads files (docs/STATISTICS.md).

    summary = summarize([0.781, 0.776, 0.790])        # mean, std, 95% CI over seeds
    effect = paired({0: 0.79, 1: 0.78}, {0: 0.77, 1: 0.775})   # a - b, same seeds only
    test = direction(effect, "greater")                # p-value and the 95% interval
    test = equivalence(effect, margin=0.01)            # TOST, decided on the 90% interval
    test = noninferiority(effect, margin=0.005)        # one-sided, the 90% interval's lower end
    test = trend({0: [0.1, 0.2, 0.3], 1: [...]})       # Page's L over blocks x seeds
    adjusted = holm([test.p for test in tests])        # decide on these
    decide(test, p_adjusted)                           # supported | contradicted | inconclusive
    seeds_needed(sd, effect=0.01, alpha=0.05 / 9)      # 80% power, non-central t

An effect is a paired difference over seeds: two runs trained with the same seed see the same
data order and the same initialisation draws, so their difference removes that shared noise.
No test is decided on fewer than :data:`MIN_SEEDS` seeds or on differences without spread
(a zero-width interval is an artefact of few seeds, not certainty): those read "no verdict"
with the reason, as do non-finite values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
LEVEL = 0.95
ALPHA = 0.05
POWER = 0.80
MIN_SEEDS = 3  # METHODS.md: one seed is a smoke test; fewer than three give no verdict


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
    """Paired differences a - b over the seeds both runs have, and their summary (95%)."""

    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    summary: Summary

    def interval(self, level: float) -> tuple[float, float] | None:
        """The Student-t interval of the mean difference at ``level``; None for one seed."""
        s = summarize(self.differences, level)
        return None if s.low is None else (s.low, s.high)


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> Effect:
    """a - b per seed, over the seeds present in both (seed -> value mappings)."""
    seeds = tuple(sorted(set(a) & set(b)))
    if not seeds:
        raise ValueError(f"no seed in common: {sorted(a)} and {sorted(b)}")
    differences = tuple(float(a[s]) - float(b[s]) for s in seeds)
    return Effect(seeds, differences, summarize(differences))


def one_sample(values: Mapping[int, float]) -> Effect:
    """Per-seed values tested against zero (a within-run difference, say), as an Effect."""
    return paired(values, {seed: 0.0 for seed in values})


def no_spread(values: Sequence[float]) -> bool:
    """Whether the values are identical up to float noise (max - min <= 1e-9 max(1, max|x|))."""
    return max(values) - min(values) <= 1e-9 * max(1.0, max(abs(float(v)) for v in values))


def no_verdict(values: Sequence[float]) -> str:
    """Why these per-seed differences give no verdict ('' when they may): too few seeds, a
    non-finite value, or no spread."""
    if any(not math.isfinite(float(v)) for v in values):
        return "a value is not finite"
    if len(values) < MIN_SEEDS:
        return f"{len(values)} seed{'s' * (len(values) != 1)}: a verdict needs {MIN_SEEDS}"
    # Differences of accuracies carry float noise (7464/1e4 - 7364/1e4 != 7596/1e4 - 7496/1e4),
    # so exact equality misses a spread that is zero up to rounding; a relative tolerance does not.
    if no_spread(values):
        return "the differences have no spread (identical at every seed)"
    return ""


@dataclass(frozen=True)
class Test:
    """One claim's test on one effect. ``p``: the p-value of the claim's null hypothesis (its
    rejection supports the claim); ``p_against``: that of the opposite null (its rejection
    contradicts the claim); ``low, high`` at ``level``: the interval the decision is read on,
    the one to print. ``reason``: why there is no verdict ('' when there may be one)."""

    kind: str
    p: float | None
    p_against: float | None
    low: float | None
    high: float | None
    level: float
    margin: float | None = None
    reason: str = ""


def _sem(effect: Effect) -> float:
    return effect.summary.std / math.sqrt(effect.summary.n)


def _refused(kind: str, effect: Effect, level: float, margin: float | None) -> Test | None:
    reason = no_verdict(effect.differences)
    if not reason:
        return None
    interval = (effect.interval(level) if all(map(math.isfinite, effect.differences))
                and effect.summary.n > 1 else None)
    low, high = interval or (None, None)
    return Test(kind, None, None, low, high, level, margin, reason)


def direction(effect: Effect, side: str, alpha: float = ALPHA) -> Test:
    """A direction claim (``greater``: a > b, ``less``: a < b): the two-sided paired t-test,
    its p-value split by side, so that p < alpha on the claimed side is the (1 - alpha)
    interval excluding zero there. Decided and printed on the (1 - alpha) interval."""
    from scipy.stats import t

    if side not in ("greater", "less"):
        raise ValueError(f"direction must be 'greater' or 'less', got {side!r}")
    level = 1 - alpha
    refused = _refused(side, effect, level, None)
    if refused:
        return refused
    s, df = effect.summary, effect.summary.n - 1
    stat = s.mean / _sem(effect)
    p_up, p_down = 2 * float(t.sf(stat, df)), 2 * float(t.cdf(stat, df))
    p, against = (p_up, p_down) if side == "greater" else (p_down, p_up)
    low, high = effect.interval(level)
    return Test(side, min(p, 1.0), min(against, 1.0), low, high, level)


def tost(effect: Effect, margin: float) -> tuple[float, float]:
    """The two one-sided tests of |mean difference| < margin: their p-values (H0: mean <=
    -margin, and H0: mean >= margin), each a one-sided Student-t test on the differences."""
    from scipy.stats import t

    if margin <= 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    s = effect.summary
    if s.std is None or s.std == 0:
        raise ValueError("TOST needs at least two differences with spread")
    sem = _sem(effect)
    lower = float(t.sf((s.mean + margin) / sem, s.n - 1))
    upper = float(t.cdf((s.mean - margin) / sem, s.n - 1))
    return lower, upper


def equivalence(effect: Effect, margin: float, alpha: float = ALPHA) -> Test:
    """An equivalence claim |a - b| < margin by two one-sided tests at ``alpha``: p is the
    larger TOST p-value, and p < alpha is the same as the (1 - 2 alpha) interval lying inside
    +-margin, so that is the interval printed (90% at alpha 0.05). Against it: the one-sided
    test that the mean lies beyond one margin (the same interval wholly outside)."""
    from scipy.stats import t

    level = 1 - 2 * alpha
    refused = _refused("equivalent", effect, level, margin)
    if refused:
        return refused
    s, sem = effect.summary, _sem(effect)
    outside = min(float(t.sf((s.mean - margin) / sem, s.n - 1)),
                  float(t.cdf((s.mean + margin) / sem, s.n - 1)))
    low, high = effect.interval(level)
    return Test("equivalent", max(tost(effect, margin)), outside, low, high, level, margin)


def noninferiority(effect: Effect, margin: float, alpha: float = ALPHA) -> Test:
    """A non-inferiority claim ("comparable or preferable"): a - b > -margin, one-sided t-test
    at ``alpha`` (H0: mean <= -margin); p < alpha is the (1 - 2 alpha) interval's lower end
    above -margin, the interval printed. Against it: H0 mean >= -margin rejected (its upper end
    below -margin: inferior)."""
    from scipy.stats import t

    if margin <= 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    level = 1 - 2 * alpha
    refused = _refused("noninferior", effect, level, margin)
    if refused:
        return refused
    s, sem = effect.summary, _sem(effect)
    stat = (s.mean + margin) / sem
    low, high = effect.interval(level)
    return Test("noninferior", float(t.sf(stat, s.n - 1)), float(t.cdf(stat, s.n - 1)),
                low, high, level, margin)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); nan when a side is constant."""
    from scipy.stats import spearmanr

    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"need two sequences of one length >= 2, got {len(x)} and {len(y)}")
    if len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan
    return float(spearmanr(x, y).statistic)


@dataclass(frozen=True)
class Trend:
    """Page's L test that values rise with block depth, per seed (rows) over blocks (columns,
    in order of depth): L, its exact one-sided p-value (rising), that of the reverse order
    (falling), and the mean Spearman rho of value with depth over seeds (descriptive, within
    [-1, 1]; no interval is drawn on it)."""

    seeds: tuple[int, ...]
    statistic: float | None
    p: float | None
    p_against: float | None
    rho: float | None
    reason: str = ""


def trend(values: Mapping[int, Sequence[float]]) -> Trend:
    """Page's (1963) L over a seeds x blocks table: within each seed the blocks are ranked, and
    L = sum_j j * R_j (R_j the rank sum of block j) is large when the ranks rise with depth. The
    exact null distribution (every seed's ranks equally likely to be any permutation) gives
    the p-value (scipy.stats.page_trend_test). Needs :data:`MIN_SEEDS` seeds, finite values and
    a seed whose blocks differ."""
    from scipy.stats import page_trend_test

    seeds = tuple(sorted(values))
    rows = [[float(v) for v in values[s]] for s in seeds]
    if any(not math.isfinite(v) for row in rows for v in row):
        return Trend(seeds, None, None, None, None, "a block's value is not finite")
    if len({len(r) for r in rows}) > 1 or (rows and len(rows[0]) < 3):
        raise ValueError("every seed needs the same blocks, at least 3")
    if len(rows) < MIN_SEEDS:
        return Trend(seeds, None, None, None, None,
                     f"{len(rows)} seed{'s' * (len(rows) != 1)}: a verdict needs {MIN_SEEDS}")
    if all(len(set(r)) == 1 for r in rows):
        return Trend(seeds, None, None, None, None, "every block has the same value at every "
                     "seed: no order to test")
    depth = list(range(len(rows[0])))
    rhos = [spearman(depth, r) for r in rows]
    rhos = [r for r in rhos if math.isfinite(r)]
    rising = page_trend_test(rows, method="exact")
    falling = page_trend_test([r[::-1] for r in rows], method="exact")
    return Trend(seeds, float(rising.statistic), float(rising.pvalue), float(falling.pvalue),
                 sum(rhos) / len(rhos))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's (1979) step-down adjusted p-values, in the input's order: sorted ascending,
    p_(i) * (m - i + 1) for i = 1..m, made non-decreasing, capped at 1. Rejecting where the
    adjusted p < alpha keeps the chance of any false rejection among the m below alpha."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def decide(p: float | None, p_against: float | None, alpha: float = ALPHA) -> str:
    """The verdict from (adjusted) p-values: supported when the claim's null is rejected,
    contradicted when the opposite null is, inconclusive otherwise (or without p-values)."""
    if p is not None and p < alpha:
        return SUPPORTED
    if p_against is not None and p_against < alpha:
        return CONTRADICTED
    return INCONCLUSIVE


def verdict(effect: Effect, side: str, alpha: float = ALPHA) -> str:
    """The verdict of one direction claim on its own (no other claim to adjust for)."""
    test = direction(effect, side, alpha)
    return decide(test.p, test.p_against, alpha)


def _nct_sf(x: float, df: int, shift: float) -> float:
    """P(T > x) for the non-central t; scipy's series can return nan far in a tail, where the
    answer is 0 or 1 to double precision."""
    from scipy.stats import nct

    value = float(nct.sf(x, df, shift))
    if not math.isfinite(value):
        value = 1 - float(nct.cdf(x, df, shift))
    return value if math.isfinite(value) else float(shift > x)


def power(kind: str, n: int, sd: float, effect: float, alpha: float = ALPHA) -> float:
    """The chance that ``n`` paired seeds with difference spread ``sd`` give a "supported" at
    level ``alpha``, from the non-central t (scipy.stats.nct; the normal approximation is far
    too optimistic at few degrees of freedom). ``effect``: for ``greater``/``less`` the true
    difference (two-sided test, as :func:`direction`); for ``equivalent``/``noninferior`` the
    margin, with a true difference of zero (TOST's exact power, :func:`_tost_power`)."""
    from scipy.stats import t

    if n < 2 or sd <= 0 or effect <= 0:
        raise ValueError(f"power needs n >= 2, sd > 0 and effect > 0, got {n}, {sd}, {effect}")
    df, shift = n - 1, effect * math.sqrt(n) / sd
    if kind in ("greater", "less"):
        crit = float(t.ppf(1 - alpha / 2, df))
        return _nct_sf(crit, df, shift) + 1 - _nct_sf(-crit, df, shift)
    crit = float(t.ppf(1 - alpha, df))
    if kind == "noninferior":
        return _nct_sf(crit, df, shift)
    if kind == "equivalent":
        return _tost_power(df, shift, crit)
    raise ValueError(f"no power for a {kind!r} test")


def _tost_power(df: int, shift: float, crit: float) -> float:
    """TOST's exact power at a true difference of zero: both one-sided tests reject when
    |mean| + crit * s / sqrt(n) < margin, so with the sample sd s = sd * sqrt(c / df),
    c ~ chi2(df), independent of the mean, the power is the expectation over c of
    P(|Z| < shift - crit * sqrt(c / df)) (Owen, 1965). The bound
    P(lower test) + P(upper test) - 1 that stood here is loose at few seeds (review D6):
    0.42 against 0.56 at 3 seeds and a 2-sd margin, so it overstated the seeds needed."""
    from scipy.integrate import quad
    from scipy.stats import chi2, norm

    top = df * (shift / crit) ** 2  # beyond this c the two tests cannot both reject
    value, _ = quad(lambda c: chi2.pdf(c, df) * (2 * norm.cdf(shift - crit * math.sqrt(c / df))
                                                 - 1), 0.0, top, limit=200)
    return min(1.0, max(0.0, value))


def seeds_needed(kind: str, sd: float, effect: float, alpha: float = ALPHA,
                 target: float = POWER, most: int = 1000) -> int | None:
    """The fewest seeds (>= :data:`MIN_SEEDS`) whose test reaches ``target`` power at
    ``effect`` (:func:`power`); None beyond ``most``."""
    for n in range(MIN_SEEDS, most + 1):
        if power(kind, n, sd, effect, alpha) >= target:
            return n
    return None


def detectable(kind: str, n: int, sd: float, alpha: float = ALPHA,
               target: float = POWER) -> float:
    """The smallest effect (or margin) that ``n`` seeds detect with ``target`` power."""
    from scipy.optimize import brentq

    high = sd
    while power(kind, n, sd, high, alpha) < target:
        high *= 2
    return float(brentq(lambda e: power(kind, n, sd, e, alpha) - target, 1e-12 * sd, high,
                        xtol=1e-10 * sd))


__all__ = ["ALPHA", "CONTRADICTED", "Effect", "INCONCLUSIVE", "LEVEL", "MIN_SEEDS", "POWER",
           "SUPPORTED", "Summary", "Test", "Trend", "decide", "detectable", "direction",
           "equivalence", "holm", "no_verdict", "noninferiority", "one_sample", "paired",
           "power", "seeds_needed", "spearman", "summarize", "tost", "trend", "verdict"]
