"""Two-view training loader throughput: FFCV (+ batched augmentations) vs torchvision.

    python bench/loader.py [--params params.yaml] [--batches 100] [--local-crops 6]

Both loaders read the dataset of the params file (converted first if needed) with the same
batch size, worker count and augmentation recipe; each runs in its own process, skips a few
warm-up batches (numba compilation, worker start) and then times ``--batches`` batches.
Prints images/s (one image = its two views) side by side, the ratio last. A third line times
the FFCV loader with multi-crop (DINO's): the two views plus ``--local-crops`` local crops of
``augment.local_size`` (null: 96/224 of the view size) per image; one image = all its crops.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--local-crops", type=int, default=6,
                        help="local crops per image on the multi-crop line (DINO: 8 at 224 px)")
    parser.add_argument("--only", choices=["ffcv", "torchvision", "ffcv-multicrop"],
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
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
