"""The dataset registry: each entry turns (split, DataConfig) into an :class:`ImageSource`.

An :class:`ImageSource` is an indexable split whose items are ``(uint8 HxWx3 array, int label)``.
Labels are known up front (stratified subsets and range checks need no image decoding); images
are produced on demand. A missing dataset raises :class:`DatasetNotFound` saying how to get it;
a corrupt or inconsistent one raises :class:`DataError` naming the file and the sample.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import DataConfig

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal",
                         "shirt", "sneaker", "bag", "ankle boot")
SPLITS = ("train", "test")


class DataError(ValueError):
    """A dataset that exists but cannot be used as it is (corrupt, truncated, inconsistent)."""


class DatasetNotFound(FileNotFoundError):
    """A dataset that is not where the params say; the message says how to get it."""


@dataclass(frozen=True)
class ImageSource:
    name: str  # "<dataset>/<split>", for messages
    classes: tuple[str, ...]
    labels: np.ndarray  # (N,) int64
    load_image: Callable[[int], np.ndarray]
    where: Callable[[int], str]  # where sample i comes from, for messages
    shape: tuple[int, int] | None = None  # (H, W) when every image has it

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        """One validated sample; a bad one raises :class:`DataError` naming it."""
        index = int(index)
        try:
            image = self.load_image(index)
        except (OSError, ValueError, SyntaxError) as err:  # PIL reports bad files with these
            raise DataError(f"{self.where(index)}: cannot read the image ({err}); "
                            "replace or remove that file") from err
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
                or image.shape[2] != 3 or min(image.shape[:2]) < 1:
            desc = (f"{image.dtype} array of shape {image.shape}"
                    if isinstance(image, np.ndarray) else type(image).__name__)
            raise DataError(f"{self.where(index)}: expected a uint8 HxWx3 image, got {desc}")
        return image, int(self.labels[index])


def _make_source(name: str, classes: tuple[str, ...], labels: np.ndarray,
                 load_image: Callable[[int], np.ndarray], where: Callable[[int], str],
                 label_file: str, shape: tuple[int, int] | None = None) -> ImageSource:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{label_file}: labels must be a 1-D integer array, got "
                        f"{labels.dtype} of shape {labels.shape}")
    bad = np.flatnonzero((labels < 0) | (labels >= len(classes)))
    if len(bad):
        raise DataError(f"{label_file}: sample {bad[0]} has label {labels[bad[0]]}, outside "
                        f"0..{len(classes) - 1} ({len(bad)} samples out of range); the file is "
                        "corrupt or belongs to another dataset")
    return ImageSource(name, classes, labels.astype(np.int64), load_image, where, shape)


def _gray_to_rgb(images: np.ndarray) -> Callable[[int], np.ndarray]:
    return lambda i: np.repeat(images[i][:, :, None], 3, axis=2)


# --- Fashion-MNIST (Debian's dataset-fashion-mnist: IDX files, gzipped) -------------------

_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _find_idx(root: Path, stem: str) -> Path | None:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes (LeCun's MNIST format) with ``ndim`` dimensions."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path} is corrupt or truncated ({err}); reinstall it "
                        "(sudo apt-get install --reinstall dataset-fashion-mnist) or replace "
                        "the file") from None
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: {len(raw)} bytes, shorter than its IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != 0x0800 + ndim:
        raise DataError(f"{path} is not an IDX file of {ndim}-D unsigned bytes "
                        f"(magic {magic:#010x}, expected {0x0800 + ndim:#010x})")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        per_sample = int(np.prod(dims[1:])) if ndim > 1 else 1
        complete = (len(raw) - header) // per_sample
        raise DataError(f"{path} is truncated or padded: its header promises {dims[0]} samples "
                        f"({expected} bytes) but it holds {len(raw)} bytes; sample {complete} "
                        "is the first incomplete one. Reinstall or replace the file")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def fashion_mnist(split: str, cfg: DataConfig) -> ImageSource:
    root = Path(cfg.root) if cfg.root else FASHION_MNIST_ROOT
    image_stem, label_stem = _IDX_FILES[split]
    image_file, label_file = _find_idx(root, image_stem), _find_idx(root, label_stem)
    if image_file is None or label_file is None:
        raise DatasetNotFound(
            f"Fashion-MNIST {split} split not found in {root} (expected {image_stem}.gz and "
            f"{label_stem}.gz). Install Debian's package: sudo apt-get install "
            "dataset-fashion-mnist (files land in /usr/share/datasets/fashion-mnist), or set "
            "data.root to a folder that holds the four IDX files")
    images, labels = read_idx(image_file, 3), read_idx(label_file, 1)
    if len(images) != len(labels):
        raise DataError(f"{image_file} holds {len(images)} images but {label_file} holds "
                        f"{len(labels)} labels; the two files must come from the same split")
    return _make_source(f"fashion_mnist/{split}", FASHION_MNIST_CLASSES, labels,
                        _gray_to_rgb(images), lambda i: f"{image_file}, sample {i}",
                        str(label_file), shape=images.shape[1:3])


# --- scikit-learn's bundled digits --------------------------------------------------------

def digits(split: str, cfg: DataConfig) -> ImageSource:
    """The 1,797 8x8 digits bundled with scikit-learn, split 80/20 stratified with a fixed seed
    (the dataset has no official split). Pixels 0..16 are scaled to 0..255."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    index = np.arange(len(images))
    train, test = train_test_split(index, test_size=0.2, random_state=0, stratify=bunch.target)
    chosen = np.sort(train if split == "train" else test)
    images, labels = images[chosen], bunch.target[chosen]
    return _make_source(f"digits/{split}", tuple(str(d) for d in range(10)), labels,
                        _gray_to_rgb(images), lambda i: f"sklearn load_digits sample {chosen[i]}",
                        "sklearn load_digits", shape=(8, 8))


