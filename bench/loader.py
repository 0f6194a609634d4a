"""Two-view training loader throughput: FFCV (+ batched augmentations) vs torchvision.

    python bench/loader.py [--params params.yaml] [--batches 100] [--local-crops 6]
    python bench/loader.py --crops [--images 512] [--image-size 500x375] [--size 224]
                           [--batch 64] [--workers 2] [--epochs 2] [--rounds 3]
                           [--views 1,2]

Both loaders read the dataset of the params file (converted first if needed) with the same
batch size, worker count and augmentation recipe; each runs in its own process, skips a few
warm-up batches (numba compilation, worker start) and then times ``--batches`` batches.
Prints images/s (one image = its two views) side by side, the ratio last. A third line times
the FFCV loader with multi-crop (DINO's): the two views plus ``--local-crops`` local crops of
``augment.local_size`` (null: 96/224 of the view size) per image; one image = all its crops.

``--crops`` times the training views' decoder for images of varying size instead
(``WholeImageCropDecoder``: the whole JPEG decoded once, each view's seeded crop cut from it)
against FFCV's own ``RandomResizedCropRGBImageDecoder`` (one JPEG decode per view: one pipeline
per view), decoding only, on an ImageFolder of ``--images`` JPEGs at ImageNet's typical size
(500 x 375, landscape and portrait alternately), made and converted in a temporary folder.
Each decoder runs one warm-up epoch (numba compilation), then ``--rounds`` rounds of
``--epochs`` epochs, the decoders in turn, and keeps its best round (on a shared machine a busy
spell then falls on each alike). Its CPU time per image (every thread of the process) is
printed beside the rate: on a shared machine it moves less than the wall time. The ratios are
FFCV's CPU time per image over ours, and our images/s over FFCV's, at one view and at two.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from common import machine, print_table

WARMUP = 5


def multicrop(params, crops: int):
    """``params`` as a DINO run trains with them with ``crops`` local crops (only DINO takes
    them: they are set in its recipe)."""
    from momentum_ssl.config import RunSpec, params_from_dict, resolve, to_dict

    data = to_dict(params)
    recipe = data["recipes"]["dino"]
    recipe["augment"] = {**recipe.get("augment", {}), "local_crops": crops}
    return resolve(params_from_dict(data), RunSpec("dino", "full"))


def measure(backend: str, params_path: str, batches: int, local_crops: int = 0) -> dict:
    import torch

    from momentum_ssl.config import load_params
    from momentum_ssl.data.loaders import torchvision_two_view_loader, train_loader

    params = load_params(params_path)
    if backend == "ffcv-multicrop":
        params = multicrop(params, local_crops)
    loader = (torchvision_two_view_loader(params) if backend == "torchvision"
              else train_loader(params))
    total = min(batches + WARMUP + 1, len(loader))
    if total <= WARMUP + 1:
        raise SystemExit(f"only {len(loader)} batches per epoch: too few to time")
    images, start = 0, 0.0
    # time from the end of the warm-up batches to the end of the last timed batch
    for i, (*views, labels) in enumerate(loader):
        if i == WARMUP:
            start = time.perf_counter()
        elif i > WARMUP:
            images += len(labels)
        if i + 1 == total:
            break
    seconds = time.perf_counter() - start
    return {"backend": backend, "images": images, "seconds": seconds,
            "images_per_s": images / seconds, "threads": torch.get_num_threads()}


# --- the whole-image crop decoder against FFCV's RandomResizedCropRGBImageDecoder -----------


def write_jpeg_folder(root, images: int, size: tuple[int, int], seed: int = 0) -> None:
    """An ImageFolder (train and test, two classes) of JPEGs at ``size`` (width, height),
    alternately landscape and portrait: smooth colour ramps with noise, quality 90, so each
    decodes about like a photograph of its size."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", images), ("test", 2)):
        for i in range(count):
            width, height = size if i % 2 == 0 else size[::-1]
            yy, xx = np.mgrid[0:height, 0:width]
            phase = rng.uniform(0, 6.28, 3)
            image = np.stack([np.sin(xx / (20 + 15 * c) + yy / 37 + phase[c]) for c in range(3)],
                             -1) * 90 + 128 + rng.normal(0, 12, (height, width, 3))
            folder = root / split / f"class{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
                folder / f"{i}.jpg", quality=90)


