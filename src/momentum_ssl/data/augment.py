"""SSL augmentations as batched tensor operations, seeded.

FFCV 1.0.2 has brightness, contrast and saturation ops but no hue jitter, grayscale, blur or
solarisation, and all its random ops and decoders draw from numba's per-thread generators, which
no seed reaches (an epoch's batches would differ from run to run). So the loaders decode images with FFCV and :class:`ViewAugment` applies the whole
random recipe to the batch, on the batch's device (the GPU when there is one), drawing every
random parameter from its own ``torch.Generator``: the same seed, epoch and view give the same
batch. The operations follow torchvision's definitions (``RandomResizedCrop``,
``ColorJitter``, ``RandomGrayscale``, ``GaussianBlur``, ``RandomSolarize``) with per-image
parameters; :func:`torchvision_view` builds the per-image torchvision pipeline with the same
parameters, for the comparison loader.
"""

from __future__ import annotations

import contextlib
import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import AugmentConfig
from ..config.data import local_size

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # as torchvision's rgb_to_grayscale on tensors


def stream_seed(*keys: int) -> int:
    """A 63-bit seed for one random stream, mixed from integer keys (seed, epoch, rank, ...)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0]
               >> np.uint64(1))


def blur_kernel_size(size: int, max_sigma: float = 2.0) -> int:
    """Odd kernel side for a ``size`` px view blurred with sigma up to ``max_sigma``
    (``AugmentConfig.blur_sigma``'s upper end, 2.0 in every recipe): about 10% of the image, as
    SimCLR/BYOL (23 px at 224, solo-learn's DALI window), and at least +-3 sigma,
    2 * ceil(3 * max_sigma) + 1, so that small images are not left with a 3 px kernel, which
    caps the blur's spread near 0.8 px whatever sigma is drawn; solo-learn's CIFAR pipeline
    blurs with PIL's ``GaussianBlur(radius=sigma)``, whose spread is sigma (13 px at 32 px:
    tests/data/test_augment.py holds the spread to PIL's). At most 2 * size - 1: reflect
    padding needs a radius below the image side."""
    tenth = int(0.1 * size) // 2 * 2 + 1
    three_sigma = 2 * math.ceil(3 * max_sigma) + 1
    return min(max(3, tenth, three_sigma), 2 * size - 1)


def sample_crops(n: int, height: int, width: int, scale: tuple[float, float],
                 ratio: tuple[float, float], gen: torch.Generator) -> Tensor:
    """(n, 4) boxes ``top, left, h, w`` drawn as torchvision's ``RandomResizedCrop``: up to 10
    tries of area and log-uniform aspect ratio, falling back to a centre crop."""
    tries = 10
    area = height * width * torch.empty(n, tries).uniform_(*scale, generator=gen)
    log_ratio = torch.empty(n, tries).uniform_(math.log(ratio[0]), math.log(ratio[1]),
                                               generator=gen)
    aspect = torch.exp(log_ratio)
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(ok.int(), dim=1)  # first successful try (0 if none)
    pick = lambda t: t.gather(1, first[:, None])[:, 0]  # noqa: E731
    w, h = pick(w), pick(h)
    top = torch.floor(torch.rand(n, generator=gen) * (height - h + 1))
    left = torch.floor(torch.rand(n, generator=gen) * (width - w + 1))
    # fallback: the whole image clipped to the allowed aspect ratio, centred
    in_ratio = width / height
    fw, fh = float(width), float(height)
    if in_ratio < ratio[0]:
        fh = float(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fw = float(round(height * ratio[1]))
    failed = ~ok.any(dim=1)
    w = torch.where(failed, fw, w)
    h = torch.where(failed, fh, h)
    top = torch.where(failed, float((height - fh) // 2), top)
    left = torch.where(failed, float((width - fw) // 2), left)
    return torch.stack([top, left, h, w], dim=1)


# Whole-image crop boxes, one per sample and view, for the loader's decoder (data/loaders.py
# WholeImageCropDecoder), which crops them from the whole decoded image in FFCV's thread. Each
# box draws from a stream keyed by (seed, epoch, sample index, view) alone, so a sample's box
# does not depend on the batch it lands in or the number of workers: its uniforms are
# splitmix64 (Steele, Lea & Flood, 2014) over a counter, integer arithmetic, the same on every
# CPU. The box from them is IEEE double arithmetic: sqrt is correctly rounded everywhere, but
# log and exp come from the math library numba links (LLVM's calls into libm), which may round
# differently in another version. So the same numba/LLVM build gives the same bits on any
# x86-64 CPU; another build may move a box by a pixel where a value falls on a rounding
# boundary. Numba compiles these (without fastmath: no fused or reassociated float
# operations), lazily, so that importing this module does not import numba.
GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment, 2^64 / golden ratio


def _mix64(x):
    """splitmix64's output function on a uint64."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@functools.cache
def whole_image_box():
    """The compiled ``box(height, width, scale_lo, scale_hi, ratio_lo, ratio_hi, seed, epoch,
    index, view) -> (top, left, h, w)``: torchvision's ``RandomResizedCrop.get_params`` over the
    whole ``height`` x ``width`` image (up to 10 tries of an area fraction uniform in the scale
    range and a log-uniform aspect ratio, then an offset uniform over the positions that fit;
    else the whole image clipped to the ratio range, centred), its uniforms drawn in turn from
    the stream of (seed, epoch, index, view)."""
    from numba import njit

    mix = njit(_mix64)
    golden, golden2 = np.uint64(GOLDEN), np.uint64(2 * GOLDEN % 2**64)  # all uint64: numba
    # takes a uint64 mixed with an int64 to a float

    @njit
    def uniform(state):  # the top 53 bits of the state's output, as a double in [0, 1)
        return float(mix(state) >> np.uint64(11)) * (1.0 / 9007199254740992.0)

    @njit
    def box(height, width, scale_lo, scale_hi, ratio_lo, ratio_hi, seed, epoch, index, view):
        state = mix(np.uint64(seed) + golden)
        state = mix((state ^ np.uint64(epoch)) + golden)
        state = mix((state ^ np.uint64(index)) + golden)
        state = mix((state ^ np.uint64(view)) + golden)
        height, width = np.int64(height), np.int64(width)
        area = float(height * width)
        log_lo, log_hi = math.log(ratio_lo), math.log(ratio_hi)
        for _ in range(10):
            target = area * (scale_lo + (scale_hi - scale_lo) * uniform(state + golden))
            aspect = math.exp(log_lo + (log_hi - log_lo) * uniform(state + golden2))
            state += golden2
            w = np.int64(np.rint(math.sqrt(target * aspect)))
            h = np.int64(np.rint(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = np.int64(uniform(state + golden) * (height - h + 1))
                left = np.int64(uniform(state + golden2) * (width - w + 1))
                return top, left, h, w
        h, w = height, width  # no try fitted: the whole image, clipped to the ratio range
        if width / height < ratio_lo:
            h = np.int64(np.rint(width / ratio_lo))
        elif width / height > ratio_hi:
            w = np.int64(np.rint(height * ratio_hi))
        return (height - h) // 2, (width - w) // 2, h, w

    return box


def resized_crop(x: Tensor, boxes: Tensor, flip: Tensor, size: int) -> Tensor:
    """Crop each image of ``x`` (N, C, H, W) to its box, mirror it where ``flip``, and resample
    it bilinearly to ``size`` x ``size``: one ``grid_sample`` for the whole batch."""
    n, _, height, width = x.shape
    top, left, h, w = boxes.to(x.device, torch.float32).unbind(1)
    # output pixel centres in [-1, 1] (align_corners=False), mapped affinely into each box
    u = (2 * torch.arange(size, device=x.device, dtype=torch.float32) + 1) / size - 1
    sx = w / width * torch.where(flip.to(x.device), -1.0, 1.0)
    cx = (2 * left + w) / width - 1
    sy, cy = h / height, (2 * top + h) / height - 1
    gx = (sx[:, None] * u + cx[:, None])[:, None, :].expand(n, size, size)
    gy = (sy[:, None] * u + cy[:, None])[:, :, None].expand(n, size, size)
    grid = torch.stack([gx, gy], dim=-1)  # (N, size, size, 2), x then y
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def grayscale(x: Tensor) -> Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) luma. A single-channel (N, 1, H, W) batch stands for gray
    RGB images (three equal channels): the same sum, term by term, so the same bits."""
    r, g, b = x.unbind(1) if x.shape[1] == 3 else (x[:, 0],) * 3
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(1)


def channels_equal(x: Tensor) -> bool:
    """Whether every image of the (N, 3, H, W) batch is gray: its three channels equal."""
    return x.shape[1] == 3 and bool(torch.equal(x[:, 0], x[:, 1])) and \
        bool(torch.equal(x[:, 0], x[:, 2]))


def _per_image(f: Tensor) -> Tensor:
    return f.view(-1, 1, 1, 1)


def adjust_brightness(x: Tensor, f: Tensor) -> Tensor:
    return (x * _per_image(f)).clamp_(0, 1)


def adjust_contrast(x: Tensor, f: Tensor) -> Tensor:
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    return (_per_image(f) * x + (1 - _per_image(f)) * mean).clamp_(0, 1)


def adjust_saturation(x: Tensor, f: Tensor) -> Tensor:
    return (_per_image(f) * x + (1 - _per_image(f)) * grayscale(x)).clamp_(0, 1)


def adjust_hue(x: Tensor, f: Tensor) -> Tensor:
    """Rotate hue by ``f`` (fraction of a turn, in [-0.5, 0.5]) through HSV."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)),
                    torch.zeros_like(maxc))
    h = (h + f.view(-1, 1, 1)) % 1.0
    # back to RGB: c = v * (1 - s * clamp(|...|)) form, vectorised over the six sectors
    # the offsets 5, 3, 1 as scalars: a tensor of them built on a GPU is a copy from pageable
    # memory, which waits for the device (the same float32 products and sums either way)
    six = h * 6.0
    k = torch.stack([six + 5.0, six + 3.0, six + 1.0], 1) % 6.0
    v = maxc.unsqueeze(1)
    return v - v * s.unsqueeze(1) * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)


def gaussian_blur(x: Tensor, sigma: Tensor, kernel: int) -> Tensor:
    """Separable Gaussian blur with a per-image ``sigma``, reflect padding (torchvision's)."""
    n, c, height, width = x.shape
    radius = kernel // 2
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    weights = torch.exp(-0.5 * (offsets[None] / sigma.to(x)[:, None]) ** 2)
    weights = (weights / weights.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N*C, K)
    flat = x.reshape(1, n * c, height, width)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
    with no_cudnn_search(x):
        flat = F.conv2d(flat, weights.view(n * c, 1, 1, kernel), groups=n * c)
        flat = F.conv2d(flat, weights.view(n * c, 1, kernel, 1), groups=n * c)
    return flat.view(n, c, height, width)


@contextlib.contextmanager
def no_cudnn_search(x: Tensor):
    """cuDNN's benchmark search off while ``x``'s device runs the block, if it is a GPU: the
    blur's grouped convolutions take another shape at every step (the number of images blurred
    is drawn), so the search (on in the stages, compute.configure) would time kernels for each
    new shape instead of reusing one."""
    if x.device.type != "cuda" or not torch.backends.cudnn.benchmark:
        yield
        return
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = True


def solarize(x: Tensor, mask: Tensor, threshold: float = 0.5) -> Tensor:
    return torch.where(_per_image(mask) & (x >= threshold), 1.0 - x, x)


JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def pack_to(tensors: list[Tensor], device: torch.device) -> list[Tensor]:
    """``tensors`` (on the CPU) on ``device`` in one copy per dtype: each concatenated, pinned
    on a GPU and copied without blocking, then split by sizes the host knows."""
    out: list[Tensor | None] = [None] * len(tensors)
    by_dtype: dict[torch.dtype, list[int]] = {}
    for i, t in enumerate(tensors):
        by_dtype.setdefault(t.dtype, []).append(i)
    for members in by_dtype.values():
        flat = torch.cat([tensors[i].reshape(-1) for i in members])
        if device.type == "cuda":
            flat = flat.pin_memory()
        moved = flat.to(device, non_blocking=True)
        for i, part in zip(members, moved.split([tensors[i].numel() for i in members])):
            out[i] = part.view(tensors[i].shape)
    return out


def to_device_at_once(tensors: list[Tensor], device: torch.device) -> list[Tensor]:
    """The random parameters of a batch on its device: as they are on the CPU, else
    :func:`pack_to`. One copy each (about 40 per view, each from pageable memory, so each
    waited for the GPU) became one per dtype (three)."""
    return list(tensors) if device.type == "cpu" else pack_to(tensors, device)


class ViewAugment(nn.Module):
    """The random recipe for one of the two views, applied to a batch of images.

    Input: (N, 3, H, W) uint8 or float in [0, 1], any device. Output: (N, 3, size, size) float32,
    normalised with ``mean``/``std``. ``view`` (0 or 1) picks the per-view blur and solarisation
    probabilities. Call :meth:`reseed` at the start of each epoch. ``cropped``: the input is
    this view's crop already, at ``size`` (the loader's :class:`WholeImageCropDecoder` cut it
    from the whole image), so the random recipe starts at the flip.
    """

    def __init__(self, cfg: AugmentConfig, view: int, mean: list[float], std: list[float],
                 cropped: bool = False):
        super().__init__()
        self.cfg, self.view, self.cropped = cfg, view, cropped
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.gen = torch.Generator()
        self.reseed(0)

    def reseed(self, seed: int, epoch: int = 0, rank: int = 0) -> None:
        self.gen.manual_seed(stream_seed(seed, epoch, rank, self.view))

    def _uniform(self, n: int, low: float, high: float) -> Tensor:
        return torch.empty(n).uniform_(low, high, generator=self.gen)

    def _coin(self, n: int, p: float) -> Tensor:
        return torch.rand(n, generator=self.gen) < p

    def forward(self, x: Tensor) -> Tensor:
        cfg, n = self.cfg, x.shape[0]
        # A batch of gray images (Fashion-MNIST, MNIST stored as RGB) stays gray through every
        # operation: crop, brightness, contrast, saturation, grayscale, blur and solarisation
        # act on each channel alike, and a hue rotation leaves a pixel with no saturation as it
        # is (s = 0, so v - v * s * ... = v). So it is augmented as one channel, a third of the
        # work, with the hue step skipped, and widened to three at the end: the same bits as
        # the three-channel path (tests/data/test_augment.py), the same random draws. On a GPU
        # the test would read the batch back to the host (two waits a view, every step), and
        # the three-channel path computes the same values: it is taken without asking.
        gray_input = x.device.type == "cpu" and channels_equal(x)
        if gray_input:
            x = x[:, :1]
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        # every random parameter, drawn on the CPU in the order of the operations
        if self.cropped:
            if x.shape[2:] != (cfg.size, cfg.size):
                raise ValueError(f"a cropped view is {cfg.size} px square, got {tuple(x.shape)}")
            boxes = torch.tensor([[0.0, 0.0, cfg.size, cfg.size]]).expand(n, 4)
        else:
            boxes = sample_crops(n, x.shape[2], x.shape[3], cfg.crop_scale, cfg.crop_ratio,
                                 self.gen)
        flip = self._coin(n, cfg.flip_p)
        jitter = self._coin(n, cfg.jitter_p)
        factors = [self._uniform(n, max(0.0, 1 - a), 1 + a)
                   for a in (cfg.brightness, cfg.contrast, cfg.saturation)]
        factors.append(self._uniform(n, -cfg.hue, cfg.hue))
        order = torch.argsort(torch.rand(n, 4, generator=self.gen), dim=1)
        gray = self._coin(n, cfg.grayscale_p)
        blur = self._coin(n, cfg.blur_p[self.view])
        sigma = self._uniform(n, *cfg.blur_sigma)
        solar = self._coin(n, cfg.solarize_p[self.view])
        # colour jitter: each selected image applies the four adjustments in its own order;
        # the images of each (step, adjustment), and the blurred ones, as indices on the CPU
        jitters = [(op_index, torch.nonzero(jitter & (order[:, step] == op_index))[:, 0])
                   for step in range(4) for op_index, op in enumerate(JITTER_OPS)
                   if not (gray_input and op is adjust_hue)]
        blurred = torch.nonzero(blur)[:, 0]
        boxes, flip, gray, sigma, solar, blurred, *rest = to_device_at_once(
            [boxes, flip, gray, sigma, solar, blurred, *factors,
             *(chosen for _, chosen in jitters)], x.device)
        factors, chosens = rest[:4], rest[4:]

        if self.cropped:  # only the flip: resampling the whole image would blur it
            x = torch.where(_per_image(flip), x.flip(3), x)
        else:
            x = resized_crop(x, boxes, flip, cfg.size)
        for (op_index, _), chosen in zip(jitters, chosens):
            if len(chosen):
                x[chosen] = JITTER_OPS[op_index](x[chosen], factors[op_index][chosen])
        x = torch.where(_per_image(gray), grayscale(x).expand_as(x), x)
        if len(blurred):
            x[blurred] = gaussian_blur(x[blurred], sigma[blurred],
                                       blur_kernel_size(cfg.size, cfg.blur_sigma[1]))
        x = solarize(x, solar)
        if gray_input:
            x = x.expand(n, 3, cfg.size, cfg.size)
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)


