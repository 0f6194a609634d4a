"""Claim 9, the input pipeline's cost: a pretraining step through the real loader against the
model's own step on batches already in memory.

    python bench/pipeline.py [--params params.yaml] [--run simclr-none] [--steps 20]

Three measurements of the same run (the params' grid run ``--run``, its recipe resolved, first
training seed), each in its own process with the same torch thread count (printed):

- ``model only``: the training step (forward of both views, backward, optimiser step, EMA
  update) on ``--steps`` two-view batches taken from the real loader beforehand and held in
  memory; the median step after 3 warm-up steps;
- ``loader + step``: the same step fed by the real loader (FFCV decoding, the seeded two-view
  augmentations), one epoch; the mean step from the 4th batch to the end (FFCV's and torch's
  first batches compile and allocate);
- ``pretrain()``: the stage itself, one epoch, from its dvclive summary (``time/pretrain_s``
  over ``time/steps``): the loader and step plus logging, telemetry and health every
  ``log_every`` steps and the kNN monitor (every ``eval_every`` steps, and at the epoch's end).

Goal (issue 15): ``loader + step`` at most 1.15x ``model only``. The ``pretrain()`` line shows
what the rest of the loop adds, the kNN monitor's share (bench/e2e.py and issue 14) included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, print_table

GOAL = 1.15
WARMUP = 3
THREADS = os.cpu_count() or 1  # torch's own default; importing FFCV lowers it to 1


def _setup(params_path: str, run_name: str):
    from momentum_ssl.config import load_params

    params = load_params(params_path)
    run = {r.name: r for r in params.grid}[run_name]
    return setup(params, run, params.seeds[0])


def setup(params, run, seed: int):
    """(resolved params, loader, learner, optimizer) of ``run`` trained with ``seed``."""
    import torch

    from momentum_ssl.config import resolve, with_seed
    from momentum_ssl.data.loaders import train_loader
    from momentum_ssl.core.learner import build_learner
    from momentum_ssl.core.optim import build_optimizer

    params = resolve(with_seed(params, seed), run)
    torch.manual_seed(params.seed)
    loader = train_loader(params)  # imports FFCV, which sets torch's threads: set them after
    torch.set_num_threads(THREADS)
    learner = build_learner(params, run)
    optimizer = build_optimizer(learner, params.pretrain, 0.01)
    return params, loader, learner, optimizer


def train_step(learner, optimizer, x1, x2) -> None:
    """One training step as the loop takes it: forward of both views, backward, optimiser
    step, EMA update."""
    loss, _ = learner(x1, x2)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    learner.update_teacher(0.99)


def model_step(loader, learner, optimizer, steps: int) -> tuple[float, int]:
    """(median seconds, number) of ``steps`` training steps on batches the loader made
    beforehand and that are held in memory, after 3 warm-up steps."""
    batches = []
    for x1, x2, _ in loader:
        batches.append((x1, x2))
        if len(batches) == steps + WARMUP:
            break
    learner.train()
    times = []
    for x1, x2 in batches:
        start = time.perf_counter()
        train_step(learner, optimizer, x1, x2)
        times.append(time.perf_counter() - start)
    return statistics.median(times[WARMUP:]), len(times) - WARMUP


def measure(kind: str, params_path: str, run_name: str, steps: int) -> dict:
    import torch

    params, loader, learner, optimizer = _setup(params_path, run_name)
    if len(loader) <= WARMUP:
        raise SystemExit(f"only {len(loader)} batches an epoch: too few to time")
    learner.train()
    if kind == "model":
        seconds, count = model_step(loader, learner, optimizer, steps)
    else:
        start = None
        count = 0
        for i, (x1, x2, _) in enumerate(loader):
            if i == WARMUP:
                start, count = time.perf_counter(), 0
            train_step(learner, optimizer, x1, x2)
            count += 1
        seconds = (time.perf_counter() - start) / count
    return {"kind": kind, "seconds": seconds, "steps": count,
            "threads": torch.get_num_threads()}


def measure_pretrain(params_path: str, run_name: str) -> dict:
    import torch

    from momentum_ssl.config import load_params
    from momentum_ssl.stages.pretrain import pretrain

    params = load_params(params_path)
    run = {r.name: r for r in params.grid}[run_name]
    with tempfile.TemporaryDirectory() as tmp:
        out = pretrain(params, run, Path(tmp) / "run", seed=params.seeds[0])
        summary = json.loads((out / "dvclive" / "metrics.json").read_text())
    time_s = summary["time"]
    return {"kind": "pretrain", "seconds": time_s["pretrain_s"] / time_s["steps"],
            "steps": time_s["steps"], "threads": torch.get_num_threads()}


def child(kind: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--params", args.params, "--run", args.run, "--steps",
               str(args.steps), "--only", kind]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--run", default="simclr-none")
    parser.add_argument("--steps", type=int, default=20, help="timed model-only steps")
    parser.add_argument("--only", choices=["model", "loader", "pretrain"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        result = (measure_pretrain(args.params, args.run) if args.only == "pretrain"
                  else measure(args.only, args.params, args.run, args.steps))
        print(json.dumps(result))
        return

    from momentum_ssl.config import load_params
    from momentum_ssl.data.convert import convert
    from momentum_ssl.data.loaders import beton_folder

    params = load_params(args.params)
    if args.run not in {r.name for r in params.grid}:
        sys.exit(f"--run {args.run} is not in the grid of {args.params}")
    if not (beton_folder(params) / "meta.json").is_file():
        convert(params)
    model, loader, stage = (child(k, args) for k in ("model", "loader", "pretrain"))
    print(f"pretraining step of {args.run}: {params.data.dataset} at {params.augment.size}px, "
          f"{params.model.backbone}, batch {params.loader.batch_size} x 2 views, "
          f"{params.loader.num_workers} loader workers; {machine()}")
    base = model["seconds"]
    print_table(["step", "steps", "threads", "s/step", "x model only"],
                [["model only (batches in memory)", model["steps"], model["threads"], base, 1.0],
                 ["loader + step", loader["steps"], loader["threads"], loader["seconds"],
                  loader["seconds"] / base],
                 ["pretrain() (+ logging, telemetry, kNN monitor)", stage["steps"],
                  stage["threads"], stage["seconds"], stage["seconds"] / base]],
                ["{}", "{}", "{}", "{:.4f}", "{:.2f}"])
    print(f"ratio loader + step / model only: {loader['seconds'] / base:.2f}x (goal <= {GOAL}x)")


if __name__ == "__main__":
    main()
