import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, make_params, read_beton
from momentum_ssl.data.convert import convert, read_meta
from momentum_ssl.data.datasets import DataError, DatasetNotFound
from momentum_ssl.data.imagenet100 import CLASSES_FILE, build_subset, imagenet100_classes

CLASSES = imagenet100_classes()


def test_the_list_is_cmcs_file_byte_for_byte():
    ids = CLASSES
    assert len(ids) == 100 and len(set(ids)) == 100
    assert all(re.fullmatch(r"n\d{8}", i) for i in ids)
    # git's blob id of HobbitLong/CMC's imagenet100.txt (commit 7b227be): the same bytes, in order
    body = "".join(f"{i}\n" for i in ids).encode()
    blob = hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()
    assert blob == "6dccf9be4f2f5efe33d0f5ae03a20bc438d3e658"
    assert ids[:2] == ("n02869837", "n01749939") and ids[-1] == "n02090622"


@pytest.fixture
def fake_imagenet(tmp_path: Path) -> Path:
    """An ILSVRC-2012-shaped root: the 100 classes plus one more, tiny non-square JPEGs
    (two a class in train/, one in val/)."""
    from PIL import Image

    root = tmp_path / "imagenet"
    rng = np.random.default_rng(0)
    for wnid in (*CLASSES, "n99999999"):
        for split, count in (("train", 2), ("val", 1)):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for k in range(count):
                pixels = rng.integers(0, 256, (10 + k, 14, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{wnid}_{k}.JPEG", quality=90)
    return root


def test_builds_links_to_the_100_classes_and_converts(tmp_path, fake_imagenet):
    out = build_subset(fake_imagenet, tmp_path / "raw" / "imagenet100")
    for split in ("train", "val"):
        links = sorted((out / split).iterdir())
        assert [p.name for p in links] == sorted(CLASSES)  # the extra class is left out
        assert all(p.is_symlink() and p.resolve() == (fake_imagenet / split / p.name).resolve()
                   for p in links)
    assert not any(p.is_file() and not p.is_symlink() for p in (out / "train").rglob("*"))
    record = json.loads((out / "subset.json").read_text())
    assert record["classes"] == list(CLASSES) and record["root"] == str(fake_imagenet)
    assert sorted(p.name for p in out.parent.iterdir()) == ["imagenet100"]  # no partial left

    params = make_params(tmp_path, data={"dataset": "imagefolder", "root": str(out)})
    meta = read_meta(convert(params))
    assert meta["classes"] == sorted(CLASSES)
    assert meta["splits"]["train"]["per_class"] == [2] * 100
    assert meta["splits"]["test"]["per_class"] == [1] * 100  # val/ is the test split
    images, labels = read_beton(Path(params.data.out_dir) / "imagefolder" / "test.beton")
    assert len(images) == 100 and labels.tolist() == list(range(100))


def test_a_root_missing_a_class_is_refused_by_name_and_nothing_is_written(tmp_path,
                                                                          fake_imagenet):
    shutil.rmtree(fake_imagenet / "train" / CLASSES[7])
    for f in (fake_imagenet / "val" / CLASSES[3]).iterdir():  # an empty folder counts as missing
        f.unlink()
    out = tmp_path / "raw" / "imagenet100"
    with pytest.raises(DatasetNotFound, match=rf"train lacks 1 of the 100 ImageNet-100 classes "
                                              rf"\(missing or empty: {CLASSES[7]}\); point "
                                              "--root at"):
        build_subset(fake_imagenet, out)
    assert not out.parent.exists()
    (fake_imagenet / "train" / CLASSES[7]).mkdir()
    (fake_imagenet / "train" / CLASSES[7] / "x.JPEG").write_bytes(b"")
    with pytest.raises(DatasetNotFound, match=rf"val lacks 1 of .*: {CLASSES[3]}\)"):
        build_subset(fake_imagenet, out)


def test_the_command_prints_one_line_naming_the_first_missing_classes(tmp_path, fake_imagenet,
                                                                       capsys):
    from momentum_ssl.cli import main

    for wnid in CLASSES[:6]:
        shutil.rmtree(fake_imagenet / "val" / wnid)
    out = tmp_path / "subset"
    assert main(["imagenet100", "--root", str(fake_imagenet), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lacks 6 of the 100" in err
    assert ", ".join(CLASSES[:5]) + ", ...)" in err and CLASSES[5] not in err
    assert main(["imagenet100", "--root", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "nowhere not found" in capsys.readouterr().err
    shutil.copytree(fake_imagenet / "train", fake_imagenet / "val", dirs_exist_ok=True)
    assert main(["imagenet100", "--root", str(fake_imagenet), "--out", str(out)]) == 0
    assert f"set data.root: {out}" in capsys.readouterr().out


def test_a_failed_build_leaves_nothing_that_looks_complete(tmp_path, fake_imagenet,
                                                          monkeypatch):
    out = tmp_path / "imagenet100"
    real, made = os.symlink, []

    def dying(src, dst, **kwargs):
        if len(made) == 150:
            raise OSError("disk full")
        made.append(dst)
        real(src, dst, **kwargs)

    monkeypatch.setattr(os, "symlink", dying)
    with pytest.raises(OSError, match="disk full"):
        build_subset(fake_imagenet, out)
    assert list(tmp_path.glob("*imagenet100*")) == []  # neither the folder nor its partial
    # a build killed outright leaves only its hidden partial, which the next build removes
    monkeypatch.setattr(os, "symlink", real)
    partial = tmp_path / ".imagenet100.partial-1"
    (partial / "train").mkdir(parents=True)
    os.symlink(fake_imagenet / "train" / CLASSES[0], partial / "train" / CLASSES[0])
    build_subset(fake_imagenet, out)
    assert [p.name for p in tmp_path.glob("*imagenet100*")] == ["imagenet100"]
    assert len(list((fake_imagenet / "train" / CLASSES[0]).iterdir())) == 2  # target intact


def test_a_rebuild_replaces_its_own_folder_and_refuses_any_other(tmp_path, fake_imagenet):
    out = build_subset(fake_imagenet, tmp_path / "imagenet100")
    build_subset(fake_imagenet, out)
    assert [p.name for p in tmp_path.glob("*imagenet100*")] == ["imagenet100"]
    assert len(list((fake_imagenet / "train" / CLASSES[0]).iterdir())) == 2
    assert (out / "train" / CLASSES[0]).is_symlink()
    other = tmp_path / "mine"
    other.mkdir()
    with pytest.raises(DataError, match=r"mine exists and was not built by this command"):
        build_subset(fake_imagenet, other)


@pytest.mark.parametrize("profile", ["imagenet100_resnet18", "imagenet100_resnet50",
                                     "imagenet100_vit_small"])
def test_the_imagenet100_profiles_read_the_folder_the_command_builds(profile):
    from momentum_ssl.cli import FLAGS
    from momentum_ssl.config import load_params

    data = load_params(REPO / "params" / f"{profile}.yaml").data
    assert (data.dataset, data.root) == ("imagefolder", FLAGS["subset-to"][1]["default"])


def test_a_damaged_list_is_refused(monkeypatch, tmp_path):
    import momentum_ssl.data.imagenet100 as module

    (tmp_path / CLASSES_FILE).write_text("# header\n" + "n01234567\n" * 100)
    monkeypatch.setattr(module, "files", lambda package: tmp_path)
    with pytest.raises(DataError, match=r"damaged: 1 unique IDs of 100"):
        imagenet100_classes()
