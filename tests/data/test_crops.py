"""Whole-image training crops (data/augment.py whole_image_box, data/loaders.py
WholeImageCropDecoder): torchvision's RandomResizedCrop in distribution, the same boxes for a
seed whatever the workers and machine, and crops from the whole image, not its centre square."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from conftest import make_params
from momentum_ssl.data.augment import GOLDEN, whole_image_box
from momentum_ssl.data.convert import convert, read_meta
from momentum_ssl.data.loaders import train_loader
from momentum_ssl.data.resample import crop_resize

MASK = 2**64 - 1
RATIO = (3 / 4, 4 / 3)


def mix(x: int) -> int:
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def reference_box(height, width, scale, ratio, seed, epoch, index, view):
    """whole_image_box written again in Python integers, from its docstring."""
    state = mix((seed + GOLDEN) & MASK)
    for key in (epoch, index, view):
        state = mix(((state ^ key) + GOLDEN) & MASK)

    def uniform(k):
        return (mix((state + k * GOLDEN) & MASK) >> 11) / 2.0**53

    for _ in range(10):
        target = height * width * (scale[0] + (scale[1] - scale[0]) * uniform(1))
        aspect = math.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0]))
                          * uniform(2))
        state = (state + 2 * GOLDEN) & MASK
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return (int(uniform(1) * (height - h + 1)), int(uniform(2) * (width - w + 1)), h, w)
    h, w = height, width
    if width / height < ratio[0]:
        h = round(width / ratio[0])
    elif width / height > ratio[1]:
        w = round(height * ratio[1])
    return (height - h) // 2, (width - w) // 2, h, w


def ours(height, width, scale, n, seed=0, epoch=0, view=0) -> np.ndarray:
    box = whole_image_box()
    return np.array([box(height, width, *scale, *RATIO, seed, epoch, i, view)
                     for i in range(n)])


def torchvisions(height, width, scale, n) -> np.ndarray:
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(0)
    image = torch.empty(3, height, width)
    return np.array([RandomResizedCrop.get_params(image, list(scale), list(RATIO))
                     for _ in range(n)])


def test_boxes_are_the_integer_streams_anywhere():
    """The compiled boxes are those of the same arithmetic in Python's integers and doubles:
    the uniforms are integer arithmetic; the box's sqrt is correctly rounded, its log and exp
    libm's (Python's and numba's agree here)."""
    for height, width, scale in ((375, 500, (0.08, 1.0)), (40, 400, (0.08, 1.0)),
                                 (224, 224, (0.05, 0.4))):
        for index in range(200):
            assert whole_image_box()(height, width, *scale, *RATIO, 7, 3, index, 1) == \
                reference_box(height, width, scale, RATIO, 7, 3, index, 1)


@pytest.mark.parametrize("height, width, scale", [(375, 500, (0.08, 1.0)),
                                                  (500, 333, (0.08, 1.0)),
                                                  (96, 96, (0.05, 0.4)),
                                                  (60, 400, (0.08, 1.0))])
def test_boxes_follow_torchvisions_random_resized_crop(height, width, scale):
    """4,000 boxes against 4,000 of torchvision's ``get_params``: each of top, left, height,
    width, area and aspect ratio has the same distribution (two-sample KS test), and the
    centre fallback (the wide 60 x 400 image's crops that never fit) is as frequent."""
    n = 4000
    a, b = ours(height, width, scale, n), torchvisions(height, width, scale, n)
    for name, x, y in (("top", a[:, 0], b[:, 0]), ("left", a[:, 1], b[:, 1]),
                       ("height", a[:, 2], b[:, 2]), ("width", a[:, 3], b[:, 3]),
                       ("area", a[:, 2] * a[:, 3], b[:, 2] * b[:, 3]),
                       ("ratio", a[:, 3] / a[:, 2], b[:, 3] / b[:, 2])):
        assert stats.ks_2samp(x, y).pvalue > 1e-3, name
    fallback = lambda boxes: np.mean(boxes[:, 2] == height) if width > height * 4 / 3 \
        else 0.0  # noqa: E731
    assert abs(fallback(a) - fallback(b)) < 0.03
    assert (a[:, 0] + a[:, 2] <= height).all() and (a[:, 1] + a[:, 3] <= width).all()
    assert (a >= 0).all() and (a[:, 2:] > 0).all()


