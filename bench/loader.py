"""Two-view training loader throughput: FFCV (+ batched augmentations) vs torchvision.

    python bench/loader.py [--params params.yaml] [--batches 100]

Both loaders read the dataset of the params file (converted first if needed) with the same
batch size, worker count and augmentation recipe; each runs in its own process, skips a few
warm-up batches (numba compilation, worker start) and then times ``--batches`` batches.
Prints images/s (one image = its two views) side by side, the ratio last.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from common import machine, print_table

WARMUP = 5


def measure(backend: str, params_path: str, batches: int) -> dict:
    import torch

    from momentum_ssl.config import load_params
    from momentum_ssl.data.loaders import torchvision_two_view_loader, train_loader

    params = load_params(params_path)
    loader = (train_loader(params) if backend == "ffcv" else torchvision_two_view_loader(params))
    total = min(batches + WARMUP + 1, len(loader))
    if total <= WARMUP + 1:
        raise SystemExit(f"only {len(loader)} batches per epoch: too few to time")
    images, start = 0, 0.0
    # time from the end of the warm-up batches to the end of the last timed batch
    for i, (view1, view2, labels) in enumerate(loader):
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
    parser.add_argument("--only", choices=["ffcv", "torchvision"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        print(json.dumps(measure(args.only, args.params, args.batches)))
        return

    from momentum_ssl.config import load_params
    from momentum_ssl.data.convert import convert
    from momentum_ssl.data.loaders import beton_folder

    params = load_params(args.params)
    if not (beton_folder(params) / "meta.json").is_file():
        convert(params)
    results = {}
    for backend in ("ffcv", "torchvision"):
        run = subprocess.run([sys.executable, __file__, "--params", args.params, "--batches",
                              str(args.batches), "--only", backend], capture_output=True,
                             text=True, check=True)
        results[backend] = json.loads(run.stdout.strip().splitlines()[-1])
    ffcv, tv = results["ffcv"], results["torchvision"]
    print(f"two-view training loader, {params.data.dataset} at {params.augment.size}px, batch "
          f"{params.loader.batch_size}, {params.loader.num_workers} workers; {machine()}")
    print_table(["loader", "images", "seconds", "images/s"],
                [[r["backend"], r["images"], r["seconds"], r["images_per_s"]] for r in (ffcv, tv)],
                ["{}", "{}", "{:.2f}", "{:.0f}"])
    print(f"ratio ffcv / torchvision: {ffcv['images_per_s'] / tv['images_per_s']:.2f}x")


if __name__ == "__main__":
    main()