class EvalTransform(nn.Module):
    """No augmentation: resize to ``size`` x ``size`` when needed, then normalise."""

    def __init__(self, size: int, mean: list[float], std: list[float]):
        super().__init__()
        self.size = size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              antialias=True, align_corners=False)
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)


def torchvision_view(cfg: AugmentConfig, view: int, mean: list[float], std: list[float]):
    """The same recipe as :class:`ViewAugment`, as torchvision's per-image transforms."""
    from torchvision.transforms import v2

    ops = [
        v2.RandomResizedCrop(cfg.size, scale=cfg.crop_scale, ratio=cfg.crop_ratio,
                             antialias=True),
        v2.RandomHorizontalFlip(cfg.flip_p),
        v2.ToDtype(torch.float32, scale=True),
        v2.RandomApply([v2.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)],
                       p=cfg.jitter_p),
        v2.RandomGrayscale(cfg.grayscale_p),
    ]
    if cfg.blur_p[view] > 0:
        kernel = blur_kernel_size(cfg.size, cfg.blur_sigma[1])
        ops.append(v2.RandomApply([v2.GaussianBlur(kernel, cfg.blur_sigma)], p=cfg.blur_p[view]))
    if cfg.solarize_p[view] > 0:
        ops.append(v2.RandomSolarize(0.5, p=cfg.solarize_p[view]))
    ops.append(v2.Normalize(mean, std))
    return v2.Compose(ops)