# --- torchvision datasets read from a local root ------------------------------------------

def _default_root(cfg: DataConfig) -> Path:
    return Path(cfg.root) if cfg.root else Path("data/raw") / cfg.dataset


def _torchvision(cfg: DataConfig, split: str, build: Callable[[str], object],
                 expected: str) -> ImageSource:
    root = _default_root(cfg)
    try:
        ds = build(str(root))
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted..."
        raise DatasetNotFound(
            f"{cfg.dataset} not found or corrupted in {root} (expected {expected} there; "
            f"torchvision said: {err}). Set data.root to the folder that holds it, or set "
            "data.download: true to fetch it (needs a network)") from None
    images = np.asarray(ds.data)
    if images.ndim == 4 and images.shape[1] == 3:  # STL-10 stores NCHW
        images = images.transpose(0, 2, 3, 1)
    images = np.ascontiguousarray(images)
    labels = np.asarray(ds.targets if hasattr(ds, "targets") else ds.labels)  # STL-10: labels
    classes = tuple(ds.classes)
    return _make_source(f"{cfg.dataset}/{split}", classes, labels, lambda i: images[i],
                        lambda i: f"{root} ({cfg.dataset} {split}), sample {i}",
                        f"{root} ({cfg.dataset} {split} labels)", shape=images.shape[1:3])


def cifar10(split: str, cfg: DataConfig) -> ImageSource:
    from torchvision.datasets import CIFAR10
    return _torchvision(cfg, split, lambda root: CIFAR10(root, train=split == "train",
                                                         download=cfg.download),
                        "cifar-10-batches-py/")


def cifar100(split: str, cfg: DataConfig) -> ImageSource:
    from torchvision.datasets import CIFAR100
    return _torchvision(cfg, split, lambda root: CIFAR100(root, train=split == "train",
                                                          download=cfg.download),
                        "cifar-100-python/")


def stl10(split: str, cfg: DataConfig) -> ImageSource:
    from torchvision.datasets import STL10
    return _torchvision(cfg, split, lambda root: STL10(root, split=split, download=cfg.download),
                        "stl10_binary/")


# --- any class-per-folder tree ------------------------------------------------------------

