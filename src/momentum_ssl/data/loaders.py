"""Loaders over converted datasets.

- :class:`TwoViewLoader` (FFCV): the ``image`` field decoded once to uint8, then two seeded
  :class:`ViewAugment` modules applied to the batch in the consumer's thread, plus the label;
  yields ``(view1, view2, labels)``, or with ``augment.local_crops`` = m > 0 (multi-crop)
  ``(view1, view2, local1, ..., localm, labels)``, each local crop from its own seeded
  :class:`LocalCropAugment`. Each epoch's batches depend only on (seed, epoch, rank).
- :class:`EvalLoader` (FFCV): images in file order (or a subset of them), no augmentation;
  yields ``(images, labels)``.
- :func:`read_labels`: every label of a split, from the ``.beton``'s metadata (no decoding).
- :func:`read_raw_images`: chosen images stored raw (not JPEG), straight from the file.
- :func:`torchvision_two_view_loader`: a ``torch.utils.data.DataLoader`` over the same source
  images with the same recipe as per-image torchvision transforms, for comparison.
"""

from __future__ import annotations

import dataclasses
import functools
import queue
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import AugmentConfig, LoaderConfig, Params
from ..config.data import local_size
from ..plumbing.artifacts import BETON_IMAGE_MODES, MissingArtifact, check_beton
from ..plumbing.compute import restore_threads
from .augment import (EvalTransform, LocalCropAugment, ViewAugment, stream_seed,
                      to_device_at_once, torchvision_view)
from .convert import (BETON_FIELDS, PRETRAIN, REWRITE, beton_path, read_meta,
                      stratified_subset)
from .datasets import ImageSource, load_source


def beton_folder(params: Params) -> Path:
    return Path(params.data.out_dir) / params.data.dataset


EVAL_CROP = 224 / 256  # Resize(256) then CenterCrop(224), as every reference's evaluation


def _decoder(meta: dict, split: str, size: int):
    """The evaluation's decoder, and the training views' where every image has one size
    (images of varying size train through :func:`whole_image_crop_decoder`)."""
    from ffcv.fields.decoders import CenterCropRGBImageDecoder, SimpleRGBImageDecoder

    if meta["splits"][split]["image_shape"] is not None:
        return SimpleRGBImageDecoder()
    # the centre square of side 224/256 of the shorter side, resized to size x size: the
    # same pixels as Resize(256 * size / 224) then CenterCrop(size)
    return CenterCropRGBImageDecoder((size, size), ratio=EVAL_CROP)


def view_crops(augment: AugmentConfig) -> list[tuple[int, tuple[float, float]]]:
    """(side, area scale range) of each view's crop, in the loader's order: the two global
    views, then the local crops."""
    return [(augment.size, augment.crop_scale)] * 2 + \
        [(local_size(augment), augment.local_crop_scale)] * augment.local_crops