def local_crop_config(cfg: AugmentConfig) -> AugmentConfig:
    """The recipe of a local crop (multi-crop: Caron et al., 2020, SwAV; DINO's
    ``DataAugmentationDINO.local_transfo``): a resized crop of ``local_size`` from
    ``local_crop_scale`` of the image, the same flip, colour jitter and grayscale as the global
    views, blur with ``local_blur_p``, no solarisation."""
    import dataclasses

    return dataclasses.replace(cfg, size=local_size(cfg), crop_scale=cfg.local_crop_scale,
                               blur_p=(cfg.local_blur_p, cfg.local_blur_p),
                               solarize_p=(0.0, 0.0))


class LocalCropAugment(ViewAugment):
    """Local crop ``index`` (0-based) of each image: :class:`ViewAugment` with
    :func:`local_crop_config`, drawing from its own stream, keyed 2 + ``index`` beside the
    global views' 0 and 1, so adding local crops leaves the global views' bits unchanged."""

    def __init__(self, cfg: AugmentConfig, index: int, mean: list[float], std: list[float],
                 cropped: bool = False):
        self.index = index  # read by reseed, which ViewAugment's constructor calls
        super().__init__(local_crop_config(cfg), 0, mean, std, cropped)

    def reseed(self, seed: int, epoch: int = 0, rank: int = 0) -> None:
        self.gen.manual_seed(stream_seed(seed, epoch, rank, 2 + self.index))