def imagefolder(split: str, cfg: DataConfig) -> ImageSource:
    """``root/<split>/<class>/<image>``; the test split may also be called ``val``."""
    from PIL import Image
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    if not cfg.root:
        raise DatasetNotFound("data.root must name the image folder for dataset imagefolder "
                              "(a folder with train/ and test/ or val/, one sub-folder per class)")
    root = Path(cfg.root)
    folders = [root / split] + ([root / "val"] if split == "test" else [])
    folder = next((f for f in folders if f.is_dir()), None)
    if folder is None:
        raise DatasetNotFound(f"no {' or '.join(str(f) for f in folders)} folder: an imagefolder "
                              "root needs train/ and test/ (or val/), one sub-folder per class")
    classes, class_to_idx = find_classes(str(folder))
    try:
        samples = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as err:
        raise DataError(f"{folder}: {err}") from None
    paths = [p for p, _ in samples]
    labels = np.array([c for _, c in samples], dtype=np.int64)

    def load(i: int) -> np.ndarray:
        with Image.open(paths[i]) as img:
            return np.asarray(img.convert("RGB"))

    return _make_source(f"imagefolder/{split}", tuple(classes), labels, load,
                        lambda i: paths[i], str(folder))


# --- unlabeled images, for pretraining ---------------------------------------------------

UNLABELED = ("unlabeled",)  # the one pseudo-class of a pretraining split: every label is 0


def image_folder(root: Path) -> ImageSource:
    """Every image under ``root`` at any depth, in sorted path order, without classes."""
    from PIL import Image
    from torchvision.datasets.folder import IMG_EXTENSIONS

    if not root.is_dir():
        raise DatasetNotFound(f"data.unlabeled_root {root} is not a folder; point it at a "
                              "folder of images (any depth, no classes needed)")
    paths = sorted(str(p) for p in root.rglob("*")
                   if p.suffix.lower() in IMG_EXTENSIONS and p.is_file())
    if not paths:
        raise DataError(f"data.unlabeled_root {root} holds no images (extensions "
                        f"{', '.join(IMG_EXTENSIONS)}); point it at a folder of images")

    def load(i: int) -> np.ndarray:
        with Image.open(paths[i]) as img:
            return np.asarray(img.convert("RGB"))

    return _make_source(f"unlabeled/{root.name}", UNLABELED, np.zeros(len(paths), np.int64),
                        load, lambda i: paths[i], str(root))


def stl10_unlabeled(cfg: DataConfig) -> ImageSource:
    """STL-10's 100,000 unlabeled 96x96 images, memory-mapped from
    ``stl10_binary/unlabeled_X.bin`` (uint8, each image channel-major and column-major, as
    the dataset's README describes): none is read before the writer asks for it."""
    path = _default_root(cfg) / "stl10_binary" / "unlabeled_X.bin"
    if not path.is_file():
        raise DatasetNotFound(f"{path} not found: STL-10's unlabeled split; copy "
                              "stl10_binary/ there, or set data.download: true (needs a network)")
    size = 3 * 96 * 96
    if path.stat().st_size == 0 or path.stat().st_size % size:
        raise DataError(f"{path} is truncated or padded: {path.stat().st_size} bytes is not a "
                        f"whole number of {size}-byte images; replace the file")
    images = np.memmap(path, np.uint8, mode="r").reshape(-1, 3, 96, 96)
    return _make_source("stl10/unlabeled", UNLABELED, np.zeros(len(images), np.int64),
                        lambda i: np.ascontiguousarray(images[i].transpose(2, 1, 0)),
                        lambda i: f"{path}, sample {i}", str(path), shape=(96, 96))


def load_unlabeled(cfg: DataConfig) -> ImageSource:
    """The unlabeled images ``data.pretrain_split`` reads: ``data.unlabeled_root``'s, or the
    dataset's own unlabeled split."""
    if cfg.unlabeled_root is not None:
        return image_folder(Path(cfg.unlabeled_root))
    if cfg.dataset == "stl10":
        if cfg.download:
            stl10("train", cfg)  # torchvision fetches the whole archive, unlabeled split included
        return stl10_unlabeled(cfg)
    raise DatasetNotFound(f"{cfg.dataset} has no unlabeled split; set data.unlabeled_root")


REGISTRY: dict[str, Callable[[str, DataConfig], ImageSource]] = {
    "fashion_mnist": fashion_mnist, "digits": digits, "cifar10": cifar10,
    "cifar100": cifar100, "stl10": stl10, "imagefolder": imagefolder,
}


def load_source(cfg: DataConfig, split: str) -> ImageSource:
    """The ``split`` ('train' or 'test') of the dataset ``cfg.dataset`` names."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return REGISTRY[cfg.dataset](split, cfg)
