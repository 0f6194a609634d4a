"""The result files one stage writes and another reads: features Parquet round trip, and the
readers naming the command that rewrites a damaged file."""

import json

import numpy as np
import pytest

from momentum_ssl.plumbing.artifacts import CorruptArtifact
from momentum_ssl.plumbing.results import read_features, transfer_summary, write_features


def test_features_round_trip_columns_predictions_and_metadata(tmp_path):
    rng = np.random.default_rng(0)
    student = rng.normal(size=(6, 4)).astype(np.float32)
    teacher = rng.normal(size=(6, 3))  # float64 in: stored as float32
    labels = np.array([0, 1, 2, 0, 1, 2])
    meta = {"params_hash": "h", "name": "byol-full/s0", "num_samples": 6}
    path = tmp_path / "f" / "train.parquet"
    write_features(path, {"student": student, "teacher": teacher}, labels, meta,
                   extra={"knn": labels[::-1]})
    columns, read_labels, read_meta = read_features(path)
    assert list(columns) == ["knn", "student", "teacher"]
    assert np.array_equal(read_labels, labels) and read_labels.dtype == np.int64
    assert np.array_equal(columns["knn"], labels[::-1])
    assert np.array_equal(columns["student"], student)
    assert columns["teacher"].dtype == np.float32
    assert np.array_equal(columns["teacher"], teacher.astype(np.float32))
    assert read_meta == meta
    assert [p.name for p in path.parent.iterdir()] == ["train.parquet"]  # no temporary left


def test_a_features_file_shorter_than_its_metadata_says_is_corrupt(tmp_path):
    path = tmp_path / "test.parquet"
    write_features(path, {"student": np.zeros((3, 2))}, np.zeros(3), {"num_samples": 4})
    with pytest.raises(CorruptArtifact, match="not a complete features file"):
        read_features(path, "python -m momentum_ssl extract --run raw")


def test_a_corrupt_features_file_says_what_to_do(tmp_path):
    bad = tmp_path / "train.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(ValueError, match="not a readable Parquet file.*rewrite it: python -m "
                                         "momentum_ssl extract$"):
        read_features(bad)


def test_transfer_summary_reads_each_target_and_names_the_rerun_of_a_damaged_file(tmp_path):
    path = tmp_path / "byol-full.json"
    path.write_text(json.dumps({"knn_headline": "k5_weighted", "targets": {
        "digits": {"num_train": 10, "student": {"knn": {"k5_weighted": 0.75}}}}}))
    assert transfer_summary(path) == {"digits": 0.75}
    path.write_text(json.dumps({"knn_headline": "k5_weighted", "targets": {"digits": {}}}))
    with pytest.raises(CorruptArtifact, match="lacks a target's headline kNN score.*"
                                              "transfer --run byol-full"):
        transfer_summary(path)
