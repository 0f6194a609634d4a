"""Damaged artifacts, as after a full disk or a cut copy: each stage that reads one stops with
one line naming the file, what is wrong and the command that rewrites it, and writes nothing.

The artifacts are real: the tiny profile run once through convert, plan, pretrain, extract,
probe and transfer (one grid run), then copied for each case and damaged."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import yaml

from conftest import TINY, make_params
from momentum_ssl.cli import main
from momentum_ssl.config import load_params, to_dict
from momentum_ssl.plumbing.artifacts import CorruptArtifact, MissingArtifact, check_beton, read_json

RUN = "byol-full"
CELL = f"{RUN}/s0"  # the run at its one seed: where its artifacts live


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    from momentum_ssl.data.convert import convert
    from momentum_ssl.stages.features import extract
    from momentum_ssl.stages.probes import probe
    from momentum_ssl.stages.pretrain import pretrain
    from momentum_ssl.stages.transfer import transfer

    root = tmp_path_factory.mktemp("pipeline")
    data = to_dict(make_params(root, **{**TINY, "grid": {RUN: TINY["grid"][RUN]}}))
    data["data"]["out_dir"] = "beton"  # relative: the copies below read their own
    data["pretrain"]["epochs"] = 1
    (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        params = load_params("params.yaml")
        convert(params)
        assert main(["plan", "--run", RUN]) == 0
        pretrain(params, params.grid[0], seed=0)
        extract(params, RUN, seed=0)
        probe(params, RUN, seed=0)
        transfer(params, RUN, seed=0)
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture
def work(pipeline, tmp_path, monkeypatch):
    """A fresh copy of the pipeline's folder as the working directory."""
    copy = tmp_path / "copy"
    shutil.copytree(pipeline, copy)
    monkeypatch.chdir(copy)
    return copy


def snapshot(root):
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")}


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def garble(path, at=0, length=64):
    data = bytearray(path.read_bytes())
    data[at:at + length] = bytes(range(7, 7 + length))
    path.write_bytes(bytes(data))


def fails_cleanly(work, capsys, argv, path, problem, rewrite):
    """The stage exits 2 with one line naming ``path``, ``problem`` and ``rewrite``, and
    leaves every file as it was."""
    before = snapshot(work)
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {path} "), lines[0]
    assert problem in lines[0] and lines[0].endswith(f"rewrite it: {rewrite}"), lines[0]
    assert snapshot(work) == before
    return lines[0]


CONVERT = "python -m momentum_ssl convert"


def test_a_truncated_beton_never_reaches_ffcv(work, capsys):
    truncate(work / "beton/digits/test.beton")
    # both splits are checked before train.parquet, the first output, is rewritten
    fails_cleanly(work, capsys, ["extract", "--run", RUN], "beton/digits/test.beton",
                  "is not a complete FFCV file: ", CONVERT)


@pytest.mark.parametrize("damage, problem", [
    (lambda p: garble(p, 0, 8), "format version"),
    (lambda p: truncate(p, 0.999), "allocation table"),
    (lambda p: p.write_bytes(p.read_bytes()[:-24]), "covers 159 of 160 samples"),
])
def test_a_damaged_train_beton_stops_pretraining_before_it_writes(work, capsys, damage, problem):
    damage(work / "beton/digits/train.beton")
    fails_cleanly(work, capsys, ["pretrain", "--run", RUN], "beton/digits/train.beton", problem,
                  CONVERT)


def test_garbled_labels_in_a_beton_are_caught_against_meta_json(work, capsys):
    from ffcv.reader import Reader
    from ffcv.types import HeaderType

    path = work / "beton/digits/test.beton"
    reader = Reader(str(path))
    records = np.memmap(path, dtype=reader.metadata_type, mode="r+", shape=(reader.num_samples,),
                        offset=HeaderType.itemsize + reader.field_descriptors.nbytes)
    records[0][1] = (records[0][1] + 1) % 10  # the first sample's label, as a bit flip would
    records.flush()
    del records
    check_beton(path, CONVERT, ("image", "label"))  # the layout itself is intact
    fails_cleanly(work, capsys, ["extract", "--run", "raw"], "beton/digits/test.beton",
                  "labels whose class counts differ from meta.json's", CONVERT)


def test_a_truncated_meta_json(work, capsys):
    truncate(work / "beton/digits/meta.json")
    fails_cleanly(work, capsys, ["transfer", "--run", RUN], "beton/digits/meta.json",
                  "is not valid JSON, truncated or garbled", CONVERT)


@pytest.mark.parametrize("stage", ["extract", "transfer", "export"])
def test_a_truncated_model(work, capsys, stage):
    truncate(work / f"results/runs/{CELL}/model.pt")
    line = fails_cleanly(work, capsys, [stage, "--run", RUN], f"results/runs/{CELL}/model.pt",
                         "is truncated or garbled: torch.load failed",
                         f"python -m momentum_ssl pretrain --run {RUN} --seed 0")
    assert "central directory" in line  # PyTorch's own reason, kept on the line


