import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, make_params, read_beton, write_idx
from momentum_ssl.config import DataConfig
from momentum_ssl.data.convert import convert, read_meta, stratified_subset
from momentum_ssl.data.datasets import FASHION_MNIST_ROOT, DataError, load_source


def test_round_trip_pixels_and_labels_equal_the_source(tmp_path, fake_fashion):
    params = make_params(tmp_path, data={"root": str(fake_fashion)})
    out = convert(params)
    for split in ("train", "test"):
        source = load_source(params.data, split)
        images, labels = read_beton(out / f"{split}.beton")
        expected = np.stack([source[i][0] for i in range(len(source))])
        np.testing.assert_array_equal(images, expected)
        np.testing.assert_array_equal(labels, source.labels)


@pytest.mark.skipif(not FASHION_MNIST_ROOT.is_dir(), reason="dataset-fashion-mnist not installed")
def test_round_trip_on_a_stratified_subset_of_real_fashion_mnist(tmp_path):
    params = make_params(tmp_path, data={"train_per_class": 7, "test_per_class": 3})
    out = convert(params)
    source = load_source(params.data, "train")
    images, labels = read_beton(out / "train.beton")
    chosen = stratified_subset(source.labels, 10, 7, params.seed)
    assert len(images) == 70 and np.bincount(labels).tolist() == [7] * 10
    np.testing.assert_array_equal(images, np.stack([source[i][0] for i in chosen]))
    np.testing.assert_array_equal(labels, source.labels[chosen])
    meta = read_meta(out)
    assert meta["splits"]["test"]["num_samples"] == 30
    assert meta["splits"]["train"]["per_class"] == [7] * 10


def test_meta_records_train_channel_statistics(tmp_path, fake_fashion):
    params = make_params(tmp_path, data={"root": str(fake_fashion)})
    meta = read_meta(convert(params))
    images = np.stack([img for img, _ in (load_source(params.data, "train")[i]
                                          for i in range(60))]) / 255.0
    np.testing.assert_allclose(meta["mean"], images.mean(axis=(0, 1, 2)), atol=1e-6)
    np.testing.assert_allclose(meta["std"], images.std(axis=(0, 1, 2)), atol=1e-6)
    assert meta["classes"][0] == "t-shirt/top" and meta["fields"] == ["image", "label"]


