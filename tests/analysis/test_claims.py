"""Claims expanded over the grid and judged from constructed per-seed metrics."""

import pytest

from momentum_ssl.analysis.claims import NOT_TESTED, judge, judge_one
from momentum_ssl.analysis.stats import CONTRADICTED, INCONCLUSIVE, SUPPORTED
from momentum_ssl.config import CLAIMS, ClaimConfig

SEEDS = (0, 1, 2, 3)


def cells(knn, gap=0.01, step=1.0, cv=(0.1, 0.2, 0.3, 0.4, 0.5)):
    """Per-seed metrics: ``knn`` a number or one per seed."""
    knn = knn if isinstance(knn, (list, tuple)) else [knn + 0.001 * s for s in SEEDS]
    blocks = ("stem", "stage1", "stage2", "stage3", "stage4")
    return {s: {"knn_student": knn[i], "gap_projector": gap + 0.001 * s, "step_s": step,
                "cv": dict(zip(blocks, cv))} for i, s in enumerate(SEEDS)}


def claim(name):
    return next(c for c in CLAIMS if c.name.startswith(name))


def test_method_templates_expand_to_the_runs_in_the_grid():
    values = {"byol-full": cells(0.70), "byol-full-res": cells(0.72, gap=0.005),
              "mocov3-full": cells(0.71), "mocov3-full-res": cells(0.70)}
    verdicts = judge_one(claim("residual momentum improves"), values)
    assert [(v.a, v.b) for v in verdicts] == [("mocov3-full-res", "mocov3-full"),
                                             ("byol-full-res", "byol-full")]
    assert [v.status for v in verdicts] == [CONTRADICTED, SUPPORTED]
    gap = judge_one(claim("residual momentum narrows"), values)
    assert gap[1].status == SUPPORTED and gap[1].effect.summary.mean == pytest.approx(-0.005)


def test_a_claim_whose_runs_are_missing_is_not_tested():
    verdicts = judge_one(claim("XMoCo"), {"byol-full": cells(0.7)})
    assert [v.status for v in verdicts] == [NOT_TESTED]
    assert "the grid lacks xmoco-full and mocov2-full" in verdicts[0].note


def test_equivalence_with_its_step_cost_and_the_best_other_method():
    values = {"simclr-projector": cells([0.750, 0.761, 0.752, 0.759], step=0.8),
              "simclr-full": cells([0.751, 0.760, 0.751, 0.760], step=1.0),
              "unigrad-full": cells(0.70), "byol-full": cells(0.78), "simclr-none": cells(0.5)}
    [equivalent] = judge_one(claim("projector-only EMA"), values)
    assert equivalent.status == SUPPORTED and "step time simclr-projector / simclr-full = 0.80" \
        in equivalent.note
    [best] = judge_one(claim("UniGrad"), values)
    assert best.b == "byol-full"  # the best other method's full run
    assert best.status == CONTRADICTED  # 8 points away, outside a 1-point margin


def test_a_rising_claim_correlates_each_block_with_depth_per_seed():
    values = {"byol-full": cells(0.7, cv=(0.1, 0.2, 0.25, 0.4, 0.9)),
              "simclr-full": cells(0.7, cv=(0.9, 0.5, 0.3, 0.2, 0.1))}
    verdicts = {v.a: v for v in judge_one(claim("the final blocks"), values)}
    assert verdicts["byol-full"].status == SUPPORTED  # rho = 1 at every seed
    assert verdicts["byol-full"].effect.summary.mean == pytest.approx(1.0)
    assert verdicts["simclr-full"].status == CONTRADICTED  # falling with depth
    noisy = {"byol-full": {s: {"cv": dict(zip(("stem", "stage1", "stage2", "stage3", "stage4"),
                                               cv))}
                           for s, cv in enumerate([(1, 2, 3, 4, 5), (1, 3, 2, 4, 5),
                                                   (2, 1, 3, 4, 5), (1, 2, 3, 5, 4)])}}
    [rising] = judge_one(claim("the final blocks"), noisy)
    assert rising.status == SUPPORTED and 0.8 < rising.effect.summary.mean < 1
    assert verdicts["simclr-full"].effect.summary.mean == pytest.approx(-1.0)


def test_one_seed_is_never_a_verdict():
    values = {"simclr-projector": {0: {"knn_student": 0.9}}, "simclr-none": {0: {"knn_student": 0.1}}}
    [v] = judge_one(claim("EMA of the projector"), values)
    assert v.status == INCONCLUSIVE and "one seed" in v.note


def test_judge_keeps_the_claims_order():
    values = {"simclr-none": cells(0.7), "simclr-projector": cells(0.72), "simclr-full": cells(0.72)}
    names = [v.claim.name for v in judge(CLAIMS, values)]
    assert names == sorted(names, key=[c.name for c in CLAIMS].index)
    assert len(names) >= len(CLAIMS)
    custom = ClaimConfig("mine", "me", "greater", "simclr-full", "simclr-none")
    assert [v.status for v in judge((custom,), values)] == [SUPPORTED]
