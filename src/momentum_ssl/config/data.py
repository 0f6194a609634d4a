"""The input sections' schemas: ``data``, ``augment``, ``loader`` and ``model``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Optional

from .base import DatasetName, _in_unit, _interval, _require


PretrainSplit = Literal["train", "unlabeled", "train+unlabeled"]
UNLABELED_SPLITS = ("stl10",)  # datasets with an unlabeled split of their own
# Settings added after artifacts were cached: left out of the plain-data form (to_dict) while
# at their default, so that params hashes, plans and Snakemake's params stay as they were.
OMIT_AT_DEFAULT = {"omit_at_default": True}


@dataclass(frozen=True)
class DataConfig:
    """Section ``data``: which dataset to convert to ``.beton`` and how."""

    dataset: DatasetName = "fashion_mnist"
    # Folder holding the dataset; null means the dataset's default (Debian's
    # /usr/share/datasets/fashion-mnist for fashion_mnist, data/raw/<dataset> for the others).
    root: Optional[str] = None
    # torchvision datasets only: fetch into `root` when absent (needs a network).
    download: bool = False
    out_dir: str = "data/beton"
    # Deterministic class-stratified subsets for quick profiles: images per class, null = all.
    train_per_class: Optional[int] = None
    test_per_class: Optional[int] = None
    # Images with more pixels (H*W) than this are stored as JPEG, smaller ones raw.
    # 96*96 keeps MNIST/CIFAR/STL-10 lossless and compresses ImageNet-sized images.
    jpeg_above: int = 9216
    jpeg_quality: int = 90
    # Longest side images are shrunk to on write (ImageFolder); null keeps them as they are.
    max_resolution: Optional[int] = None
    # What pretraining reads: the labelled train split, the unlabeled images, or both (as the
    # STL-10 papers pretrain on train+unlabeled). The probes read train and test either way.
    pretrain_split: PretrainSplit = field(default="train", metadata=OMIT_AT_DEFAULT)
    # The unlabeled images: a folder of images at any depth, no classes; null means the
    # dataset's own unlabeled split (stl10's `unlabeled`).
    unlabeled_root: Optional[str] = field(default=None, metadata=OMIT_AT_DEFAULT)

    def __post_init__(self) -> None:
        for key in ("train_per_class", "test_per_class", "max_resolution"):
            value = getattr(self, key)
            _require(value is None or value >= 1, key, f"must be null or >= 1, got {value}")
        if self.pretrain_split == "train":
            _require(self.unlabeled_root is None, "unlabeled_root", "is read only when "
                     "data.pretrain_split is unlabeled or train+unlabeled; set one, or drop "
                     "unlabeled_root")
        else:
            _require(self.unlabeled_root is not None or self.dataset in UNLABELED_SPLITS,
                     "pretrain_split", f"{self.pretrain_split} needs unlabeled images: "
                     f"{self.dataset} has no unlabeled split (only "
                     f"{', '.join(UNLABELED_SPLITS)} has); set data.unlabeled_root to a folder "
                     "of images")
        _require(self.jpeg_above >= 0, "jpeg_above", f"must be >= 0, got {self.jpeg_above}")
        _require(1 <= self.jpeg_quality <= 100, "jpeg_quality",
                 f"must be in 1..100, got {self.jpeg_quality}")


@dataclass(frozen=True)
class AugmentConfig:
    """Section ``augment``: the two-view SSL augmentations.

    Defaults are the CIFAR-scale recipe of solo-learn / BYOL (random resized crop with scale
    (0.08, 1), flip 0.5, colour jitter 0.4/0.4/0.2/0.1 with p 0.8, grayscale 0.2). The
    ImageNet-scale recipe of BYOL (Grill et al., 2020, table 6) adds per-view Gaussian blur
    p (1.0, 0.1) with sigma in [0.1, 2.0] and solarisation p (0.0, 0.2).
    """

    size: int = 28  # side of the augmented views and of the evaluation images
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: tuple[float, float] = (0.0, 0.0)  # per view
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: tuple[float, float] = (0.0, 0.0)  # per view
    # Multi-crop (DINO's DataAugmentationDINO): local crops of each image beside the two
    # global views, seen by the student only; 0 keeps two views. A local crop: a resized crop
    # of local_size px (null: 96/224 of size, DINO's 96 at 224; at least 8, as size) from
    # local_crop_scale of the image, the global views' flip, jitter and grayscale, blur with
    # local_blur_p, no solarisation (DINO: scale (0.05, 0.4), blur 0.5).
    local_crops: int = 0
    local_size: Optional[int] = None
    local_crop_scale: tuple[float, float] = (0.05, 0.4)
    local_blur_p: float = 0.5

    def __post_init__(self) -> None:
        _require(self.size >= 8, "size", f"must be >= 8 pixels, got {self.size}")
        _require(self.local_crops >= 0, "local_crops", f"must be >= 0, got {self.local_crops}")
        _require(self.local_size is None or 8 <= self.local_size <= self.size, "local_size",
                 f"must be null or in 8..size ({self.size}) pixels, got {self.local_size}")
        _interval(self.local_crop_scale, "local_crop_scale", 1e-6, 1.0)
        _in_unit(self.local_blur_p, "local_blur_p")
        _interval(self.crop_scale, "crop_scale", 1e-6, 1.0)
        _interval(self.crop_ratio, "crop_ratio", 1e-6, math.inf)
        _interval(self.blur_sigma, "blur_sigma", 1e-6, math.inf)
        for key in ("flip_p", "jitter_p", "grayscale_p", "brightness", "contrast",
                    "saturation"):
            _require(getattr(self, key) >= 0, key, f"must be >= 0, got {getattr(self, key)}")
        for key in ("flip_p", "jitter_p", "grayscale_p"):
            _in_unit(getattr(self, key), key)
        _require(0.0 <= self.hue <= 0.5, "hue", f"must be in [0, 0.5], got {self.hue}")
        for key in ("blur_p", "solarize_p"):
            for p in getattr(self, key):
                _in_unit(p, key)


@dataclass(frozen=True)
class LoaderConfig:
    """Section ``loader``: how batches are read."""

    backend: Literal["ffcv", "torchvision"] = "ffcv"
    batch_size: int = 256
    # num_workers, os_cache, batches_ahead: FFCV's loader thread, which decodes JPEG or
    # varying-size images; raw images of one size are read in the training thread
    # (data/loaders.py), and torchvision's DataLoader takes num_workers and batches_ahead
    num_workers: int = 2
    # FFCV: let the OS page cache hold the .beton (shared between processes) rather than
    # each process reading it into its own memory.
    os_cache: bool = True
    batches_ahead: int = 3

    def __post_init__(self) -> None:
        _require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        _require(self.num_workers >= 1, "num_workers", f"must be >= 1, got {self.num_workers}")
        _require(self.batches_ahead >= 1, "batches_ahead",
                 f"must be >= 1, got {self.batches_ahead}")


@dataclass(frozen=True)
class ModelConfig:
    """Section ``model``: the backbone every run of the grid trains."""

    backbone: Literal["resnet18", "resnet50", "resnet_tiny", "vit_tiny", "vit_small"] = \
        "resnet_tiny"
    width: int = 16  # base channels of resnet_tiny (ResNet-18's layout; resnet18 has 64)
    cifar_stem: bool = True  # 3x3 stride-1 first convolution and no max-pool, for small images
    # Start each residual block as the identity: the last BatchNorm of every block gets weight 0
    # (Goyal et al., 2017, section 5.1; torchvision's ``zero_init_residual``). SimSiam, Barlow
    # Twins, VICReg and UniGrad set it in their reference code; a method's recipe may set it.
    zero_init_residual: bool = False
    # ViTs (models/vit.py): side of the square patches; the side of the images the position
    # embedding is laid out for (null: augment.size; other sides, such as local crops, get it
    # resampled), a multiple of patch_size; MoCo v3's frozen random patch projection (its
    # stop_grad_conv1, Chen, Xie & He, 2021, sec. 4.1). The ResNets ignore all three.
    patch_size: int = 16
    image_size: Optional[int] = None
    freeze_patch_embed: bool = False
    # ViTs: stochastic depth (Huang et al., 2016), each block's attention and MLP branch dropped
    # per sample in training with a rate rising linearly over the blocks from 0 to this (DINO's
    # --drop_path_rate 0.1, timm's drop_path_rate); 0: off
    drop_path: float = 0.0
    # ViTs: attention heads (null: timm's for the size, DeiT's and DINO's: 6 for vit_small;
    # MoCo v3's vits.py has 12) and the position embedding: learned (timm, DeiT, DINO) or
    # sincos, MoCo v3's fixed 2-D sin-cos one (models/vit.py). Both added after the claims
    # study's runs: left out of to_dict at their defaults, so that the random-init baseline's
    # stamp (a hash of the model section) stays what it was
    heads: Optional[int] = field(default=None, metadata=OMIT_AT_DEFAULT)
    pos_embed: Literal["learned", "sincos"] = field(default="learned", metadata=OMIT_AT_DEFAULT)

    def __post_init__(self) -> None:
        vit = self.backbone.startswith("vit_")
        _require(self.heads is None or (vit and self.heads >= 1), "heads",
                 f"must be null, or >= 1 for a ViT backbone, got {self.heads} for "
                 f"{self.backbone}")
        if self.heads is not None and vit:
            from ..core.models.vit import VITS  # torch: only a ViT profile that sets heads

            width = VITS[self.backbone][0] if self.backbone in VITS else None
            _require(width is None or width % self.heads == 0, "heads",
                     f"{self.backbone}'s width {width} must divide among the heads, got "
                     f"{self.heads}")
        _require(self.pos_embed == "learned" or vit, "pos_embed",
                 f"sincos is a ViT's position embedding; set learned for {self.backbone}")
        _require(0 <= self.drop_path < 1, "drop_path", f"must be in [0, 1), got {self.drop_path}")
        _require(self.drop_path == 0 or self.backbone.startswith("vit_"), "drop_path",
                 f"stochastic depth is implemented for the ViT backbones only; set it to 0 for "
                 f"{self.backbone}")
        _require(self.patch_size >= 1, "patch_size", f"must be >= 1, got {self.patch_size}")
        _require(self.image_size is None or self.image_size >= self.patch_size, "image_size",
                 f"must be null or >= patch_size ({self.patch_size}), got {self.image_size}")
        _require(self.width >= 8 and self.width % 8 == 0, "width",
                 f"must be a multiple of 8, got {self.width} (narrower channels_last "
                 "convolutions corrupt memory in oneDNN on the CPU)")


LOCAL_CROP_KEYS = ("local_crops", "local_size", "local_crop_scale", "local_blur_p")  # augment keys only a multi-crop method reads


def local_size(cfg: AugmentConfig) -> int:
    """``local_size``, or DINO's 96 px at 224 scaled to ``size`` (at least 8, the smallest
    view) when null."""
    return cfg.local_size if cfg.local_size is not None else max(8, round(cfg.size * 96 / 224))