@functools.cache
def _read_int64():
    """A compiled ``read(address) -> int64``: the value at a memory address, read when the
    compiled code runs. Numba freezes the arrays a compiled function captures into constants,
    so this is how FFCV's compiled pipeline sees the epoch the loader set after compiling it."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def read(typingctx, address):
        def codegen(context, builder, signature, args):
            return builder.load(builder.inttoptr(args[0], ir.IntType(64).as_pointer()))
        return types.int64(types.int64), codegen

    return read


@functools.cache
def _whole_image_crop_decoder_class():
    """:class:`WholeImageCropDecoder`'s class, defined when first used (FFCV's classes are
    imported only where a loader needs them)."""
    from dataclasses import replace

    from ffcv.fields.rgb_image import IMAGE_MODES
    from ffcv.libffcv import imdecode, resize_crop
    from ffcv.pipeline.allocation_query import AllocationQuery
    from ffcv.pipeline.compiler import Compiler
    from ffcv.pipeline.operation import Operation

    class WholeImageCropDecoder(Operation):
        """Decodes each whole stored image once and cuts every view's crop from it: a box drawn
        as torchvision's ``RandomResizedCrop`` (:func:`~momentum_ssl.data.augment.whole_image_box`)
        from the stream of (seed, epoch, sample index, view), resized to the view's side:
        shrunk along both axes by FFCV's ``resize_crop`` (OpenCV, area interpolation, as FFCV's
        own ``RandomResizedCropRGBImageDecoder``), enlarged along either bilinearly
        (:func:`~momentum_ssl.data.resample.crop_resize`: OpenCV's area interpolation is
        nearly nearest-neighbour when enlarging). Output per sample: the views' (side, side, 3)
        uint8 pixels, one after the other in one flat row (:meth:`split` cuts them apart)."""

        def __init__(self, crops: list[tuple[int, tuple[float, float]]],
                     ratio: tuple[float, float], seed: int):
            super().__init__()
            self.sides = [int(side) for side, _ in crops]
            self.scales = np.array([scale for _, scale in crops], np.float64).reshape(-1, 2)
            self.offsets = np.cumsum([0] + [3 * side * side for side in self.sides])
            self.ratio, self.seed = (float(ratio[0]), float(ratio[1])), int(seed)
            self.epoch = np.zeros(1, np.int64)  # read by the compiled code at every batch

        def set_epoch(self, epoch: int) -> None:
            self.epoch[0] = epoch

        def split(self, batch: torch.Tensor) -> list[torch.Tensor]:
            """(N, total) -> each view's (N, 3, side, side) uint8, views of ``batch``."""
            return [batch[:, int(start):int(start) + 3 * side * side]
                    .view(-1, side, side, 3).permute(0, 3, 1, 2)
                    for start, side in zip(self.offsets, self.sides)]

        def declare_state_and_memory(self, previous_state):
            uint8 = np.dtype("<u1")
            shape = (int(self.offsets[-1]),)
            largest = np.uint64(self.metadata["height"].max()) * \
                np.uint64(self.metadata["width"].max()) * np.uint64(3)
            return (replace(previous_state, jit_mode=True, shape=shape, dtype=uint8),
                    (AllocationQuery(shape, uint8), AllocationQuery((largest,), uint8)))

        def generate_code(self):
            from .augment import whole_image_box
            from .resample import crop_resize

            jpg = IMAGE_MODES["jpg"]
            mem_read = self.memory_read
            my_range = Compiler.get_iterator()
            imdecode_c = Compiler.compile(imdecode)
            resize_crop_c = Compiler.compile(resize_crop)
            box, read, enlarge = whole_image_box(), _read_int64(), crop_resize()
            epoch_at = self.epoch.ctypes.data
            sides, offsets = np.array(self.sides, np.int64), self.offsets.astype(np.int64)
            scales, (ratio_lo, ratio_hi), seed = self.scales, self.ratio, self.seed
            views = len(sides)

            def decode(batch_indices, my_storage, metadata, storage_state):
                destination, temp_storage = my_storage
                epoch = read(epoch_at)
                for dst_ix in my_range(len(batch_indices)):
                    source_ix = batch_indices[dst_ix]
                    field = metadata[source_ix]
                    image_data = mem_read(field["data_ptr"], storage_state)
                    height, width = np.uint32(field["height"]), np.uint32(field["width"])
                    if field["mode"] == jpg:
                        image = temp_storage[dst_ix]
                        imdecode_c(image_data, image, height, width, height, width, 0, 0, 1, 1,
                                   False, False)
                        image = image.reshape(-1)[:3 * height * width].reshape(height, width, 3)
                    else:
                        image = image_data.reshape(height, width, 3)
                    for v in range(views):
                        top, left, h, w = box(np.int64(height), np.int64(width), scales[v, 0],
                                              scales[v, 1], ratio_lo, ratio_hi, seed, epoch,
                                              np.int64(source_ix), np.int64(v))
                        side = sides[v]
                        out = destination[dst_ix, offsets[v]:offsets[v + 1]].reshape(
                            side, side, 3)
                        if h < side or w < side:  # enlarged: INTER_AREA is near-nearest
                            enlarge(image, top, top + h, left, left + w, out)
                        else:
                            resize_crop_c(image, top, top + h, left, left + w, out)
                return destination[:len(batch_indices)]

            decode.is_parallel = True
            return decode

    return WholeImageCropDecoder