def decoder_loader(params, decoder: str, views: int):
    """An FFCV loader of the params' train split whose only output is the views' pixels:
    ``ours`` (one WholeImageCropDecoder, every view from one decode) or ``ffcv`` (one
    RandomResizedCropRGBImageDecoder pipeline per view, each decoding the JPEG)."""
    import dataclasses

    from ffcv.fields.decoders import RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.pipeline import PipelineSpec
    from ffcv.transforms import ToTensor

    from momentum_ssl.data.convert import beton_path, read_meta
    from momentum_ssl.data.loaders import beton_folder, whole_image_crop_decoder

    cfg = params.augment
    folder = beton_folder(params)
    if decoder == "ours":
        ours = whole_image_crop_decoder(dataclasses.replace(cfg, local_crops=0), params.seed)
        ours.sides, ours.scales = ours.sides[:views], ours.scales[:views]
        ours.offsets = ours.offsets[:views + 1]
        pipelines = {"image": PipelineSpec("image", ours, [ToTensor()])}
    else:
        pipelines = {f"view{v}": PipelineSpec("image", RandomResizedCropRGBImageDecoder(
            (cfg.size, cfg.size), tuple(cfg.crop_scale), tuple(cfg.crop_ratio)), [ToTensor()])
                     for v in range(views)}
        pipelines["image"] = None
    pipelines["label"] = None
    return Loader(str(beton_path(folder, "train", read_meta(folder))),
                  batch_size=params.loader.batch_size, num_workers=params.loader.num_workers,
                  os_cache=True, order=OrderOption.RANDOM, seed=params.seed, drop_last=True,
                  pipelines=pipelines), ours if decoder == "ours" else None


class TimedDecoder:
    """One decoder's loader, compiled by a warm-up epoch; :meth:`run` times ``epochs`` more."""

    def __init__(self, params, decoder: str, views: int):
        self.decoder, self.views = decoder, views
        self.loader, self.ours = decoder_loader(params, decoder, views)
        self.epoch, self.best = 0, None
        self.run(1, timed=False)  # numba compiles the pipeline

    def run(self, epochs: int, timed: bool = True) -> None:
        start, cpu, images = time.perf_counter(), time.process_time(), 0
        for _ in range(epochs):
            if self.ours is not None:
                self.ours.set_epoch(self.epoch)
            self.epoch += 1
            for batch in self.loader:
                images += len(batch[0])
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        if timed and (self.best is None or seconds < self.best["seconds"]):
            self.best = {"decoder": self.decoder, "views": self.views, "images": images,
                         "seconds": seconds, "images_per_s": images / seconds,
                         "cpu_ms": 1000 * cpu / images}


