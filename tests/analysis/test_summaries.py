"""Per-run summaries over seeds for the report's tables."""

import math

from momentum_ssl.analysis.summaries import summaries


def test_a_nan_at_one_seed_leaves_that_metric_out_instead_of_failing_the_report():
    entry = {"seeds": {0: {"knn_student": 0.70, "gap_projector": math.nan},
                       1: {"knn_student": 0.71, "gap_projector": 0.1},
                       2: {"knn_student": 0.72, "gap_projector": 0.1}}}
    out = summaries(entry)
    assert "gap_projector" not in out  # the table prints "—"
    assert math.isclose(out["knn_student"].mean, 0.71)
