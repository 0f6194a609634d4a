"""The conversion stage: a dataset split to ``data/beton/<dataset>/{train,test}.beton``.

Each ``.beton`` holds an RGB ``image`` field (raw pixels for small images, JPEG above
``data.jpeg_above`` pixels) and an integer ``label`` field. ``meta.json`` beside them records the
classes, the sample counts and the per-channel mean and std of the training images, which the
loaders normalise with.

Determinism: FFCV's ``DatasetWriter`` forks workers that race for pages, so with several workers
the same input gives a different file layout each time (``bench/writer.py`` measures it), and a
worker that raises leaves the parent polling forever. :class:`SerialWriter` runs the one worker
job in the calling process instead: the bytes depend only on the source and the params, and a
bad sample's error reaches the caller. Files are written under a temporary name and renamed
when complete, so a killed conversion never leaves a file that looks finished.
"""

from __future__ import annotations

import json
import multiprocessing
import queue
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..config import DataConfig, Params
from ..plumbing.artifacts import (MissingArtifact, atomic_write_text, check_beton, commit, corrupt,
                                  partial_path, read_json)
from .datasets import SPLITS, UNLABELED, DataError, ImageSource, load_source, load_unlabeled

BETON_FIELDS = ("image", "label")


class SerialWriter:
    """Writes an indexable dataset to a ``.beton`` in this process, deterministically."""

    def __init__(self, path: Path, fields: dict, page_size: int):
        from ffcv.writer import DatasetWriter

        self._writer = DatasetWriter(str(path), fields, page_size=page_size, num_workers=1)

    def write(self, dataset, indices: np.ndarray) -> None:
        from ffcv.memory_allocator import MemoryAllocator
        from ffcv.writer import worker_job_indexed_dataset

        w = self._writer
        w.num_samples = len(indices)
        w.prepare()  # writes the header and field table, sizes the metadata block
        # ffcv shares the metadata block between worker processes; in one process a plain
        # buffer does, and needs no cleanup when a sample's error unwinds through the worker.
        shared, w.metadata_sm = w.metadata_sm, _Buffer(len(indices) * w.metadata_type.itemsize)
        shared.close()
        shared.unlink()
        todo: queue.SimpleQueue = queue.SimpleQueue()
        todo.put(list(enumerate(int(i) for i in indices)))  # (position in file, source index)
        todo.put(None)  # no more work
        allocations: queue.SimpleQueue = queue.SimpleQueue()
        done = multiprocessing.Value("Q", 0)
        allocator = MemoryAllocator(w.fname, w.data_region_start, w.page_size)
        worker_job_indexed_dataset(todo, w.metadata_sm, w.metadata_type, w.fields, allocator,
                                   done, allocations, dataset)
        w.finalize(allocations.get())


class _Buffer:
    def __init__(self, size: int):
        self.buf = bytearray(size)


class _Tracked:
    """Wraps a source for the writer: shows progress and accumulates per-channel pixel sums
    (in the writer's fixed order, so the statistics are deterministic too)."""

    def __init__(self, source: ImageSource, total: int, desc: str):
        self.source = source
        self.progress = tqdm(total=total, desc=desc, unit="img", leave=False)
        self.sum = np.zeros(3, dtype=np.float64)
        self.sum_sq = np.zeros(3, dtype=np.float64)
        self.pixels = 0

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        image, label = self.source[index]
        pixels = image.reshape(-1, 3).astype(np.float64) / 255.0
        self.sum += pixels.sum(0)
        self.sum_sq += (pixels * pixels).sum(0)
        self.pixels += len(pixels)
        self.progress.update(1)
        return image, label

    def mean_std(self) -> tuple[list[float], list[float]]:
        mean = self.sum / max(self.pixels, 1)
        std = np.sqrt(np.maximum(self.sum_sq / max(self.pixels, 1) - mean * mean, 0.0))
        std = np.where(std > 1e-6, std, 1.0)  # a constant channel is left unscaled
        return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]


def stratified_subset(labels: np.ndarray, num_classes: int, per_class: int | None,
                      seed: int) -> np.ndarray:
    """Sorted indices of ``per_class`` samples of each class (all of a smaller class), drawn
    with a fixed seed; every index when ``per_class`` is None."""
    if per_class is None:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:per_class]
              for c in range(num_classes)]
    return np.sort(np.concatenate(chosen))


def _fields(cfg: DataConfig, source: ImageSource) -> dict:
    from ffcv.fields import IntField, RGBImageField

    small = (source.shape is not None and cfg.max_resolution is None
             and source.shape[0] * source.shape[1] <= cfg.jpeg_above)
    # 'smart' JPEG-encodes every image to decide, so skip it when all images are small.
    image = (RGBImageField(write_mode="raw") if small else
             RGBImageField(write_mode="smart", smart_threshold=3 * cfg.jpeg_above,
                           jpeg_quality=cfg.jpeg_quality, max_resolution=cfg.max_resolution))
    return {"image": image, "label": IntField()}


def _page_size(source: ImageSource) -> int:
    # ffcv pages must hold the largest encoded sample: 2 MiB (its minimum) is plenty for
    # small fixed-size images; 8 MiB (its default) for anything else.
    if source.shape is not None and source.shape[0] * source.shape[1] * 3 <= 1 << 20:
        return 1 << 21
    return 1 << 23