def crops_main(args) -> None:
    import tempfile
    from pathlib import Path

    from momentum_ssl.config import load_params, params_from_dict, to_dict
    from momentum_ssl.data.convert import convert

    width, height = (int(v) for v in args.image_size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_jpeg_folder(root / "folder", args.images, (width, height))
        data = to_dict(load_params(args.params))
        data["data"].update(dataset="imagefolder", root=str(root / "folder"),
                            out_dir=str(root / "beton"), train_per_class=None,
                            test_per_class=None, max_resolution=None)
        data["augment"]["size"] = args.size
        data["loader"].update(batch_size=args.batch, num_workers=args.workers)
        params = params_from_dict(data)
        convert(params)
        timed = [TimedDecoder(params, decoder, views)
                 for views in args.views for decoder in ("ffcv", "ours")]
        for _ in range(args.rounds):  # in turn, so that a busy spell of a shared machine
            for decoder in timed:    # falls on every decoder alike; the best round counts
                decoder.run(args.epochs)
        rows = [decoder.best for decoder in timed]
    names = {"ffcv": "ffcv RandomResizedCropRGBImageDecoder",
             "ours": "momentum-ssl WholeImageCropDecoder"}
    print(f"training-view decoders, {args.images} JPEGs of {width}x{height} and {height}x{width}"
          f" (quality 90), {args.size}px views, batch {args.batch}, {args.workers} workers, "
          f"the best of {args.rounds} rounds of {args.epochs} epochs, in turn, after a warm-up "
          f"epoch; {machine()}")
    print_table(["decoder", "views", "images", "seconds", "images/s", "CPU ms/image"],
                [[names[r["decoder"]], r["views"], r["images"], r["seconds"],
                  r["images_per_s"], r["cpu_ms"]] for r in rows],
                ["{}", "{}", "{}", "{:.2f}", "{:.0f}", "{:.2f}"])

    def ratios(key: str, ours_over_ffcv: bool) -> str:
        return ", ".join(f"{views} view{'s' * (views > 1)} " + (
            f"{rows[2 * i + 1][key] / rows[2 * i][key]:.2f}x" if ours_over_ffcv else
            f"{rows[2 * i][key] / rows[2 * i + 1][key]:.2f}x")
            for i, views in enumerate(args.views))

    # CPU time (every thread of the process, FFCV's workers included) moves less than the
    # wall time when other jobs share the cores
    print(f"ratio ffcv / ours CPU time per image: {ratios('cpu_ms', False)}")
    print(f"ratio ours / ffcv images/s: {ratios('images_per_s', True)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--local-crops", type=int, default=6,
                        help="local crops per image on the multi-crop line (DINO: 8 at 224 px)")
    parser.add_argument("--only", choices=["ffcv", "torchvision", "ffcv-multicrop"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--crops", action="store_true",
                        help="time the whole-image crop decoder against FFCV's instead")
    parser.add_argument("--images", type=int, default=512, help="--crops: JPEGs to make")
    parser.add_argument("--image-size", default="500x375", help="--crops: WIDTHxHEIGHT")
    parser.add_argument("--size", type=int, default=224, help="--crops: view side")
    parser.add_argument("--batch", type=int, default=64, help="--crops: batch size")
    parser.add_argument("--workers", type=int, default=2, help="--crops: FFCV workers")
    parser.add_argument("--epochs", type=int, default=2, help="--crops: epochs per round")
    parser.add_argument("--rounds", type=int, default=3, help="--crops: timed rounds")
    parser.add_argument("--views", type=lambda text: [int(v) for v in text.split(",")],
                        default=[1, 2], help="--crops: views per image, e.g. 1,2")
    args = parser.parse_args()
    if args.crops:
        crops_main(args)
        return
    if args.only:
        print(json.dumps(measure(args.only, args.params, args.batches, args.local_crops)))
        return

    from momentum_ssl.config import load_params
    from momentum_ssl.data.convert import convert
    from momentum_ssl.data.loaders import beton_folder

    params = load_params(args.params)
    if not (beton_folder(params) / "meta.json").is_file():
        convert(params)
    results = {}
    for backend in ("ffcv", "torchvision", "ffcv-multicrop"):
        run = subprocess.run([sys.executable, __file__, "--params", args.params, "--batches",
                              str(args.batches), "--local-crops", str(args.local_crops),
                              "--only", backend], capture_output=True, text=True, check=True)
        results[backend] = json.loads(run.stdout.strip().splitlines()[-1])
    ffcv, tv, multi = results["ffcv"], results["torchvision"], results["ffcv-multicrop"]
    multi["backend"] = f"ffcv, 2 views + {args.local_crops} local crops"
    print(f"two-view training loader, {params.data.dataset} at {params.augment.size}px, batch "
          f"{params.loader.batch_size}, {params.loader.num_workers} workers; {machine()}")
    print_table(["loader", "images", "seconds", "images/s"],
                [[r["backend"], r["images"], r["seconds"], r["images_per_s"]]
                 for r in (ffcv, tv, multi)],
                ["{}", "{}", "{:.2f}", "{:.0f}"])
    print(f"multi-crop cost: ffcv two-view / multi-crop images/s: "
          f"{ffcv['images_per_s'] / multi['images_per_s']:.2f}x")
    print(f"ratio ffcv / torchvision: {ffcv['images_per_s'] / tv['images_per_s']:.2f}x")


if __name__ == "__main__":
    main()