def whole_image_crop_decoder(augment: AugmentConfig, seed: int):
    """The training views' decoder for images of varying size (``WholeImageCropDecoder``):
    each view's crop from the whole image, seeded by (``seed``, epoch, sample index, view)."""
    return _whole_image_crop_decoder_class()(view_crops(augment), augment.crop_ratio, seed)


def _workers(requested: int) -> int:
    """FFCV's worker count, at most the threads numba may start on this machine (its CPU
    count): a GPU profile's 8 workers on a 2-core machine would stop numba with "the number of
    threads must be between 1 and 2". Which image goes where does not depend on it."""
    import numba

    return max(1, min(requested, numba.config.NUMBA_NUM_THREADS))


def _ships(device: torch.device) -> bool:
    """Whether the loader's pipelines copy each batch to ``device`` (FFCV's ``ToDevice``)."""
    return device.type == "cuda"


def _image_ops(device: torch.device, transform: torch.nn.Module | None = None) -> list:
    """Decoded uint8 pixels as an NCHW tensor on ``device`` (on a GPU: ship uint8, not
    floats), then ``transform`` in FFCV's loader thread, if given. The NHWC -> NCHW copy comes
    before ``ToDevice``: ``ToTorchImage(channels_last=False)`` allocates its buffer without a
    device, that is on the CPU, so after ``ToDevice`` it would copy every batch back to the
    host (and the transform would then meet CPU pixels with its parameters on the GPU)."""
    from ffcv.transforms import ToDevice, ToTensor, ToTorchImage

    ops = [ToTensor(), ToTorchImage(channels_last=False)]
    if _ships(device):
        ops.append(ToDevice(device, non_blocking=True))
    return ops + ([transform.to(device)] if transform is not None else [])


def _crop_ops(device: torch.device) -> list:
    """The decoded crops (:class:`WholeImageCropDecoder`'s flat uint8 rows) as a tensor on
    ``device``; the loader cuts the views apart (NCHW views of the rows)."""
    from ffcv.transforms import ToDevice, ToTensor

    return [ToTensor()] + ([ToDevice(device, non_blocking=True)] if _ships(device) else [])


def _label_ops(device: torch.device) -> list:
    from ffcv.fields.decoders import IntDecoder
    from ffcv.transforms import Squeeze, ToDevice, ToTensor

    ops = [IntDecoder(), ToTensor(), Squeeze()]
    return ops + ([ToDevice(device, non_blocking=True)] if _ships(device) else [])


def _epoch(loader):
    """One epoch of an FFCV loader. If the consumer stops early, stop and join ffcv's prefetch
    thread before its memory is released: left running, it can still be inside numba or torch
    at interpreter exit, which then aborts ('terminate called without an active exception',
    seen in 1 run of 6). The thread looks at its stop flag only when its queue stays full, and
    at the end of the epoch it blocks putting its end marker into a full queue: so while it
    lives, take one batch off the queue and wait again."""
    epoch = iter(loader)
    try:
        yield from epoch
    finally:
        epoch.terminate_event.set()
        epoch.join(timeout=1.0)
        while epoch.is_alive():
            try:
                epoch.output_queue.get_nowait()
            except queue.Empty:
                pass
            epoch.join(timeout=1.0)
        epoch.close()


