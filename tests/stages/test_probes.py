"""The probe stage: features files in, the metrics JSON (with the student-teacher gap) and
every probe's test predictions out."""

import json

import numpy as np
import pytest

from conftest import blobs
from momentum_ssl.plumbing.results import read_features, write_features
from momentum_ssl.stages.probes import probe


def test_probe_stage_writes_metrics_gap_and_predictions(tiny, tmp_path):
    x, y = blobs(300, dim=16, classes=10)
    folder = tmp_path / "feats"
    for split, rows in (("train", slice(0, 200)), ("test", slice(200, 300))):
        write_features(folder / f"{split}.parquet",
                       {"student": x[rows], "teacher": x[rows][:, ::-1] * 0.5 + 0.1},
                       y[rows], {"params_hash": "h", "name": "t"})
    out = probe(tiny, "t", features=folder, out=tmp_path / "t.json",
                predictions_out=tmp_path / "t.parquet")
    metrics = json.loads(out.read_text())
    assert set(metrics["student"]["knn"]) == {"k5_weighted", "k5_majority", "k20_weighted",
                                              "k20_majority"}
    assert metrics["knn_headline"] == "k5_weighted"
    assert metrics["gap"]["knn"]["k5_weighted"] == pytest.approx(
        metrics["student"]["knn"]["k5_weighted"] - metrics["teacher"]["knn"]["k5_weighted"])
    columns, labels, _ = read_features(tmp_path / "t.parquet")
    assert np.array_equal(labels, y[200:])
    acc = (columns["student/logistic"] == labels).mean()
    assert acc == pytest.approx(metrics["student"]["logistic"]["top1"])


def test_probe_refuses_train_and_test_of_different_params(tiny, tmp_path):
    x, y = blobs(40)
    for split, stamp in (("train", "a"), ("test", "b")):
        write_features(tmp_path / f"{split}.parquet", {"student": x}, y, {"params_hash": stamp})
    with pytest.raises(ValueError, match="come from different params"):
        probe(tiny, "t", features=tmp_path, out=tmp_path / "t.json")