@pytest.mark.parametrize("height, width, area, ratio, h, w", [(4, 5, 4, 1.0, 2, 2),
                                                             (3, 3, 1, 1.0, 1, 1),
                                                             (4, 5, 8, 2.0, 2, 4)])
def test_every_offset_that_fits_is_equally_likely(height, width, area, ratio, h, w):
    """A scale and ratio range of one value force the box's size on a tiny image; then every
    top in 0..height - h and every left in 0..width - w has frequency 1 / (positions) within
    five binomial standard deviations over 6,000 boxes, and no other occurs: an offset drawn
    over height - h positions (one too few) would never reach the last."""
    n = 6000
    scale = (area / (height * width),) * 2
    box = whole_image_box()
    boxes = np.array([box(height, width, *scale, ratio, ratio, 5, 2, i, i % 2)
                      for i in range(n)])
    assert (boxes[:, 2] == h).all() and (boxes[:, 3] == w).all()
    for column, positions in ((0, height - h + 1), (1, width - w + 1)):
        counts = np.bincount(boxes[:, column], minlength=positions)
        assert len(counts) == positions, counts  # nothing past the last position that fits
        p = 1 / positions
        assert (np.abs(counts - n * p) <= 5 * math.sqrt(n * p * (1 - p))).all(), counts


def test_boxes_of_other_views_samples_and_epochs_are_uncorrelated():
    """Over 4,000 samples, the areas and tops of view 0 against view 1, of sample i against
    sample i + 1 and of epoch 0 against epoch 1 have Pearson correlations within four standard
    errors (4 / sqrt(n)) of 0: the streams keyed by neighbouring counters are independent."""
    n = 4000
    v0 = ours(375, 500, (0.08, 1.0), n + 1, seed=3, epoch=0, view=0)
    v1 = ours(375, 500, (0.08, 1.0), n + 1, seed=3, epoch=0, view=1)
    e1 = ours(375, 500, (0.08, 1.0), n + 1, seed=3, epoch=1, view=0)
    area = lambda b: b[:, 2] * b[:, 3]  # noqa: E731
    for name, a, b in (("views", v0[:n], v1[:n]), ("samples", v0[:n], v0[1:]),
                       ("epochs", v0[:n], e1[:n])):
        for what, x, y in (("area", area(a), area(b)), ("top", a[:, 0], b[:, 0])):
            assert abs(np.corrcoef(x, y)[0, 1]) < 4 / math.sqrt(n), (name, what)


def test_a_box_that_never_fits_falls_back_to_the_centre_at_the_largest_ratio():
    """60 x 400 at scale (0.9, 1) and ratio (3/4, 4/3): every try's height is at least
    sqrt(0.9 * 24,000 * 3/4) = 127 > 60, so every box is torchvision's fallback: the image is
    wider than 4/3, so h = 60, w = round(60 * 4/3) = 80, left = (400 - 80) // 2 = 160."""
    box = whole_image_box()
    for i in range(500):
        assert box(60, 400, 0.9, 1.0, *RATIO, i % 7, i % 3, i, i % 2) == (0, 160, 60, 80)
    assert (torchvisions(60, 400, (0.9, 1.0), 50) == (0, 160, 60, 80)).all()


def test_boxes_depend_on_seed_epoch_index_and_view():
    box = whole_image_box()
    args = (375, 500, 0.08, 1.0, *RATIO)
    first = box(*args, 0, 0, 5, 0)
    assert box(*args, 0, 0, 5, 0) == first
    assert len({first, box(*args, 1, 0, 5, 0), box(*args, 0, 1, 5, 0), box(*args, 0, 0, 6, 0),
                box(*args, 0, 0, 5, 1)}) == 5


