"""Statistics over seeds: summaries with Student-t intervals, paired differences, the tests a
claim is judged by, Holm's adjustment across claims, and the seeds a claim would need. The
report renders what this module computes; nothing here reads files (docs/STATISTICS.md).

    summary = summarize([0.781, 0.776, 0.790])        # mean, std, 95% CI over seeds
    effect = paired({0: 0.79, 1: 0.78}, {0: 0.77, 1: 0.775})   # a - b, same seeds only
    test = direction(effect, "greater")                # p-value and the 95% interval
    test = equivalence(effect, margin=0.01)            # TOST, decided on the 90% interval
    test = noninferiority(effect, margin=0.005)        # one-sided, the 90% interval's lower end
    rise = depth_contrast({0: [0.1, 0.2, 0.3], 1: [...]})  # final blocks - earlier, per seed
    test = intersection([test_1, test_2])              # every one must hold (every pair, ...)
    adjusted = holm([test.p for test in tests])        # decide on these
    decide(test, p_adjusted)                           # supported | contradicted | inconclusive
    seeds_needed("greater", sd, effect=0.01, alpha=0.05 / 9)  # 80% power, non-central t
    Rule.from_rows("noninferior", effects, 0.05 / 18).seeds_needed(0.005)  # all rows, simulated

An effect is a paired difference over seeds: two runs trained with the same seed see the same
data order and the same initialisation draws, so their difference removes that shared noise.
No test is decided on fewer than :data:`MIN_SEEDS` seeds or on differences without spread
(a zero-width interval is an artefact of few seeds, not certainty): those read "no verdict"
with the reason, as do non-finite values. Every t procedure here assumes the per-seed
differences roughly normal; :func:`outlier` flags a seed that makes that doubtful.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
LEVEL = 0.95
ALPHA = 0.05
POWER = 0.80
MIN_SEEDS = 3  # METHODS.md: one seed is a smoke test; fewer than three give no verdict


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom (scipy.stats.t.ppf's own
    function, without its argument checks: they cost 0.1 ms a call, and a simulated test
    judges thousands of rows)."""
    from scipy.special import stdtrit

    return float(stdtrit(df, p))


def t_cdf(x: float, df: int) -> float:
    """P(T <= x) for Student's t (scipy.stats.t.cdf's own function)."""
    from scipy.special import stdtr

    return float(stdtr(df, x))


def t_sf(x: float, df: int) -> float:
    """P(T > x) for Student's t (scipy.stats.t.sf's own function)."""
    return t_cdf(-x, df)


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

    if side not in ("greater", "less"):
        raise ValueError(f"direction must be 'greater' or 'less', got {side!r}")
    level = 1 - alpha
    refused = _refused(side, effect, level, None)
    if refused:
        return refused
    s, df = effect.summary, effect.summary.n - 1
    stat = s.mean / _sem(effect)
    p_up, p_down = 2 * t_sf(stat, df), 2 * t_cdf(stat, df)
    p, against = (p_up, p_down) if side == "greater" else (p_down, p_up)
    low, high = effect.interval(level)
    return Test(side, min(p, 1.0), min(against, 1.0), low, high, level)


def tost(effect: Effect, margin: float) -> tuple[float, float]:
    """The two one-sided tests of |mean difference| < margin: their p-values (H0: mean <=
    -margin, and H0: mean >= margin), each a one-sided Student-t test on the differences."""

    if margin <= 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    s = effect.summary
    if s.std is None or s.std == 0:
        raise ValueError("TOST needs at least two differences with spread")
    sem = _sem(effect)
    lower = t_sf((s.mean + margin) / sem, s.n - 1)
    upper = t_cdf((s.mean - margin) / sem, s.n - 1)
    return lower, upper


def equivalence(effect: Effect, margin: float, alpha: float = ALPHA) -> Test:
    """An equivalence claim |a - b| < margin by two one-sided tests at ``alpha``: p is the
    larger TOST p-value, and p < alpha is the same as the (1 - 2 alpha) interval lying inside
    +-margin, so that is the interval printed (90% at alpha 0.05). Against it: the one-sided
    test that the mean lies beyond one margin (the same interval wholly outside)."""

    level = 1 - 2 * alpha
    refused = _refused("equivalent", effect, level, margin)
    if refused:
        return refused
    s, sem = effect.summary, _sem(effect)
    outside = min(t_sf((s.mean - margin) / sem, s.n - 1),
                  t_cdf((s.mean + margin) / sem, s.n - 1))
    low, high = effect.interval(level)
    return Test("equivalent", max(tost(effect, margin)), outside, low, high, level, margin)