class TwoViewLoader:
    """Two independently augmented views of each image of a ``.beton``, plus its label.

    Each batch of images is read as uint8 pixels, then the two seeded :class:`ViewAugment`
    modules draw the views from it in the consumer's thread. Where the pixels come from:

    - every image stored raw at one size (Fashion-MNIST, CIFAR, digits): straight from the
      memory-mapped file (:class:`RawImages`), in the training thread, in FFCV's own order for
      the epoch (:func:`ffcv_random_order`): the same batches, bit for bit, as through FFCV
      (tests/data/test_loaders.py), with no loader thread. On a 2-core CPU FFCV's thread (and
      its numba workers) take cores from torch's thread pool in the middle of a training step,
      which stalls it: 2.3 to 2.8x the step's time, where decoding raw pixels is a copy
      (bench/pipeline.py);
    - JPEGs or images of varying size (ImageNet-style folders): FFCV's loader decodes them in its
      thread, ``loader.num_workers`` numba workers, ``loader.batches_ahead`` batches ahead.
      Images of varying size are decoded whole and each view's crop is cut from the whole
      image there (:func:`whole_image_crop_decoder`, seeded per sample and view), so the
      views take the rest of the recipe from the flip on (docs/DATA.md#training-crops).

    On a GPU the uint8 pixels are shipped to the device and augmented there.
    """

    def __init__(self, folder: Path, augment: AugmentConfig, loader: LoaderConfig, seed: int,
                 device: torch.device | str = "cpu", split: str = "train",
                 distributed: bool = False, rank: int = 0):
        self.device, self.seed, self.rank = torch.device(device), seed, rank
        self.batch_size, self.distributed = loader.batch_size, distributed
        checked = beton_records(folder, split)
        meta = checked[1]
        cropped = meta["splits"][split]["image_shape"] is None  # by the decoder, whole images
        self.views = [ViewAugment(augment, v, meta["mean"], meta["std"], cropped)
                      .to(self.device) for v in (0, 1)]
        self.views += [LocalCropAugment(augment, j, meta["mean"], meta["std"], cropped)
                       .to(self.device) for j in range(augment.local_crops)]
        self.crops = whole_image_crop_decoder(augment, seed) if cropped else None
        self.next_epoch = 0
        self.raw = RawImages.open(checked, split)
        if self.raw is not None:
            self.labels = read_labels(folder, split, checked)
            self.loader = None
            return
        from ffcv.loader import Loader, OrderOption
        from ffcv.pipeline import PipelineSpec

        image = (PipelineSpec("image", _decoder(meta, split, augment.size),
                              _image_ops(self.device)) if self.crops is None else
                 PipelineSpec("image", self.crops, _crop_ops(self.device)))
        pipelines = {
            "image": image,
            "label": _label_ops(self.device),
        }
        self.loader = Loader(str(checked[0]), batch_size=loader.batch_size,
                             num_workers=_workers(loader.num_workers), os_cache=loader.os_cache,
                             order=OrderOption.RANDOM, seed=seed, drop_last=True,
                             distributed=distributed, batches_ahead=loader.batches_ahead,
                             pipelines=pipelines)
        restore_threads()  # FFCV set torch's threads to num_workers
        self.names = list(self.loader.pipeline_specs)

    def _order(self, epoch: int) -> np.ndarray:
        order = ffcv_random_order(len(self.labels), self.seed, epoch, self.distributed)
        return order[:len(order) // self.batch_size * self.batch_size]  # drop_last

    def __len__(self) -> int:
        if self.loader is not None:
            return len(self.loader)
        return len(self._order(self.next_epoch)) // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (0-based), e.g. after resuming."""
        self.next_epoch = epoch
        if self.loader is not None:
            self.loader.next_epoch = epoch

    def __iter__(self):
        epoch = self.next_epoch  # the order of an epoch is seeded by seed + epoch, as FFCV's
        for view in self.views:
            view.reseed(self.seed, epoch, self.rank)
        self.next_epoch += 1
        if self.loader is not None:
            if self.crops is not None:
                self.crops.set_epoch(epoch)
            for batch in _epoch(self.loader):
                out = dict(zip(self.names, batch))
                images = ([out["image"]] * len(self.views) if self.crops is None else
                          self.crops.split(out["image"]))
                # FFCV hands its buffers out again a few batches later: the views are new
                # tensors and the labels a copy, made before the next batch is taken
                yield (*(view(x) for view, x in zip(self.views, images)),
                       out["label"].clone())
            return
        order = self._order(epoch)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start:start + self.batch_size]
            pixels, labels = to_device_at_once([torch.from_numpy(self.raw[chosen]),
                                                torch.from_numpy(self.labels[chosen])],
                                               self.device)  # on a GPU: pinned, non-blocking
            pixels = pixels.permute(0, 3, 1, 2)
            yield (*(view(pixels) for view in self.views), labels)


