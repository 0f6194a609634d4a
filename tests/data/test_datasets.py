import gzip
from pathlib import Path

import numpy as np
import pytest

from conftest import write_idx
from momentum_ssl.config import DataConfig
from momentum_ssl.data.datasets import (FASHION_MNIST_ROOT, DataError, DatasetNotFound,
                                        load_source)


def fashion(root: Path, split: str = "train"):
    return load_source(DataConfig(dataset="fashion_mnist", root=str(root)), split)


def test_fake_fashion_mnist_reads_as_rgb(fake_fashion):
    source = fashion(fake_fashion)
    assert len(source) == 60 and source.shape == (28, 28)
    image, label = source[13]
    assert image.shape == (28, 28, 3) and image.dtype == np.uint8
    assert label == 3
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()


@pytest.mark.skipif(not FASHION_MNIST_ROOT.is_dir(), reason="dataset-fashion-mnist not installed")
def test_debian_fashion_mnist_is_the_default_root():
    train = load_source(DataConfig(), "train")
    test = load_source(DataConfig(), "test")
    assert (len(train), len(test)) == (60000, 10000)
    assert np.bincount(train.labels).tolist() == [6000] * 10


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFound) as info:
        fashion(tmp_path / "absent")
    msg = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "data.root" in msg


def test_truncated_gzip_names_the_file(fake_fashion):
    path = fake_fashion / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz is corrupt or truncated"):
        fashion(fake_fashion)


def test_truncated_idx_names_file_and_first_incomplete_sample(fake_fashion):
    path = fake_fashion / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: 16 + 28 * 28 * 41 + 100]))
    with pytest.raises(DataError) as info:
        fashion(fake_fashion)
    msg = str(info.value)
    assert "train-images-idx3-ubyte.gz is truncated" in msg and "sample 41" in msg


def test_wrong_magic_is_reported(fake_fashion):
    # a labels file where the images file should be
    write_idx(fake_fashion / "train-images-idx3-ubyte.gz", np.zeros(60, np.uint8))
    with pytest.raises(DataError, match="is not an IDX file of 3-D unsigned bytes"):
        fashion(fake_fashion)


def test_label_out_of_range_names_file_and_sample(fake_fashion):
    labels = np.arange(60) % 10
    labels[17] = 12
    write_idx(fake_fashion / "train-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DataError) as info:
        fashion(fake_fashion)
    msg = str(info.value)
    assert "train-labels-idx1-ubyte.gz: sample 17 has label 12, outside 0..9" in msg


def test_image_and_label_counts_must_agree(fake_fashion):
    write_idx(fake_fashion / "t10k-labels-idx1-ubyte.gz", np.arange(29) % 10)
    with pytest.raises(DataError, match="holds 30 images but .* holds 29 labels"):
        fashion(fake_fashion, "test")


def test_uncompressed_idx_files_are_read_too(tmp_path, fake_fashion):
    root = tmp_path / "plain"
    root.mkdir()
    for f in fake_fashion.iterdir():
        (root / f.name.removesuffix(".gz")).write_bytes(gzip.decompress(f.read_bytes()))
    np.testing.assert_array_equal(fashion(root)[5][0], fashion(fake_fashion)[5][0])


def test_digits_split_is_stratified_and_fixed():
    train = load_source(DataConfig(dataset="digits"), "train")
    test = load_source(DataConfig(dataset="digits"), "test")
    assert len(train) + len(test) == 1797 and len(test) == 360
    assert train.shape == (8, 8) and train[0][0].shape == (8, 8, 3)
    assert train[0][0].max() <= 255 and train.labels.max() == 9
    again = load_source(DataConfig(dataset="digits"), "test")
    np.testing.assert_array_equal(test.labels, again.labels)


@pytest.mark.parametrize("dataset,expected", [("cifar10", "cifar-10-batches-py"),
                                              ("cifar100", "cifar-100-python"),
                                              ("stl10", "stl10_binary")])
def test_missing_torchvision_dataset_says_how_to_get_it(tmp_path, dataset, expected):
    with pytest.raises(DatasetNotFound) as info:
        load_source(DataConfig(dataset=dataset, root=str(tmp_path)), "train")
    msg = str(info.value)
    assert expected in msg and "data.root" in msg and "data.download: true" in msg


def test_cifar10_from_a_local_root(tmp_path, monkeypatch):
    """A CIFAR-10 folder in torchvision's layout (pickled batches), checksums aside."""
    import pickle

    from torchvision.datasets import CIFAR10

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    files = [name for name, _ in CIFAR10.train_list + CIFAR10.test_list]
    for name in files:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                 "labels": list(range(4))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in
                                                                        range(10)]}))
    # torchvision verifies md5 sums of the real files; a fake tree must skip that check
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *a, **k: True)
    source = load_source(DataConfig(dataset="cifar10", root=str(tmp_path)), "test")
    assert len(source) == 4 and source.shape == (32, 32)
    image, label = source[1]
    assert image.shape == (32, 32, 3) and label == 1


def test_imagefolder_needs_a_root_and_split_folders(tmp_path):
    with pytest.raises(DatasetNotFound, match="data.root must name the image folder"):
        load_source(DataConfig(dataset="imagefolder"), "train")
    with pytest.raises(DatasetNotFound, match="needs train/ and test/"):
        load_source(DataConfig(dataset="imagefolder", root=str(tmp_path)), "train")


def test_imagefolder_reads_class_folders_and_names_a_corrupt_file(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        Image.new("L", (20, 10), 40).save(tmp_path / "train" / cls / "a.png")
    (tmp_path / "train" / "dog" / "b.jpg").write_bytes(b"not a jpeg")
    source = load_source(DataConfig(dataset="imagefolder", root=str(tmp_path)), "train")
    assert source.classes == ("cat", "dog") and source.labels.tolist() == [0, 1, 1]
    image, label = source[0]
    assert image.shape == (10, 20, 3) and label == 0
    with pytest.raises(DataError, match=r"dog/b.jpg: cannot read the image"):
        source[2]