def noninferiority(effect: Effect, margin: float, alpha: float = ALPHA) -> Test:
    """A non-inferiority claim ("comparable or preferable"): a - b > -margin, one-sided t-test
    at ``alpha`` (H0: mean <= -margin); p < alpha is the (1 - 2 alpha) interval's lower end
    above -margin, the interval printed. Against it: H0 mean >= -margin rejected (its upper end
    below -margin: inferior)."""

    if margin <= 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    level = 1 - 2 * alpha
    refused = _refused("noninferior", effect, level, margin)
    if refused:
        return refused
    s, sem = effect.summary, _sem(effect)
    stat = (s.mean + margin) / sem
    low, high = effect.interval(level)
    return Test("noninferior", t_sf(stat, s.n - 1), t_cdf(stat, s.n - 1),
                low, high, level, margin)


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n, ties given their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks, i = [0.0] * len(values), 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's on average ranks (ties share theirs, as
    scipy.stats.spearmanr); nan when a side is constant."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"need two sequences of one length >= 2, got {len(x)} and {len(y)}")
    if len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan
    rx, ry = _ranks(list(x)), _ranks(list(y))
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = math.fsum((a - mx) * (b - my) for a, b in zip(rx, ry))
    return cov / math.sqrt(math.fsum((a - mx) ** 2 for a in rx)
                           * math.fsum((b - my) ** 2 for b in ry))


def final_blocks(count: int) -> int:
    """How many of ``count`` blocks (in order of depth) are the final ones a rising claim
    contrasts with the earlier ones: the deeper half (3 of 6: stage3, stage4, projector)."""
    if count < 2:
        raise ValueError(f"a depth contrast needs at least 2 blocks, got {count}")
    return count // 2


def depth_contrast(values: Mapping[int, Sequence[float]]) -> Effect:
    """Per seed, the mean of the final blocks' values minus the mean of the earlier blocks'
    (:func:`final_blocks`), as an Effect to test against zero with a one-sample t. A linear
    combination of one seed's blocks, so the seeds' contrasts are independent and, for normal
    block values, normal whatever each block's spread: the t test holds where Page's L, which
    assumes the blocks exchangeable within a seed, erred (review 38: block sds 10, 1, 1, 1, 1,
    10 at 8 seeds gave 0.05 per side against 0.025)."""
    rows = {s: [float(v) for v in values[s]] for s in sorted(values)}
    if len({len(r) for r in rows.values()}) > 1:
        raise ValueError("every seed needs the same blocks")
    final = final_blocks(len(next(iter(rows.values()))))
    contrast = {s: math.fsum(r[-final:]) / final - math.fsum(r[:-final]) / (len(r) - final)
                for s, r in rows.items()}
    return one_sample(contrast)


def mean_rho(values: Mapping[int, Sequence[float]]) -> float | None:
    """The mean over seeds of Spearman's rho of value with depth: a description within
    [-1, 1] (no interval is drawn on it); None when no seed's blocks differ."""
    rhos = [spearman(range(len(r)), list(r)) for r in values.values()]
    rhos = [r for r in rhos if math.isfinite(r)]
    return sum(rhos) / len(rhos) if rhos else None


def intersection(tests: Sequence[Test]) -> Test:
    """Several tests that must all hold for a claim (an intersection-union test, Berger 1982):
    the claim's p is the largest of theirs, with no adjustment (each must reject at alpha); the
    opposite p is the smallest opposite p times their number (Bonferroni: any one failing
    contradicts). The interval printed is the weakest test's (largest p)."""
    if not tests:
        raise ValueError("intersection needs at least one test")
    if any(t.p is None for t in tests):
        return next(t for t in tests if t.p is None)
    worst = max(tests, key=lambda t: t.p)
    against = min(1.0, len(tests) * min(t.p_against for t in tests))
    return Test(worst.kind, worst.p, against, worst.low, worst.high, worst.level, worst.margin)