def write_beton(source: ImageSource, indices: np.ndarray, path: Path,
                cfg: DataConfig) -> tuple[list[float], list[float]]:
    """Write ``source[indices]`` to ``path`` atomically; returns the images' channel mean/std."""
    tmp = partial_path(path)
    tracked = _Tracked(source, len(indices), desc=f"convert {source.name}")
    try:
        SerialWriter(tmp, _fields(cfg, source), _page_size(source)).write(tracked, indices)
        commit(tmp, path)
    finally:
        tracked.progress.close()
        tmp.unlink(missing_ok=True)
    return tracked.mean_std()


PRETRAIN = "pretrain"  # the split pretraining reads when data.pretrain_split is not train


def pretraining_source(cfg: DataConfig, train: ImageSource,
                       train_indices: np.ndarray) -> ImageSource:
    """The images ``data.pretrain_split`` names as one source, every label 0 (the loss reads
    none): the unlabeled images, after the labelled training subset for train+unlabeled."""
    unlabeled = load_unlabeled(cfg)
    if cfg.pretrain_split == "unlabeled":
        return unlabeled
    n = len(train_indices)
    shape = train.shape if train.shape == unlabeled.shape else None

    def load(i: int) -> np.ndarray:
        return train[train_indices[i]][0] if i < n else unlabeled.load_image(i - n)

    def where(i: int) -> str:
        return train.where(int(train_indices[i])) if i < n else unlabeled.where(i - n)

    return ImageSource(f"{train.name}+{unlabeled.name}", UNLABELED,
                       np.zeros(n + len(unlabeled), np.int64), load, where, shape)


def convert(params: Params) -> Path:
    """Convert both splits of ``params.data.dataset`` (and the pretraining split when
    ``data.pretrain_split`` is not train); returns the output folder."""
    cfg = params.data
    out = Path(cfg.out_dir) / cfg.dataset
    sources = {split: load_source(cfg, split) for split in SPLITS}  # fail before writing
    if cfg.pretrain_split != "train":
        indices = stratified_subset(sources["train"].labels, len(sources["train"].classes),
                                    cfg.train_per_class, params.seed)
        sources[PRETRAIN] = pretraining_source(cfg, sources["train"], indices)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.partial-*"):  # left by a killed conversion
        stale.unlink()
    meta: dict = {"dataset": cfg.dataset, "classes": list(sources["train"].classes),
                  "fields": list(BETON_FIELDS), "splits": {}}
    # A fresh meta.json marks a complete conversion: drop the old one before rewriting betons.
    (out / "meta.json").unlink(missing_ok=True)
    if PRETRAIN not in sources:  # a pretraining split of an earlier conversion's params
        (out / f"{PRETRAIN}.beton").unlink(missing_ok=True)
    for split, source in sources.items():
        per_class = cfg.train_per_class if split == "train" else cfg.test_per_class
        indices = (np.arange(len(source)) if split == PRETRAIN else
                   stratified_subset(source.labels, len(source.classes), per_class, params.seed))
        if len(indices) == 0:
            raise DataError(f"{source.name} has no images; check data.root and data.dataset")
        mean, std = write_beton(source, indices, out / f"{split}.beton", cfg)
        counts = np.bincount(source.labels[indices], minlength=len(source.classes))
        meta["splits"][split] = {"file": f"{split}.beton", "num_samples": int(len(indices)),
                                 "per_class": [int(c) for c in counts],
                                 "image_shape": list(source.shape) if source.shape else None}
        if split == "train":
            meta["mean"], meta["std"] = mean, std
        if split == PRETRAIN:  # the loaders normalise with the train split's statistics
            meta["splits"][split].update(labelled=False, images=cfg.pretrain_split,
                                         unlabeled_root=cfg.unlabeled_root, mean=mean, std=std)
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


REWRITE = "python -m momentum_ssl convert"


def read_meta(folder: str | Path) -> dict:
    """The ``meta.json`` of a converted dataset, with a clear error when it is missing or
    damaged."""
    path = Path(folder) / "meta.json"
    if not path.is_file():
        raise MissingArtifact(f"{path} not found: the dataset is not converted (or its "
                              f"conversion did not finish); run {REWRITE}")
    meta = read_json(path, REWRITE, ("classes", "mean", "std", "splits"))
    for split in SPLITS:
        info = meta["splits"].get(split) if isinstance(meta["splits"], dict) else None
        if not isinstance(info, dict) or not {"num_samples", "per_class",
                                              "image_shape"} <= set(info):
            raise corrupt(path, f"lacks the {split} split's counts", REWRITE)
    return meta


def beton_path(folder: str | Path, split: str, meta: dict) -> Path:
    """``folder/<split>.beton``, checked against its FFCV layout and against ``meta``
    (:func:`read_meta`): its sample count and its labels' class counts."""
    path = Path(folder) / f"{split}.beton"
    info = meta["splits"][split]
    records = check_beton(path, REWRITE, BETON_FIELDS, info["num_samples"])
    labels = np.asarray(records["label"]).reshape(-1)
    per_class = info["per_class"]
    if ((labels < 0) | (labels >= len(per_class))).any() or \
            np.bincount(labels, minlength=len(per_class)).tolist() != per_class:
        raise corrupt(path, "has labels whose class counts differ from meta.json's (garbled, "
                      "or from another conversion)", REWRITE)
    return path