def test_a_model_with_garbled_weights(work, capsys):
    import torch

    path = work / f"results/runs/{CELL}/model.pt"
    state = torch.load(path, weights_only=False)
    key = next(k for k, v in state["learner"].items() if v.ndim == 4)
    state["learner"][key] = torch.zeros(3)  # loads, but no longer fits the learner
    torch.save(state, path)
    fails_cleanly(work, capsys, ["extract", "--run", RUN], f"results/runs/{CELL}/model.pt",
                  "holds weights that do not fit the run's learner",
                  f"python -m momentum_ssl pretrain --run {RUN} --seed 0")


@pytest.mark.parametrize("damage", [truncate, lambda p: garble(p, len(p.read_bytes()) - 40, 40)])
def test_damaged_features(work, capsys, damage):
    damage(work / f"results/features/{CELL}/test.parquet")
    fails_cleanly(work, capsys, ["probe", "--run", RUN], f"results/features/{CELL}/test.parquet",
                  "is not a readable Parquet file", f"python -m momentum_ssl extract --run {RUN} --seed 0")


def test_a_truncated_probe_json_stops_the_report(work, capsys):
    truncate(work / f"results/probes/{CELL}.json")
    fails_cleanly(work, capsys, ["report"], f"results/probes/{CELL}.json",
                  "is not valid JSON", f"python -m momentum_ssl probe --run {RUN} --seed 0")


def test_a_transfer_json_of_something_else_stops_the_report(work, capsys):
    (work / f"results/transfer/{CELL}.json").write_text('{"name": "byol-full"}\n')
    fails_cleanly(work, capsys, ["report"], f"results/transfer/{CELL}.json",
                  "lacks 'knn_headline', 'targets'",
                  f"python -m momentum_ssl transfer --run {RUN} --seed 0")


def test_a_truncated_training_summary_stops_the_report(work, capsys):
    truncate(work / f"results/runs/{CELL}/dvclive/metrics.json")
    fails_cleanly(work, capsys, ["report"], f"results/runs/{CELL}/dvclive/metrics.json",
                  "is not valid JSON", f"python -m momentum_ssl pretrain --run {RUN} --seed 0")


def test_a_garbled_plan_file(work, capsys):
    (work / f"results/plan/{CELL}.yaml").write_text("seed: [0\n  data: {")
    fails_cleanly(work, capsys, ["pretrain", "--run", RUN], f"results/plan/{CELL}.yaml",
                  "is not valid YAML", f"python -m momentum_ssl plan --run {RUN} --seed 0")


def test_readers_name_the_writer_of_a_missing_file(tmp_path):
    with pytest.raises(MissingArtifact, match=r"x\.json not found; run python -m momentum_ssl "
                                              r"probe --run a first"):
        read_json(tmp_path / "x.json", "python -m momentum_ssl probe --run a")
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(CorruptArtifact, match="holds list, not the JSON object"):
        read_json(tmp_path / "x.json", "python -m momentum_ssl probe --run a")


def test_the_beton_layout_is_ffcvs():
    # check_beton reads .beton files without importing FFCV, from its own copy of the layout
    from ffcv import types
    from ffcv.fields import FloatField, IntField, RGBImageField
    from ffcv.fields.rgb_image import IMAGE_MODES

    from momentum_ssl.plumbing import artifacts as A

    assert A.BETON_VERSION == types.CURRENT_VERSION
    assert np.dtype(A.BETON_HEADER) == types.HeaderType
    assert np.dtype(A.BETON_FIELD_DESC) == types.FieldDescType
    assert np.dtype(A.BETON_ALLOC_TABLE) == types.ALLOC_TABLE_TYPE
    for type_id, field in ((0, FloatField()), (1, IntField()), (2, RGBImageField())):
        assert types.TYPE_ID_HANDLER[type_id] is type(field)
        assert np.dtype(A.BETON_RECORDS[type_id]) == field.metadata_type
    assert A.BETON_IMAGE_MODES == dict(IMAGE_MODES)


def test_reading_raw_pixels_does_not_import_ffcv(work):
    # extract reads a raw dataset without FFCV (its import compiles numba code for seconds)
    import subprocess
    import sys

    code = ("import sys; from momentum_ssl.config import load_params; "
            "from momentum_ssl.data.loaders import eval_batches; "
            "n = sum(len(y) for _, y in eval_batches(load_params('params.yaml'), 'test')); "
            "print(n, 'ffcv' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True,
                          text=True, check=True)
    from momentum_ssl.data.loaders import beton_folder, read_labels

    expected = len(read_labels(beton_folder(load_params("params.yaml")), "test"))
    assert done.stdout.split() == [str(expected), "False"]