def outlier(values: Sequence[float], alpha: float = ALPHA) -> int | None:
    """The index of the value Grubbs' (1969) two-sided test at ``alpha`` finds an outlier among
    ``values`` (the largest |x - mean| / sd beyond its critical value), else None; needs 3
    values with spread. The t procedures assume normal differences; one outlying seed (a
    skewed law) can double their one-sided error at 3 and 8 seeds (review 38, item 7)."""

    n = len(values)
    if n < 3 or no_spread(values):
        return None
    s = summarize(values)
    index = max(range(n), key=lambda i: abs(values[i] - s.mean))
    g = abs(values[index] - s.mean) / s.std
    q = t_quantile(1 - alpha / (2 * n), n - 2) if n > 2 else math.inf
    critical = (n - 1) / math.sqrt(n) * math.sqrt(q * q / (n - 2 + q * q))
    return index if g > critical else None


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

    if n < 2 or sd <= 0 or effect <= 0:
        raise ValueError(f"power needs n >= 2, sd > 0 and effect > 0, got {n}, {sd}, {effect}")
    df, shift = n - 1, effect * math.sqrt(n) / sd
    if kind in ("greater", "less"):
        crit = t_quantile(1 - alpha / 2, df)
        return _nct_sf(crit, df, shift) + 1 - _nct_sf(-crit, df, shift)
    crit = t_quantile(1 - alpha, df)
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

    top = df * (shift / crit) ** 2  # beyond this c the two tests cannot both reject
    log_norm = (df / 2) * math.log(2) + math.lgamma(df / 2)

    def integrand(c: float) -> float:  # chi2(df) density x P(|Z| < ...), in plain math: the
        if c <= 0:                     # scipy.stats calls cost 1 ms a point, 40 s a report
            return 0.0
        density = math.exp((df / 2 - 1) * math.log(c) - c / 2 - log_norm)
        return density * math.erf((shift - crit * math.sqrt(c / df)) / math.sqrt(2))

    # at many seeds the chi-square peak (near c = df, sd sqrt(2 df)) is a sliver of [0, top]
    # that quad's nodes miss (600 seeds read 3e-13 for a power of 1): split at it and at its
    # sides 8 sd away (split at df alone, 5,000 seeds still missed the right half)
    spread = 8 * math.sqrt(2 * df)
    points = [c for c in (df - spread, df, df + spread) if 0 < c < top] or None
    value, _ = quad(integrand, 0.0, top, limit=200, points=points)
    return min(1.0, max(0.0, value))


def sd_upper(sd: float, n: int, confidence: float = POWER) -> float:
    """The one-sided ``confidence`` upper bound of a standard deviation estimated as ``sd``
    from ``n`` values: sd * sqrt((n - 1) / chi2_{1 - confidence, n - 1}). At 3 seeds the 80%
    bound is 2.1 sd, so a plan from the observed sd (a plug-in) can fall far short."""
    from scipy.stats import chi2

    return sd * math.sqrt((n - 1) / float(chi2.ppf(1 - confidence, n - 1)))


def _fewest(reaches, most: int) -> int | None:
    """The fewest n in [MIN_SEEDS, most] with ``reaches(n)``, by bisection: a doubling search
    for an n that reaches, then halving between it and the last that does not. Right when
    ``reaches`` switches once, from False to True, as n grows: power >= target does, though
    power itself need not rise with n (TOST's at a 0.2-sd margin falls from 3 seeds to 8,
    far below any target). None when ``most`` does not reach."""
    if reaches(MIN_SEEDS):
        return MIN_SEEDS
    low = high = MIN_SEEDS
    while True:  # not reaches(high)
        if high >= most:
            return None
        low, high = high, min(most, 2 * high)
        if reaches(high):
            break
    while high - low > 1:  # reaches(high), not reaches(low)
        mid = (low + high) // 2
        low, high = (low, mid) if reaches(mid) else (mid, high)
    return high


def seeds_needed(kind: str, sd: float, effect: float, alpha: float = ALPHA,
                 target: float = POWER, most: int = 1000) -> int | None:
    """The fewest seeds (>= :data:`MIN_SEEDS`) whose test reaches ``target`` power at
    ``effect`` (:func:`power`), found by bisection; None beyond ``most``."""
    return _fewest(lambda n: power(kind, n, sd, effect, alpha) >= target, most)


def detectable(kind: str, n: int, sd: float, alpha: float = ALPHA,
               target: float = POWER) -> float:
    """The smallest effect (or margin) that ``n`` seeds detect with ``target`` power."""
    from scipy.optimize import brentq

    high = sd
    while power(kind, n, sd, high, alpha) < target:
        high *= 2
    return float(brentq(lambda e: power(kind, n, sd, e, alpha) - target, 1e-12 * sd, high,
                        xtol=1e-10 * sd))