WIDE = [(36, 120), (40, 132), (32, 108)]  # (height, width): sizes vary, as in ImageNet


def striped_folder(root, count=6):
    """An ImageFolder of wide JPEGs, left third red, middle gray, right third blue: the
    centre square (the middle columns, as many as the rows) holds only gray."""
    from PIL import Image

    for split in ("train", "test"):
        for c in range(2):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                height, width = WIDE[i % len(WIDE)]
                image = np.full((height, width, 3), 128, np.uint8)
                image[:, :width // 3] = (255, 0, 0)
                image[:, -(width // 3):] = (0, 0, 255)
                Image.fromarray(image).save(folder / f"{i}.jpg", quality=95)
    return root


STILL = {"jitter_p": 0.0, "grayscale_p": 0.0, "solarize_p": [0.0, 0.0],
         "blur_p": [0.0, 0.0]}


@pytest.fixture(scope="module")
def striped(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("striped")
    params = make_params(tmp, data={"dataset": "imagefolder",
                                    "root": str(striped_folder(tmp / "folder")),
                                    "jpeg_above": 0},
                         loader={"batch_size": 4, "num_workers": 1},
                         augment={"size": 16, **STILL})
    convert(params)
    return params


def pixels(batch: torch.Tensor, meta: dict) -> torch.Tensor:
    mean, std = (torch.tensor(meta[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    return (batch * std + mean) * 255


def test_training_views_crop_from_the_whole_wide_image(striped):
    """Through the training loader, views show the red and blue edges the centre square
    never held, and crops that touch them (a red or blue first or last column)."""
    meta = read_meta(f"{striped.data.out_dir}/imagefolder")
    assert meta["splits"]["train"]["image_shape"] is None  # sizes vary: the decoder crops
    loader = train_loader(striped)
    assert loader.crops is not None
    seen = {"red": 0, "blue": 0}
    for epoch in range(3):
        for view1, view2, _ in loader:
            for view in (view1, view2):
                x = pixels(view, meta)
                assert x.shape[1:] == (3, 16, 16)
                red = (x[:, 0] > 200) & (x[:, 2] < 60)
                blue = (x[:, 2] > 200) & (x[:, 0] < 60)
                seen["red"] += int(red.any(dim=(1, 2)).sum())
                seen["blue"] += int(blue.any(dim=(1, 2)).sum())
    assert seen["red"] > 0 and seen["blue"] > 0, seen


def batches(loader, epoch):
    loader.set_epoch(epoch)
    return [t.clone() for batch in loader for t in batch]


def test_the_same_seed_gives_the_same_batches_whatever_the_workers(striped):
    import dataclasses

    one = train_loader(striped)
    again = train_loader(striped)
    two = train_loader(dataclasses.replace(
        striped, loader=dataclasses.replace(striped.loader, num_workers=2)))
    for epoch in (0, 1):
        reference = batches(one, epoch)
        for other in (again, two):
            got = batches(other, epoch)
            assert len(got) == len(reference) > 0
            assert all(torch.equal(a, b) for a, b in zip(got, reference))
    assert not all(torch.equal(a, b) for a, b in zip(batches(one, 0), batches(one, 1)))
    other = train_loader(dataclasses.replace(striped, seed=1))
    assert not all(torch.equal(a, b) for a, b in zip(batches(other, 0), batches(one, 0)))


def test_the_decoder_cuts_each_views_box_from_the_whole_image_at_the_epoch_set(tmp_path):
    """Images of varying size stored raw: the decoder's crop of each sample and view is the
    box whole_image_box draws for (seed, epoch, sample index, view), cut from the whole stored
    image and resized (shrunk: OpenCV's area interpolation, FFCV's resize_crop; enlarged along
    an axis: crop_resize), at the epoch the loader set after the pipeline was compiled; a local
    crop has its own side and scale."""
    import cv2
    from ffcv.loader import Loader, OrderOption
    from ffcv.pipeline import PipelineSpec
    from ffcv.transforms import ToTensor
    from PIL import Image

    from momentum_ssl.data.convert import beton_path
    from momentum_ssl.data.loaders import _whole_image_crop_decoder_class, beton_records

    rng = np.random.default_rng(0)
    root = tmp_path / "folder"
    for split in ("train", "test"):
        for c in range(2):
            (root / split / f"class{c}").mkdir(parents=True)
            for i, (h, w) in enumerate([(30, 50), (44, 26), (36, 36)]):
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                    root / split / f"class{c}" / f"{i}.png")
    params = make_params(tmp_path, data={"dataset": "imagefolder", "root": str(root),
                                         "jpeg_above": 10**7})  # stored raw: exact pixels
    convert(params)
    folder = tmp_path / "beton" / "imagefolder"
    path, meta, records = beton_records(folder, "train")
    images = records["image"]
    assert meta["splits"]["train"]["image_shape"] is None and (images["mode"] == 1).all()
    data = np.memmap(path, np.uint8, mode="r")
    crops = [(16, (0.08, 1.0)), (16, (0.08, 1.0)), (8, (0.05, 0.4))]
    decoder = _whole_image_crop_decoder_class()(crops, RATIO, seed=3)
    loader = Loader(str(beton_path(folder, "train", meta)), batch_size=4, num_workers=1,
                    order=OrderOption.SEQUENTIAL, drop_last=False,
                    pipelines={"image": PipelineSpec("image", decoder, [ToTensor()]),
                               "label": None})
    box = whole_image_box()
    enlarged = shrunk = 0
    for epoch in (0, 3, 3):
        decoder.set_epoch(epoch)
        index = 0
        for (batch,) in loader:
            views = decoder.split(batch)
            assert [tuple(v.shape[1:]) for v in views] == [(3, 16, 16)] * 2 + [(3, 8, 8)]
            for row in range(len(batch)):
                h, w, ptr = (int(images[k][index]) for k in ("height", "width", "data_ptr"))
                whole = np.asarray(data[ptr:ptr + h * w * 3]).reshape(h, w, 3)
                for v, (side, scale) in enumerate(crops):
                    top, left, bh, bw = box(h, w, *scale, *RATIO, 3, epoch, index, v)
                    if bh < side or bw < side:  # enlarged along an axis: ours
                        expected = np.empty((side, side, 3), np.uint8)
                        crop_resize()(whole, top, top + bh, left, left + bw, expected)
                        enlarged += 1
                    else:
                        expected = cv2.resize(whole[top:top + bh, left:left + bw],
                                              (side, side), interpolation=cv2.INTER_AREA)
                        shrunk += 1
                    np.testing.assert_array_equal(views[v][row].permute(1, 2, 0).numpy(),
                                                  expected)
                index += 1
        assert index == len(images)
    assert enlarged > 0 and shrunk > 0  # both paths ran


def test_pretraining_on_an_imagefolder_of_varying_sizes_runs_on_the_whole_image_crops(
        striped, tmp_path, monkeypatch):
    """The pretrain stage's function on the wide JPEGs (the tiny profile's model, heads and
    schedule), through the decoder: a model after two epochs of three steps, a finite loss."""
    import json

    from conftest import TINY
    from momentum_ssl.config import RunSpec, params_from_dict, to_dict
    from momentum_ssl.stages.pretrain import pretrain

    monkeypatch.chdir(tmp_path)
    data = to_dict(striped)
    for name in ("model", "pretrain", "methods"):
        data[name] = {**data[name], **TINY[name]}
    out = pretrain(params_from_dict(data), RunSpec("byol", "full"), tmp_path / "run")
    assert torch.load(out / "model.pt", weights_only=False)["epochs"] == 2
    metrics = json.loads((out / "dvclive" / "metrics.json").read_text())
    assert metrics["time"]["steps"] == 2 * 3  # 12 images / 4 a batch, two epochs
    assert math.isfinite(metrics["train"]["loss"])


def test_the_gpu_crop_pipeline_ships_the_decoded_rows_to_the_device():
    """On a GPU the decoder's uint8 rows go to the device as they are (the views are cut
    there); every op after FFCV's ToDevice allocates on the device."""
    from ffcv.pipeline.state import State

    from momentum_ssl.data.loaders import _crop_ops

    cuda = torch.device("cuda", 0)  # a device object only: nothing here starts CUDA
    state = State(True, torch.device("cpu"), (2 * 16 * 16 * 3,), np.dtype("uint8"))
    for op in _crop_ops(cuda):
        state, allocation = op.declare_state_and_memory(state)
        if state.device.type == "cuda":
            assert allocation is None or allocation.device == cuda, op
    assert state.device == cuda and list(state.shape) == [2 * 16 * 16 * 3]


def reference_resize(crop: np.ndarray, side: int) -> np.ndarray:
    """crop_resize written again as two matrices: bilinear rows (half-pixel centres, edges
    repeated) along an axis that grows, area rows (each source pixel's overlap with the output
    pixel's interval) along one that shrinks."""
    def matrix(n_in, n_out):
        m = np.zeros((n_out, n_in))
        scale = n_in / n_out
        for d in range(n_out):
            if n_out >= n_in:
                c = (d + 0.5) * scale - 0.5
                f = math.floor(c)
                m[d, min(max(f, 0), n_in - 1)] += 1 - (c - f)
                m[d, min(f + 1, n_in - 1)] += c - f
            else:
                for i in range(n_in):
                    m[d, i] = max(0.0, min(i + 1, (d + 1) * scale) - max(i, d * scale)) / scale
        return m

    rows, cols = matrix(crop.shape[0], side), matrix(crop.shape[1], side)
    out = np.einsum("yi,ijc,xj->yxc", rows, crop.astype(np.float64), cols)
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("height, width", [(5, 7), (16, 3), (40, 6), (9, 16)])
def test_an_enlarged_crop_is_resized_bilinearly(height, width):
    """Enlarged along both axes, the crop is OpenCV's bilinear resize (within the 1 of its
    fixed-point weights), not its area resize, which repeats pixels there; enlarged along one
    axis and shrunk along the other, the separable bilinear-by-area reference. The crop is
    cut from a larger image at an offset."""
    import cv2

    rng = np.random.default_rng(height * width)
    image = rng.integers(0, 256, (height + 3, width + 5, 3), dtype=np.uint8)
    crop = image[2:2 + height, 4:4 + width]
    side = 16
    got = np.empty((side, side, 3), np.uint8)
    crop_resize()(image, 2, 2 + height, 4, 4 + width, got)
    diff = lambda a, b: np.abs(a.astype(int) - b.astype(int)).max()  # noqa: E731
    assert diff(got, reference_resize(crop, side)) <= 1
    if height <= side and width <= side:
        linear = cv2.resize(crop, (side, side), interpolation=cv2.INTER_LINEAR)
        area = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
        assert diff(got, linear) <= 1
        assert diff(got, area) > 20  # INTER_AREA's blocks differ from a bilinear ramp
    else:  # shrunk along the rows: area averages there, as cv2's INTER_AREA on a column
        column = crop[:, :1].copy()
        out = np.empty((side, side, 3), np.uint8)
        crop_resize()(np.repeat(column, width, axis=1), 0, height, 0, width, out)
        expected = cv2.resize(column, (1, side), interpolation=cv2.INTER_AREA)
        assert diff(out[:, :1], expected.reshape(side, 1, 3)) <= 1