def ffcv_random_order(num_samples: int, seed: int, epoch: int,
                      distributed: bool = False) -> np.ndarray:
    """The sample order of FFCV's ``OrderOption.RANDOM`` over a whole split at ``epoch``
    (ffcv 1.0.2, ``ffcv/traversal_order/random.py``): a permutation drawn by
    ``numpy.random.default_rng(seed + epoch)``; under torchrun, the process's share drawn by
    torch's ``DistributedSampler`` (shuffled, seeded, not dropping the last samples)."""
    indices = np.arange(num_samples)
    if not distributed:
        return np.random.default_rng(seed + epoch).permutation(indices)
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(indices, shuffle=True, seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    return indices[np.array(list(sampler))]


class RawImages:
    """The uint8 pixels of a split whose images are all stored raw at one size, read by sample
    index straight from the memory-mapped ``.beton`` (a copy per image, no decoding)."""

    def __init__(self, path: Path, pointers: np.ndarray, shape: tuple[int, int, int]):
        self.data = np.memmap(path, np.uint8, mode="r")
        self.pointers, self.shape = pointers, shape

    @classmethod
    def open(cls, checked: tuple, split: str) -> "RawImages | None":
        """From :func:`beton_records`' answer; None when the shapes vary or any is a JPEG."""
        path, meta, records = checked
        images = records["image"]
        if meta["splits"][split]["image_shape"] is None or len(images) == 0 or \
                (images["mode"] != BETON_IMAGE_MODES["raw"]).any():
            return None
        shape = (int(images["height"][0]), int(images["width"][0]), 3)
        return cls(path, images["data_ptr"].astype(np.int64), shape)

    def __getitem__(self, indices) -> np.ndarray:
        """(n, H, W, 3) uint8 of samples ``indices``."""
        size = self.shape[0] * self.shape[1] * 3
        pointers = self.pointers[np.asarray(indices, dtype=np.int64)]
        if len(pointers) == 0:
            return np.empty((0, *self.shape), np.uint8)
        return np.stack([self.data[ptr:ptr + size] for ptr in pointers]).reshape(
            len(pointers), *self.shape)


class EvalLoader:
    """FFCV loader of un-augmented, normalised images in file order, with labels."""

    def __init__(self, folder: Path, size: int, loader: LoaderConfig, split: str,
                 device: torch.device | str = "cpu", indices: np.ndarray | None = None):
        from ffcv.loader import Loader, OrderOption
        from ffcv.pipeline import PipelineSpec

        device = torch.device(device)
        meta = read_meta(folder)
        transform = EvalTransform(size, meta["mean"], meta["std"])
        self.loader = Loader(str(beton_path(folder, split, meta)), batch_size=loader.batch_size,
                             num_workers=_workers(loader.num_workers), os_cache=loader.os_cache,
                             order=OrderOption.SEQUENTIAL, drop_last=False,
                             batches_ahead=loader.batches_ahead, indices=indices,
                             pipelines={"image": PipelineSpec(
                                 "image", _decoder(meta, split, size),
                                 _image_ops(device, transform)),
                                        "label": _label_ops(device)})
        restore_threads()  # FFCV set torch's threads to num_workers

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        yield from _epoch(self.loader)


def beton_records(folder: Path, split: str) -> tuple[Path, dict, dict]:
    """``split``'s ``.beton``, checked (:func:`~momentum_ssl.data.convert.beton_path`), the
    dataset's ``meta.json``, and the file's per-sample metadata records by field
    (``check_beton``): an ``IntField``'s are its values, an ``RGBImageField``'s (mode, width,
    height, data_ptr)."""
    meta = read_meta(folder)
    path = beton_path(folder, split, meta)
    return path, meta, check_beton(path, REWRITE, BETON_FIELDS)


def read_labels(folder: Path, split: str, checked: tuple | None = None) -> np.ndarray:
    """Every label of ``split`` in file order, int64, from the file's metadata table: no image
    is read. ``checked``: :func:`beton_records`' answer, if already at hand."""
    return np.asarray((checked or beton_records(folder, split))[2]["label"],
                      dtype=np.int64).reshape(-1)


def read_raw_images(folder: Path, split: str, indices: np.ndarray,
                    checked: tuple | None = None) -> np.ndarray | None:
    """uint8 (n, H, W, 3) of samples ``indices`` read straight from the file, when the split
    has one image shape and each is stored raw (:class:`RawImages`); None when the shapes vary
    (the eval loader crops them) or any is a JPEG: use :class:`EvalLoader` then.
    ``EvalTransform`` of these (as NCHW) is what the eval loader yields, bit for bit, without
    importing FFCV or compiling its pipeline: 15 ms instead of 2.4 s for 2,000 Fashion-MNIST
    images."""
    raw = RawImages.open(checked or beton_records(folder, split), split)
    return None if raw is None else raw[indices]


def eval_batches(params: Params, split: str, device: torch.device | str = "cpu"):
    """What :func:`eval_loader` yields for the whole split, ``(images, labels)`` batches of
    ``loader.batch_size`` in file order, read straight from the file when every image is stored
    raw at one size (:func:`read_raw_images`, the same bits): no FFCV import or pipeline to
    compile, about 5 s a process. Otherwise the eval loader itself."""
    folder = beton_folder(params)
    checked = beton_records(folder, split)
    labels = read_labels(folder, split, checked)
    raw = read_raw_images(folder, split, np.arange(len(labels)), checked)
    if raw is None:
        return eval_loader(params, split, device)
    transform = EvalTransform(params.augment.size, checked[1]["mean"], checked[1]["std"])
    return _raw_batches(raw, labels, transform, params.loader.batch_size, torch.device(device))


def _raw_batches(raw: np.ndarray, labels: np.ndarray, transform: torch.nn.Module,
                 batch_size: int, device: torch.device):
    transform = transform.to(device)
    for start in range(0, len(raw), batch_size):
        pixels, = to_device_at_once([torch.from_numpy(raw[start:start + batch_size])], device)
        pixels = pixels.permute(0, 3, 1, 2)  # pinned and not waited for on a GPU
        yield transform(pixels), torch.from_numpy(labels[start:start + batch_size])


def train_loader(params: Params, device: torch.device | str = "cpu", world: int = 1,
                 rank: int = 0) -> TwoViewLoader:
    """The pretraining loader; under DDP (``world`` processes) each process reads its shard
    with ``loader.batch_size / world`` images per batch."""
    cfg = dataclasses.replace(params.loader, batch_size=params.loader.batch_size // world)
    folder = beton_folder(params)
    split = "train" if params.data.pretrain_split == "train" else PRETRAIN
    written = read_meta(folder)["splits"].get(PRETRAIN, {})
    if split == PRETRAIN and (written.get("images"), written.get("unlabeled_root")) != \
            (params.data.pretrain_split, params.data.unlabeled_root):
        raise MissingArtifact(f"{folder} has no {params.data.pretrain_split} images for "
                              "pretraining from data.unlabeled_root "
                              f"{params.data.unlabeled_root} (converted with other data "
                              f"settings); rerun {REWRITE}")
    loader = TwoViewLoader(folder, params.augment, cfg, params.seed, device, split=split,
                           distributed=world > 1, rank=rank)
    restore_threads()  # importing FFCV (numba's generators) set torch's threads to 1
    return loader


def eval_loader(params: Params, split: str, device: torch.device | str = "cpu") -> EvalLoader:
    return EvalLoader(beton_folder(params), params.augment.size, params.loader, split, device)


# The linear evaluation's data stream ("lind"): its order and crops are its own, not a replay of
# pretraining's, which draws both from the run's seed (stages/linear.py keys its head apart)
LINEAR_DATA_STREAM = 0x6C696E64


def linear_seed(seed: int) -> int:
    """The seed of the linear evaluation's loader for a run trained with ``seed``: below 2**31,
    as every seed a loader hands on (FFCV's order, the augmentations' generators)."""
    return stream_seed(seed, LINEAR_DATA_STREAM) % 2**31


def linear_augment(params: Params) -> AugmentConfig:
    """The linear evaluation's view: ``recipes.linear``'s random-resized crop and flip at
    ``augment.size`` px, no colour, no blur, no solarisation."""
    recipe = params.recipes.linear
    return AugmentConfig(size=params.augment.size, crop_scale=recipe.crop_scale,
                         crop_ratio=recipe.crop_ratio, flip_p=recipe.flip_p, jitter_p=0.0,
                         grayscale_p=0.0, blur_p=(0.0, 0.0), solarize_p=(0.0, 0.0))


def linear_train_loader(params: Params, device: torch.device | str = "cpu") -> TwoViewLoader:
    """The linear evaluation's training batches ``(images, labels)``: one view of each train
    image, a random-resized crop (``recipes.linear.crop_scale``, ``crop_ratio``) and a flip
    (``flip_p``), no colour, at ``augment.size`` px, ``recipes.linear.batch_size`` a batch.
    Seeded by :func:`linear_seed` of the run's seed and the epoch: the data order and every crop
    are drawn from a stream of their own, so linear epoch e does not repeat pretraining epoch
    e's order and view-0 crops (the loader's seed also keys its decoder's crops, where it cuts
    them)."""
    cfg = dataclasses.replace(params.loader, batch_size=params.recipes.linear.batch_size)
    loader = TwoViewLoader(beton_folder(params), linear_augment(params), cfg,
                           linear_seed(params.seed), device)
    loader.views = loader.views[:1]  # one view: what the linear head trains on
    restore_threads()
    return loader


# --- torchvision comparison ---------------------------------------------------------------


class _TwoViewDataset(Dataset):
    def __init__(self, source: ImageSource, indices: np.ndarray, views: list):
        self.source, self.indices, self.views = source, indices, views

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        image, label = self.source[self.indices[i]]
        image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return self.views[0](image), self.views[1](image), label


def torchvision_two_view_loader(params: Params, split: str = "train") -> DataLoader:
    """The same two-view batches, the torchvision way: per-image transforms in worker processes,
    over the same source images and subset as the converted ``.beton``."""
    meta = read_meta(beton_folder(params))
    source = load_source(params.data, split)
    per_class = params.data.train_per_class if split == "train" else params.data.test_per_class
    indices = stratified_subset(source.labels, len(source.classes), per_class, params.seed)
    views = [torchvision_view(params.augment, v, meta["mean"], meta["std"]) for v in (0, 1)]
    cfg = params.loader
    return DataLoader(_TwoViewDataset(source, indices, views), batch_size=cfg.batch_size,
                      shuffle=True, num_workers=cfg.num_workers, drop_last=True,
                      persistent_workers=cfg.num_workers > 0, prefetch_factor=cfg.batches_ahead,
                      generator=torch.Generator().manual_seed(stream_seed(params.seed)))