def image_half_width(per_seed: Sequence[Sequence[float]], level: float = LEVEL) -> float:
    """The test set's own sampling error in a mean paired difference of accuracies over seeds,
    as the half-width of the normal interval at ``level`` from the paired bootstrap's exact
    standard error, less the seeds' share: ``per_seed[s][i]`` is image i's correct_a -
    correct_b at seed s (every seed scores the same images), e_i their mean over S seeds, and
    the paired bootstrap over test images (resample images, keep each image's seeds together)
    has variance mean((e - mean e)^2) / N for the mean of e, computed here exactly instead of
    drawn. That spread of e over images holds the seeds' flip noise / S too, which the seeds'
    t interval already counts, so with S >= 2 the mean over images of each image's sample
    variance over seeds, divided by S, is taken off (floored at 0): two runs with the same
    chance of being right on each image (360 images, 8 seeds) printed +-1.44 points where the
    images' own share is 0. The seeds' t interval is conditional on the fixed test set and
    leaves this out."""
    from scipy.stats import norm

    rows = [list(map(float, r)) for r in per_seed]
    if not rows or len({len(r) for r in rows}) > 1 or not rows[0]:
        raise ValueError("every seed needs the same test images, at least one")
    seeds = len(rows)
    e = [math.fsum(col) / seeds for col in zip(*rows)]
    mean = math.fsum(e) / len(e)
    variance = math.fsum((x - mean) ** 2 for x in e) / len(e)
    if seeds >= 2:  # the seeds' noise in e, already inside the seeds' interval
        within = math.fsum(math.fsum((x - m) ** 2 for x in col) / (seeds - 1)
                           for col, m in zip(zip(*rows), e)) / len(e)
        variance = max(0.0, variance - within / seeds)
    return float(norm.ppf((1 + level) / 2)) * math.sqrt(variance / len(e))


def image_half_width_bound(errors: Sequence[tuple[float, float, int]],
                           level: float = LEVEL) -> float:
    """An upper bound on :func:`image_half_width` when the per-image predictions are not kept
    (transfer; it bounds the bootstrap's variance before the seeds' share is taken off, so
    it stays above): for each target (error of a, error of b, test images N) the per-image
    difference e_i lies in [-1, 1] and is non-zero only where a or b errs, so its variance is
    at most err_a + err_b; the mean over T targets has at most sum((err_a + err_b) / N) / T^2."""
    from scipy.stats import norm

    if not errors:
        raise ValueError("need at least one target")
    total = math.fsum(min(1.0, ea + eb) / n for ea, eb, n in errors) / len(errors) ** 2
    return float(norm.ppf((1 + level) / 2)) * math.sqrt(total)


@functools.lru_cache(maxsize=64)
def _studies(cov: tuple[tuple[float, ...], ...], n: int, draws: int):
    """``draws`` simulated studies of ``n`` seeds of K rows with covariance ``cov``: each
    row's mean difference less its true value (normal, cov / n) and its standard error. The
    sample variances are the diagonal of a Wishart(n - 1, cov) / (n - 1), drawn by Bartlett's
    decomposition when n - 1 reaches the rank of cov (the cost does not grow with n), else
    from n drawn seeds: exact for normal differences. Seeded by n and the rank, so a figure is
    the same at every call and, on the same draws, rises with the effect."""
    import numpy as np

    values, vectors = np.linalg.eigh(np.array(cov))
    keep = values > 1e-12 * max(values.max(), 1e-300)
    root = vectors[:, keep] * np.sqrt(values[keep])  # K x r, cov = root @ root.T
    rank, df = root.shape[1], n - 1
    rng = np.random.default_rng([38, n, rank])
    means = rng.standard_normal((draws, rank)) @ root.T / math.sqrt(n)
    if df >= rank:  # Bartlett: W = A A^T, A lower triangular
        a = np.zeros((draws, rank, rank))
        rows, cols = np.tril_indices(rank, -1)
        a[:, rows, cols] = rng.standard_normal((draws, len(rows)))
        idx = np.arange(rank)
        a[:, idx, idx] = np.sqrt(rng.chisquare(df - idx, (draws, rank)))
        spread = np.einsum("kr,drs->dks", root, a)
    else:  # fewer seeds than the rank: draw them
        z = rng.standard_normal((draws, rank, n))
        spread = np.einsum("kr,drn->dkn", root, z - z.mean(axis=2, keepdims=True))
    return means, np.sqrt((spread ** 2).sum(axis=2) / df / n)


