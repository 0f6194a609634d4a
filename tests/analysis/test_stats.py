"""stats.py against scipy on fixed numbers, and each verdict on constructed inputs."""

import math

import numpy as np
import pytest
from scipy import stats as sp

from momentum_ssl.analysis.stats import (CONTRADICTED, INCONCLUSIVE, SUPPORTED, equivalence,
                                         one_sample, paired, spearman, summarize, tost, verdict)

A = {0: 0.7812, 1: 0.7764, 2: 0.7903, 3: 0.7851, 4: 0.7799}
B = {0: 0.7711, 1: 0.7702, 2: 0.7795, 3: 0.7790, 4: 0.7688}


def test_summary_is_the_student_t_interval_of_the_mean():
    values = list(A.values())
    s = summarize(values)
    low, high = sp.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=sp.sem(values))
    assert s.n == 5 and s.mean == pytest.approx(np.mean(values))
    assert s.std == pytest.approx(np.std(values, ddof=1))
    assert (s.low, s.high) == (pytest.approx(low), pytest.approx(high))
    assert s.half_width == pytest.approx((high - low) / 2)
    one = summarize([0.5])
    assert one.mean == 0.5 and one.std is None and one.low is None and one.half_width is None
    with pytest.raises(ValueError, match="finite"):
        summarize([0.5, math.nan])


def test_paired_difference_matches_scipys_paired_t_test():
    effect = paired(A, {**B, 9: 0.1})  # seed 9 has no partner: left out
    assert effect.seeds == (0, 1, 2, 3, 4)
    a, b = np.array(list(A.values())), np.array(list(B.values()))
    reference = sp.ttest_rel(a, b).confidence_interval(0.95)
    assert effect.summary.mean == pytest.approx((a - b).mean())
    assert (effect.summary.low, effect.summary.high) == (pytest.approx(reference.low),
                                                       pytest.approx(reference.high))
    with pytest.raises(ValueError, match="no seed in common"):
        paired({0: 1.0}, {1: 1.0})


def test_tost_p_values_are_two_one_sided_t_tests():
    effect = paired(A, B)
    d = np.array(list(A.values())) - np.array(list(B.values()))
    lower, upper = tost(effect, margin=0.02)
    assert lower == pytest.approx(sp.ttest_1samp(d, -0.02, alternative="greater").pvalue)
    assert upper == pytest.approx(sp.ttest_1samp(d, 0.02, alternative="less").pvalue)


def noisy(mean: float, sd: float, n: int = 5, seed: int = 0) -> dict[int, float]:
    rng = np.random.default_rng(seed)
    return {s: float(v) for s, v in enumerate(mean + sd * rng.standard_normal(n))}


def test_direction_verdicts_on_constructed_effects():
    base = noisy(0.75, 0.01)
    clear = {s: v + 0.03 + 0.002 * (s % 2) for s, v in base.items()}  # +3 points every seed
    assert verdict(paired(clear, base), "greater") == SUPPORTED
    assert verdict(paired(clear, base), "less") == CONTRADICTED
    assert verdict(paired(base, clear), "greater") == CONTRADICTED  # the reverse effect
    noise = noisy(0.75, 0.01, seed=1)  # the same mean, independent noise
    assert verdict(paired(noise, base), "greater") == INCONCLUSIVE
    assert verdict(paired({0: 0.9}, {0: 0.1}), "greater") == INCONCLUSIVE  # one seed
    with pytest.raises(ValueError, match="direction"):
        verdict(paired(clear, base), "up")


def test_equivalence_verdicts_inside_and_outside_the_margin():
    base = noisy(0.75, 0.01)
    inside = {s: v + 0.001 * (-1) ** s for s, v in base.items()}  # within +-0.2 points
    assert equivalence(paired(inside, base), margin=0.01) == SUPPORTED
    outside = {s: v + 0.03 + 0.001 * (-1) ** s for s, v in base.items()}  # 3 points off
    assert equivalence(paired(outside, base), margin=0.01) == CONTRADICTED
    wide = {s: v + 0.02 * (-1) ** s for s, v in base.items()}  # too noisy to tell
    assert equivalence(paired(wide, base), margin=0.01) == INCONCLUSIVE
    assert equivalence(paired({0: 0.75}, {0: 0.75}), margin=0.01) == INCONCLUSIVE


def test_spearman_and_a_per_seed_correlation_against_zero():
    assert spearman([1, 2, 3, 4], [0.1, 0.3, 0.2, 0.9]) == pytest.approx(
        sp.spearmanr([1, 2, 3, 4], [0.1, 0.3, 0.2, 0.9]).statistic)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    rising = one_sample({0: 0.9, 1: 0.8, 2: 1.0})
    assert rising.summary.mean == pytest.approx(0.9) and verdict(rising, "greater") == SUPPORTED
