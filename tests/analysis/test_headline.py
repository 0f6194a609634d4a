"""results/metrics.json: the headline numbers of results/summary.json, and nothing else."""

import json

import pytest

from momentum_ssl.plumbing.artifacts import CorruptArtifact, MissingArtifact
from momentum_ssl.analysis.headline import headline, write_headline


def stat(mean, low=None, high=None, n=3):
    out = {"n": n, "mean": mean, "std": 0.01, "half_width": 0.02, "level": 0.95,
           "seeds": {"0": mean, "1": mean, "2": mean}}
    if low is not None:
        out |= {"ci_low": low, "ci_high": high}
    return out


SUMMARY = {
    "runs": {
        "byol-full": {"knn_student": stat(0.73, 0.70, 0.76),
                      "knn_teacher": stat(0.72, 0.70, 0.74),
                      "logistic_student": stat(0.74, 0.71, 0.77),
                      "gap_projector": stat(0.01, 0.00, 0.02),
                      "transfer_digits": stat(0.85, 0.80, 0.90), "pretrain_s": stat(8, 7, 9),
                      "a_key_added_later": stat(1, 0, 2)},
        "raw": {"knn_student": {"n": 1, "mean": 0.83, "level": 0.95, "seeds": {"raw": 0.83}},
                "logistic_student": {"n": 1, "mean": 0.84, "level": 0.95,
                                     "seeds": {"raw": 0.84}},
                "transfer_digits": {"n": 1, "mean": 0.98, "level": 0.95,
                                    "seeds": {"raw": 0.98}}},
    },
    "claims": [
        {"claim": "residual momentum improves the student", "a": "byol-full-res",
         "b": "byol-full", "metric": "knn_student", "kind": "greater", "status": "inconclusive",
         "source": "Pham et al.", "note": "",
         "difference": {**stat(-0.0098, -0.0726, 0.0531), "seeds": {"0": -0.01}}},
        {"claim": "a momentum teacher is the factor that matters most", "a": "byol-full-res",
         "b": "byol-full", "metric": "knn_student", "kind": "greater", "status": "inconclusive",
         "difference": {**stat(-0.0098, -0.0726, 0.0531), "seeds": {"0": -0.01}}},
        {"claim": "the final blocks' gradients fluctuate more", "a": "byol-full", "metric": "cv",
         "kind": "rising", "status": "contradicted",
         "difference": stat(-0.0933, -0.108, -0.079)},
        {"claim": "XMoCo's regularisers improve MoCo v2", "a": "xmoco-full", "b": "mocov2-full",
         "metric": "knn_student", "kind": "greater", "status": "not tested",
         "note": "the grid lacks xmoco-full and mocov2-full"},
    ],
    "a_section_added_later": {"x": 1},
}


def test_headline_keeps_the_means_and_bounds_of_the_headline_metrics_only():
    out = headline(SUMMARY)
    assert out["byol-full"] == {"knn": {"mean": 0.73, "low": 0.70, "high": 0.76},
                                "logistic": {"mean": 0.74, "low": 0.71, "high": 0.77},
                                "transfer_digits": {"mean": 0.85, "low": 0.80, "high": 0.90}}
    # one value, no interval: the mean alone
    assert out["raw"] == {"knn": {"mean": 0.83}, "logistic": {"mean": 0.84},
                          "transfer_digits": {"mean": 0.98}}
    assert set(out) == {"byol-full", "raw", "claims"}


def test_each_tested_claim_gives_its_effect_once_and_untested_ones_nothing():
    claims = headline(SUMMARY)["claims"]
    assert claims == {
        "byol-full-res vs byol-full": {"knn_student": {"mean": -0.0098, "low": -0.0726,
                                                       "high": 0.0531}},
        "byol-full": {"cv_rise": {"mean": -0.0933, "low": -0.108, "high": -0.079}}}


def test_write_headline_writes_metrics_json_beside_the_summary(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps(SUMMARY))
    path = write_headline(tmp_path)
    assert path == tmp_path / "metrics.json"
    assert json.loads(path.read_text()) == headline(SUMMARY)


def test_write_headline_names_a_missing_or_cut_summary(tmp_path):
    with pytest.raises(MissingArtifact, match="python -m momentum_ssl report"):
        write_headline(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps(SUMMARY)[:100])
    with pytest.raises(CorruptArtifact, match="summary.json"):
        write_headline(tmp_path)
    assert not (tmp_path / "metrics.json").exists()