DRAWS = 4000  # simulated studies per power figure of a composite rule: +-0.007 at 80% power


@dataclass(frozen=True)
class Rule:
    """A claim that holds only if every one of K one-sided tests does (every pair, against
    every other method, every contrast of a dominant claim), each at the one-sided ``level``.
    ``kind``: ``greater`` (each row's true difference is the effect, tested > 0),
    ``noninferior`` (true difference 0, margin = the effect), or ``equivalent`` (true
    difference 0, both one-sided tests inside +-effect). ``cov``: the K x K covariance of the
    rows' per-seed differences (the rows share runs, so they are correlated) when their common
    seeds outnumber the rows; else a diagonal of the rows' variances. The sample covariance
    of K rows from n seeds has rank at most n - 1, so with n <= K it is singular and the
    simulation overstates the power (15 pair rows at 3 seeds planned 14 seeds of real power
    0.60); the diagonal takes the rows as independent, which plans more seeds than their
    true covariance when the rows are positively correlated (review 38's six equal methods,
    15 pairs: 17 seeds against 16)."""

    kind: str
    cov: tuple[tuple[float, ...], ...]
    level: float

    @classmethod
    def from_rows(cls, kind: str, rows: Sequence[Effect], level: float) -> "Rule":
        import numpy as np

        seeds = set.intersection(*(set(r.seeds) for r in rows))
        if len(seeds) >= MIN_SEEDS and len(seeds) > len(rows):  # else singular: the diagonal
            table = np.array([[d for s, d in zip(r.seeds, r.differences) if s in seeds]
                              for r in rows])
            cov = np.atleast_2d(np.cov(table, ddof=1))
        else:
            cov = np.diag([r.summary.std ** 2 for r in rows])
        return cls(kind, tuple(map(tuple, cov.tolist())), level)

    def scaled(self, factor: float) -> "Rule":
        """The same rule with every standard deviation times ``factor``."""
        return Rule(self.kind, tuple(tuple(c * factor ** 2 for c in row) for row in self.cov),
                    self.level)

    def power(self, n: int, effect: float, draws: int = DRAWS) -> float:
        """The simulated chance that ``n`` seeds pass every row's test at ``effect`` (the
        studies are :func:`_studies`'s, the same at every call for one n)."""

        if n < 2 or effect <= 0:
            raise ValueError(f"power needs n >= 2 and effect > 0, got {n}, {effect}")
        means, sem = _studies(self.cov, n, draws)
        crit = t_quantile(1 - self.level, n - 1)
        if self.kind in ("greater", "noninferior"):  # true difference effect, or 0 vs -margin
            passed = (means + effect) / sem > crit
        elif self.kind == "equivalent":
            passed = ((means + effect) / sem > crit) & ((means - effect) / sem < -crit)
        else:
            raise ValueError(f"no composite power for a {self.kind!r} claim")
        return float(passed.all(axis=1).mean())

    def seeds_needed(self, effect: float, target: float = POWER,
                     most: int = 1000) -> int | None:
        """The fewest seeds whose simulated power reaches ``target`` (bisection)."""
        return _fewest(lambda n: self.power(n, effect) >= target, most)

    def detectable(self, n: int, target: float = POWER) -> float:
        """The smallest effect (or margin) ``n`` seeds detect with ``target`` power."""
        low, high = 0.0, math.sqrt(max(row[i] for i, row in enumerate(self.cov)))
        while self.power(n, high) < target:
            low, high = high, 2 * high
        while high - low > 1e-4 * high:  # the power rises with the effect on the same draws
            mid = (low + high) / 2
            low, high = (low, mid) if self.power(n, mid) >= target else (mid, high)
        return high


__all__ = ["ALPHA", "CONTRADICTED", "Effect", "INCONCLUSIVE", "LEVEL", "MIN_SEEDS", "POWER",
           "Rule", "SUPPORTED", "Summary", "Test", "decide", "depth_contrast", "detectable",
           "direction", "equivalence", "final_blocks", "holm", "image_half_width",
           "image_half_width_bound", "intersection", "mean_rho",
           "no_verdict", "noninferiority", "one_sample", "outlier", "paired", "power",
           "sd_upper", "seeds_needed", "spearman", "summarize", "tost", "verdict"]
