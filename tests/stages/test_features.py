import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from momentum_ssl.config import ConfigError, params_hash, run_params
from momentum_ssl.plumbing.results import read_features
from momentum_ssl.stages.features import extract
from momentum_ssl.stages.pretrain import pretrain


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def trained(tiny):
    runs = {run.name: run for run in tiny.grid}
    for name in ("byol-full", "byol-projector"):
        pretrain(tiny, runs[name])
    return tiny, runs


def test_run_features_schema_metadata_and_teacher(trained):
    params, runs = trained
    out = extract(params, "byol-full")
    schema = pq.read_schema(out / "train.parquet")
    assert schema.names == ["label", "student", "teacher"]
    assert str(schema.field("label").type) == "int64"
    student = schema.field("student").type
    assert isinstance(student, pa.FixedSizeListType) and student.list_size == 64  # 8 * width
    assert student.value_type == pa.float32()
    meta = json.loads(schema.metadata[b"momentum_ssl"])
    assert meta == {"params_hash": params_hash(run_params(params, runs["byol-full"])),
                    "name": "byol-full", "split": "train", "dataset": "digits",
                    "dims": {"student": 64, "teacher": 64}, "num_samples": 160}
    columns, labels, meta = read_features(out / "test.parquet")
    assert columns["student"].shape == (40, 64) and columns["student"].dtype == np.float32
    assert np.bincount(labels).tolist() == [4] * 10  # every label, in file order
    assert not np.array_equal(columns["student"], columns["teacher"])


def test_a_projector_only_teacher_has_no_features_of_its_own(trained):
    params, _ = trained
    columns, _, _ = read_features(extract(params, "byol-projector") / "train.parquet")
    assert list(columns) == ["student"]


def test_features_are_byte_identical_when_extracted_twice(trained, tmp_path):
    params, _ = trained
    a = extract(params, "byol-full", tmp_path / "a")
    b = extract(params, "byol-full", tmp_path / "b")
    for split in ("train", "test"):
        assert sha(a / f"{split}.parquet") == sha(b / f"{split}.parquet")


def test_baselines(tiny):
    raw, labels, meta = read_features(extract(tiny, "raw") / "train.parquet")
    assert raw["raw"].shape == (160, 64)  # grayscale stored as RGB: one channel kept, 8 x 8
    rand, labels2, _ = read_features(extract(tiny, "random") / "train.parquet")
    assert rand["student"].shape == (160, 64) and np.array_equal(labels, labels2)
    assert np.isfinite(rand["student"]).all() and rand["student"].std() > 0


def test_extract_refuses_a_model_trained_with_other_params(trained):
    import dataclasses

    params, _ = trained
    changed = dataclasses.replace(params, seed=1)
    with pytest.raises(ConfigError, match="was trained with other params"):
        extract(changed, "byol-full")
    with pytest.raises(ConfigError, match="neither a grid run nor a baseline"):
        extract(params, "dino-full")
    with pytest.raises(FileNotFoundError, match="pretrain --run simclr-none first"):
        extract(params, "simclr-none")
