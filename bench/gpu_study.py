"""The GPU check's end-to-end step: a scaled-down CIFAR-shaped study through the whole DAG on one
GPU, scheduled by Snakemake (``--resources gpu=1``), not only single scripts.

    python bench/gpu_study.py [--dir DIR] [--runs byol-full] [--train-per-class 256]
                              [--test-per-class 50] [--cores 8] [--dry-run]

In ``DIR`` (default: a temporary folder, removed after): a copy of the sources, synthetic
32 x 32 RGB images in 10 classes written as an ImageFolder (seeded noise; a GPU machine has no
CIFAR-10 and no network), and params/cifar10.yaml scaled down: that data stored as JPEG (so
training and evaluation read it through FFCV's loader onto the GPU, the path a real
ImageNet-style folder takes), one seed, one epoch, the chosen grid runs at the CIFAR recipes
(ResNet-18, LARS, batch 256, ``device: cuda``), a small kNN monitor, one logistic C, digits as
the transfer target. Then ``dvc init --no-scm`` and ``snakemake --cores N --resources gpu=1``,
whose output streams as it runs; at the end each run's images/s, its device and precision
(from provenance.json) and the report's first lines. ``--dry-run`` stops at ``snakemake -n``:
the DAG builds, nothing runs (what the CPU test checks).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # dvc's script beside the Python that runs this, if there


def write_images(root: Path, train_per_class: int, test_per_class: int, seed: int = 0) -> None:
    """An ImageFolder of 32 x 32 RGB PNGs, 10 classes, each class its own mean colour."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for c in range(10):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            tint = rng.integers(40, 216, 3)
            for i in range(count):
                noise = rng.normal(0, 40, (32, 32, 3)) + tint
                Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8)).save(
                    folder / f"{i}.png")


def study_params(images: Path, runs: list[str], device: str = "cuda") -> dict:
    """params/cifar10.yaml, scaled down (see the module docstring)."""
    params = yaml.safe_load((REPO / "params" / "cifar10.yaml").read_text())
    unknown = [r for r in runs if r not in params["grid"]]
    if unknown:
        raise SystemExit(f"--runs: {', '.join(unknown)} not in params/cifar10.yaml's grid")
    params["seeds"] = [0]
    params["data"] = {"dataset": "imagefolder", "root": str(images), "out_dir": "data/beton",
                      "jpeg_above": 0}
    params["pretrain"].update({"monitor_train": 500, "monitor_test": 200, "log_every": 5,
                               "device": device})
    # numba refuses more FFCV workers than cores
    params["loader"]["num_workers"] = min(params["loader"]["num_workers"], os.cpu_count() or 1)
    params["probe"].update({"logistic_c": [0.1], "max_iter": 200})
    params["transfer"] = {"targets": [{"dataset": "digits"}]}
    params["recipes"] = "params/recipes/cifar.yaml"
    # the root pipeline this folder copies has no linear stage (a profile's linear evaluation
    # runs in a study's pipeline: python -m momentum_ssl study NAME), so it stays off here
    params["linear"] = False
    # one epoch: a grid run's own override (the recipes' warm-ups, up to 10 epochs, must fit
    # the shared section's epochs)
    params["grid"] = {name: {**params["grid"][name],
                             "pretrain": {"epochs": 1, "warmup_epochs": 0.5}} for name in runs}
    return params


def make_study(folder: Path, runs: list[str], train_per_class: int, test_per_class: int,
               device: str = "cuda") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "src", folder / "src", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("workflow", "params"):
        shutil.copytree(REPO / name, folder / name, dirs_exist_ok=True)
    for name in ("Snakefile", "dvc.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(REPO / name, folder / name)
    write_images(folder / "images", train_per_class, test_per_class)
    params = study_params(folder / "images", runs, device)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the rules run `python -m momentum_ssl` and `dvc`: this Python first on their PATH (a
    # machine may have python3 only)
    shims = folder / ".bin"
    shims.mkdir(exist_ok=True)
    for name, run in (("python", ""), ("dvc", " -m dvc")):  # scripts: a link would lose a venv
        (shims / name).write_text(f'#!/bin/sh\nexec "{sys.executable}"{run} "$@"\n')
        (shims / name).chmod(0o755)
    if not (folder / ".dvc").is_dir():
        subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=folder,
                       check=True)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=None, help="where to build the study (kept)")
    parser.add_argument("--runs", default="byol-full",
                        help="grid runs of params/cifar10.yaml, comma-separated")
    parser.add_argument("--train-per-class", type=int, default=256)
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument("--cores", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--dry-run", action="store_true",
                        help="build the study and stop at snakemake -n (no GPU needed)")
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # a CPU try-out
    args = parser.parse_args(argv)
    temporary = args.dir is None
    folder = Path(args.dir or tempfile.mkdtemp(prefix="momentum-ssl-gpu-study-"))
    started = time.perf_counter()
    try:
        runs = args.runs.split(",")
        make_study(folder, runs, args.train_per_class, args.test_per_class, args.device)
        env = {**os.environ, "PATH": f"{folder / '.bin'}:{BIN}:{os.environ['PATH']}",
               "PYTHONPATH": str(folder / "src"), "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "snakemake", "--cores", str(args.cores),
                   "--resources", "gpu=1"]
        if args.dry_run:
            command += ["-n", "--quiet", "rules"]
        print(f"study in {folder} ({time.perf_counter() - started:.0f} s to build): "
              + " ".join(command[2:]), flush=True)
        done = subprocess.run(command, cwd=folder, env=env)
        if done.returncode or args.dry_run:
            return done.returncode
        for run in runs:
            out = folder / "results" / "runs" / run / "s0"
            where = json.loads((out / "provenance.json").read_text())
            metrics = json.loads((out / "dvclive" / "metrics.json").read_text())
            steps, seconds = metrics["time"]["steps"], metrics["time"]["pretrain_s"]
            print(f"{run}: {steps} steps in {seconds:.1f} s on {where.get('gpu', 'the CPU')} "
                  f"({where.get('precision', 'fp32')}); device {where['device']}", flush=True)
            if where["device"] != args.device:
                print(f"{run} trained on {where['device']}, not {args.device}", flush=True)
                return 1
        report = (folder / "results" / "report.md").read_text().splitlines()
        print("\n".join(report[:12]))
        print(f"study: {time.perf_counter() - started:.0f} s in all", flush=True)
        return 0
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