def test_rewrite_is_byte_identical(tmp_path, fake_fashion):
    first = convert(make_params(tmp_path / "a", data={"root": str(fake_fashion)}))
    second = convert(make_params(tmp_path / "b", data={"root": str(fake_fashion)}))
    for name in ("train.beton", "test.beton", "meta.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    # and in place, over the previous output
    before = (first / "train.beton").read_bytes()
    convert(make_params(tmp_path / "a", data={"root": str(fake_fashion)}))
    assert (first / "train.beton").read_bytes() == before


def test_stratified_subset_is_seeded_sorted_and_balanced():
    labels = np.repeat(np.arange(4), 25)[np.random.default_rng(1).permutation(100)]
    a = stratified_subset(labels, 4, 5, seed=0)
    assert np.bincount(labels[a]).tolist() == [5] * 4 and (np.diff(a) > 0).all()
    np.testing.assert_array_equal(a, stratified_subset(labels, 4, 5, seed=0))
    assert not np.array_equal(a, stratified_subset(labels, 4, 5, seed=1))
    assert len(stratified_subset(labels, 4, 100, seed=0)) == 100  # a class smaller: all of it
    np.testing.assert_array_equal(stratified_subset(labels, 4, None, seed=0), np.arange(100))


def _imagefolder(root: Path, sizes: list[tuple[int, int]]) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(sizes):
        for split in ("train", "test"):
            folder = root / split / f"class{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            # smooth images, so JPEG's error is small
            yy, xx = np.mgrid[0:h, 0:w]
            image = np.stack([(xx * 255 // w), (yy * 255 // h), np.full_like(xx, 40 * i)], -1)
            image = (image + rng.integers(0, 3, image.shape)).clip(0, 255).astype(np.uint8)
            Image.fromarray(image).save(folder / f"img{i}.png")


def test_large_images_are_stored_as_jpeg_small_ones_raw(tmp_path):
    from ffcv.reader import Reader

    root = tmp_path / "folder"
    _imagefolder(root, [(16, 12), (150, 120), (20, 20), (130, 100)])  # 2 above 96*96 pixels
    params = make_params(tmp_path, data={"dataset": "imagefolder", "root": str(root)})
    out = convert(params)
    modes = Reader(str(out / "train.beton")).metadata["f0"]["mode"]  # fields are f0, f1
    source = load_source(params.data, "train")
    big = [source[i][0].shape[0] * source[i][0].shape[1] > 9216 for i in range(len(source))]
    assert modes.tolist() == [0 if b else 1 for b in big]  # ffcv: 0 = jpg, 1 = raw
    meta = read_meta(out)
    assert meta["splits"]["train"]["image_shape"] is None and meta["classes"] == ["class0",
                                                                                  "class1"]


def test_jpeg_images_decode_close_to_the_source(tmp_path):
    from ffcv.fields.decoders import CenterCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption

    root = tmp_path / "folder"
    _imagefolder(root, [(120, 120), (110, 110)])
    params = make_params(tmp_path, data={"dataset": "imagefolder", "root": str(root),
                                         "jpeg_quality": 95})
    out = convert(params)
    loader = Loader(str(out / "test.beton"), batch_size=2, num_workers=1,
                    order=OrderOption.SEQUENTIAL, drop_last=False,
                    pipelines={"image": [CenterCropRGBImageDecoder((120, 120), 1.0)],
                               "label": None})
    (decoded,) = next(iter(loader))
    source = load_source(params.data, "test")
    first = source[0][0].astype(float)  # 120 x 120 decoded at 120 x 120: no resampling
    assert np.abs(np.asarray(decoded[0], float) - first).mean() < 3.0


def test_a_corrupt_image_fails_naming_the_file_and_leaves_nothing(tmp_path):
    root = tmp_path / "folder"
    _imagefolder(root, [(16, 16), (16, 16)])
    (root / "train" / "class1" / "broken.png").write_bytes(b"\x89PNG truncated")
    params = make_params(tmp_path, data={"dataset": "imagefolder", "root": str(root)})
    with pytest.raises(DataError, match=r"class1/broken.png: cannot read the image"):
        convert(params)
    out = Path(params.data.out_dir) / "imagefolder"
    assert sorted(p.name for p in out.iterdir()) == []  # no beton, no meta, no partial file


def test_wrong_image_shape_names_the_sample(tmp_path, monkeypatch):
    source = load_source(DataConfig(dataset="digits"), "train")
    bad = dataclasses.replace(source, where=lambda i: f"digits sample {i}", load_image=lambda i:
                              np.zeros((8, 8), np.uint8) if i == 4 else source.load_image(i))
    monkeypatch.setattr("momentum_ssl.data.convert.load_source", lambda cfg, split: bad)
    with pytest.raises(DataError, match=r"digits sample 4: expected a uint8 HxWx3 image, got "
                                        r"uint8 array of shape \(8, 8\)"):
        convert(make_params(tmp_path, data={"dataset": "digits"}))


KILLER = textwrap.dedent("""
    import dataclasses, os, signal, sys
    import momentum_ssl.data.convert as conv
    from momentum_ssl.config import load_params
    real = conv.load_source
    def dying(cfg, split):
        source = real(cfg, split)
        def load(i):
            if i == 30:
                os.kill(os.getpid(), signal.SIGKILL)
            return source.load_image(i)
        return dataclasses.replace(source, load_image=load)
    conv.load_source = dying
    conv.convert(load_params(sys.argv[1]))
""")


def test_a_killed_conversion_leaves_no_complete_looking_file_and_reruns_clean(tmp_path,
                                                                             fake_fashion):
    import yaml

    params_file = tmp_path / "params.yaml"
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    data["data"].update(root=str(fake_fashion), out_dir=str(tmp_path / "beton"))
    params_file.write_text(yaml.safe_dump(data))
    run = subprocess.run([sys.executable, "-c", KILLER, str(params_file)], cwd=tmp_path)
    assert run.returncode == -9
    out = tmp_path / "beton" / "fashion_mnist"
    left = sorted(p.name for p in out.iterdir())
    assert not any(name.endswith(".beton") or name == "meta.json" for name in left), left
    assert any(".partial-" in name for name in left)  # the half-written file, clearly named

    done = subprocess.run([sys.executable, "-m", "momentum_ssl", "convert", "--params",
                           str(params_file)], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "test.beton", "train.beton"]
    assert json.loads((out / "meta.json").read_text())["splits"]["train"]["num_samples"] == 60
