import json
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY, make_params, read_beton
from momentum_ssl.config import ConfigError, RunSpec, load_params, to_dict
from momentum_ssl.data.convert import convert, read_meta
from momentum_ssl.data.datasets import DataError, DatasetNotFound, stl10_unlabeled
from momentum_ssl.plumbing.artifacts import MissingArtifact


def _unlabeled_folder(root: Path, count: int = 40, size: int = 8) -> Path:
    """``count`` PNGs of digits' size in nested folders that are not classes."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for i in range(count):
        folder = root / f"shard{i % 3}" / ("deeper" if i % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            folder / f"img{i:03d}.png")
    (root / "notes.txt").write_text("not an image")
    return root


def _tiny(tmp_path: Path, **data) -> "Params":  # noqa: F821
    return make_params(tmp_path, **{**TINY, "data": {**TINY["data"], **data}})


@pytest.mark.parametrize("split,count", [("unlabeled", 40), ("train+unlabeled", 200)])
def test_an_unlabeled_folder_converts_beside_the_labelled_splits(tmp_path, split, count):
    folder = _unlabeled_folder(tmp_path / "unlabeled")
    plain = convert(_tiny(tmp_path / "plain"))
    out = convert(_tiny(tmp_path, pretrain_split=split, unlabeled_root=str(folder)))
    meta = read_meta(out)
    info = meta["splits"]["pretrain"]
    assert (info["num_samples"], info["per_class"], info["labelled"], info["images"],
            info["unlabeled_root"]) == (count, [count], False, split, str(folder))
    for name in ("train.beton", "test.beton"):  # the probes' splits are the labelled ones
        assert (out / name).read_bytes() == (plain / name).read_bytes()
    assert {k: v for k, v in meta["splits"].items() if k != "pretrain"} == \
        read_meta(plain)["splits"] and meta["mean"] == read_meta(plain)["mean"]
    images, labels = read_beton(out / "pretrain.beton")
    assert len(images) == count and not labels.any()
    train, _ = read_beton(out / "train.beton")
    if split == "train+unlabeled":
        np.testing.assert_array_equal(images[:160], train)
    from PIL import Image
    first = sorted(p for p in folder.rglob("*.png"))[0]
    np.testing.assert_array_equal(images[count - 40], np.asarray(Image.open(first)))
    # back to labelled pretraining: the pretraining split goes
    convert(_tiny(tmp_path))
    assert not (out / "pretrain.beton").exists() and "pretrain" not in read_meta(out)["splits"]


def test_pretraining_on_unlabeled_images_then_every_probe_and_baseline(tiny, tmp_path):
    from momentum_ssl.data.loaders import train_loader
    from momentum_ssl.stages.features import extract
    from momentum_ssl.stages.pretrain import pretrain
    from momentum_ssl.stages.probes import probe

    folder = _unlabeled_folder(tmp_path / "unlabeled", count=64)
    params = _tiny(tmp_path, pretrain_split="unlabeled", unlabeled_root=str(folder))
    with pytest.raises(MissingArtifact, match=r"has no unlabeled images for pretraining .* "
                                              "rerun python -m momentum_ssl convert"):
        train_loader(params)  # the tiny fixture converted without them
    convert(params)
    elsewhere = _tiny(tmp_path, pretrain_split="unlabeled", unlabeled_root=str(tmp_path))
    with pytest.raises(MissingArtifact, match=r"from data.unlabeled_root .* \(converted with "
                                              "other data settings\)"):
        train_loader(elsewhere)  # converted from another folder
    assert len(train_loader(params)) == 2  # 64 unlabeled images, batches of 32 (not 160 train)
    run = next(r for r in params.grid if r.name == "byol-full")
    assert (pretrain(params, run, seed=0) / "model.pt").is_file()
    for name, seed in (("byol-full", 0), ("raw", None), ("random", 0)):
        extract(params, name, seed=seed)  # the labelled train and test splits
        metrics = json.loads(probe(params, name, seed=seed).read_text())
        encoder = "raw" if name == "raw" else "student"
        assert metrics[encoder]["logistic"]["top1"] > 0.2  # 10 classes: above chance


def test_stl10s_unlabeled_split_is_read_as_torchvision_reads_it(tmp_path):
    from torchvision.datasets import STL10

    binary = tmp_path / "stl10" / "stl10_binary"
    binary.mkdir(parents=True)
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 256, (5, 3, 96, 96), dtype=np.uint8)
    (binary / "unlabeled_X.bin").write_bytes(stored.tobytes())
    cfg = _tiny(tmp_path, dataset="stl10", root=str(tmp_path / "stl10"),
                pretrain_split="unlabeled").data
    source = stl10_unlabeled(cfg)
    reader = STL10.__new__(STL10)
    reader.root, reader.base_folder = str(tmp_path / "stl10"), "stl10_binary"
    theirs, _ = reader._STL10__loadfile("unlabeled_X.bin")  # NCHW
    assert len(source) == 5 and source.shape == (96, 96)
    for i in range(5):
        np.testing.assert_array_equal(source[i][0], theirs[i].transpose(1, 2, 0))
    (binary / "unlabeled_X.bin").write_bytes(stored.tobytes()[:-7])
    with pytest.raises(DataError, match=r"unlabeled_X.bin is truncated or padded"):
        stl10_unlabeled(cfg)
    (binary / "unlabeled_X.bin").unlink()
    with pytest.raises(DatasetNotFound, match=r"unlabeled_X.bin not found: STL-10's unlabeled"):
        stl10_unlabeled(cfg)


def test_a_fake_stl10_converts_train_plus_unlabeled(tmp_path, monkeypatch):
    from torchvision.datasets import STL10

    monkeypatch.setattr(STL10, "_check_integrity", lambda self: True)  # fake files, no MD5s
    binary = tmp_path / "stl10" / "stl10_binary"
    binary.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in (("train", 10), ("test", 10), ("unlabeled", 6)):
        (binary / f"{name}_X.bin").write_bytes(rng.integers(0, 256, (n, 3, 96, 96),
                                                            dtype=np.uint8).tobytes())
        if name != "unlabeled":
            (binary / f"{name}_y.bin").write_bytes(np.arange(1, 11, dtype=np.uint8).tobytes())
    (binary / "class_names.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    params = _tiny(tmp_path, dataset="stl10", root=str(tmp_path / "stl10"),
                   train_per_class=None, test_per_class=None, pretrain_split="train+unlabeled")
    meta = read_meta(convert(params))
    assert meta["splits"]["pretrain"]["num_samples"] == 16
    assert meta["splits"]["train"]["per_class"] == [1] * 10
    images, _ = read_beton(Path(params.data.out_dir) / "stl10" / "pretrain.beton")
    unlabeled = np.frombuffer((binary / "unlabeled_X.bin").read_bytes(), np.uint8)
    np.testing.assert_array_equal(images[10:], unlabeled.reshape(6, 3, 96, 96)
                                  .transpose(0, 3, 2, 1))


def test_the_settings_are_checked_and_absent_from_the_defaults_form(tmp_path):
    with pytest.raises(ConfigError, match=r"data.pretrain_split: unlabeled needs unlabeled "
                                          r"images: digits has no unlabeled split .* set "
                                          "data.unlabeled_root"):
        _tiny(tmp_path, pretrain_split="unlabeled")
    with pytest.raises(ConfigError, match=r"data.unlabeled_root: is read only when"):
        _tiny(tmp_path, unlabeled_root="somewhere")
    with pytest.raises(ConfigError, match=r"data.pretrain_split"):
        _tiny(tmp_path, pretrain_split="everything")
    assert "pretrain_split" not in to_dict(load_params("params.yaml").data)  # hashes unchanged
    data = to_dict(_tiny(tmp_path, pretrain_split="unlabeled", unlabeled_root="u").data)
    assert (data["pretrain_split"], data["unlabeled_root"]) == ("unlabeled", "u")
    with pytest.raises(DatasetNotFound, match=r"unlabeled_root .*nowhere is not a folder"):
        convert(_tiny(tmp_path, pretrain_split="unlabeled",
                      unlabeled_root=str(tmp_path / "nowhere")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty holds no images"):
        convert(_tiny(tmp_path, pretrain_split="unlabeled", unlabeled_root=str(tmp_path / "empty")))


def test_the_stage_commands_both_drivers_run_take_an_unlabeled_folder(tmp_path, monkeypatch,
                                                                      capsys):
    """convert, plan, pretrain and evaluate as dvc.yaml and the Snakefile run them."""
    import yaml

    from momentum_ssl.cli import main

    monkeypatch.chdir(tmp_path)
    folder = _unlabeled_folder(tmp_path / "unlabeled", count=64)
    params = _tiny(tmp_path, pretrain_split="train+unlabeled", unlabeled_root=str(folder))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(to_dict(params), sort_keys=False))
    assert main(["convert"]) == 0
    assert main(["plan", "--run", "simclr-none"]) == 0
    plan = yaml.safe_load((tmp_path / "results/plan/simclr-none/s0.yaml").read_text())
    assert plan["data"]["pretrain_split"] == "train+unlabeled"
    assert main(["pretrain", "--run", "simclr-none"]) == 0
    assert main(["evaluate", "--run", "simclr-none"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out  # the baselines: test_pretraining_on_unlabeled_images_...
    assert "train 160, test 40 images" in out and "student kNN" in out
