"""What a checkpoint costs: its size and the seconds to write it, per grid run of a profile.

    python bench/checkpoint.py [--params params/cifar10.yaml] [--runs byol-full dino-full]
                               [--repeats 3]

Builds each run's learner and optimiser as the pretrain stage does (its recipe resolved), takes
one optimiser step on two random views of 4 images (so the optimiser's buffers exist, as after
any step), then writes the state the training loop's checkpoint holds with
``save_checkpoint`` (an atomic write: a temporary file, fsync, rename) ``--repeats`` times into
a temporary folder, and prints the size and the median seconds. ``pretrain.checkpoint_every``
(docs/GPU.md) weighs this against an epoch's time; a kept checkpoint (``pretrain.keep_every``)
holds the learner alone.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import machine, print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params/cifar10.yaml")
    parser.add_argument("--runs", nargs="*", default=["byol-full"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from momentum_ssl.config import load_params, resolve
    from momentum_ssl.core.learner import build_learner
    from momentum_ssl.core.optim import build_optimizer
    from momentum_ssl.plumbing.artifacts import atomic_torch_save
    from momentum_ssl.plumbing.checkpoint import save_checkpoint

    params = load_params(args.params)
    runs = {run.name: run for run in params.grid}
    rows = []
    for name in args.runs:
        run = runs[name]
        resolved = resolve(params, run)
        torch.manual_seed(0)
        learner = build_learner(resolved, run)
        optimizer = build_optimizer(learner, resolved.pretrain, resolved.pretrain.lr)
        size = resolved.augment.size
        views = [torch.randn(4, 3, size, size) for _ in range(2)]
        loss, _ = learner(*views, epoch=0)
        loss.backward()
        optimizer.step()
        state = {"learner": learner.state_dict(), "optimizer": optimizer.state_dict(),
                 "epoch": 1, "step": 1, "elapsed_s": 0.0, "torch_rng": torch.get_rng_state()}
        kept = {"learner": learner.state_dict(), "epoch": 1}
        seconds, kept_seconds = [], []
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "checkpoint.pt"
            for _ in range(args.repeats):
                started = time.perf_counter()
                save_checkpoint(state, path)
                seconds.append(time.perf_counter() - started)
            mb = path.stat().st_size / 1e6
            for _ in range(args.repeats):
                started = time.perf_counter()
                atomic_torch_save(kept, Path(folder) / "e0001.pt")
                kept_seconds.append(time.perf_counter() - started)
            kept_mb = (Path(folder) / "e0001.pt").stat().st_size / 1e6
        rows.append([name, f"{mb:.0f}", f"{statistics.median(seconds):.2f}",
                     f"{kept_mb:.0f}", f"{statistics.median(kept_seconds):.2f}"])
        print(f"{name}: checkpoint {mb:.0f} MB in {statistics.median(seconds):.2f} s; kept "
              f"weights {kept_mb:.0f} MB in {statistics.median(kept_seconds):.2f} s",
              flush=True)
    print(machine())
    print_table(["run", "checkpoint (MB)", "write (s)", "kept weights (MB)", "write (s)"], rows,
                ["{}"] * 5)


if __name__ == "__main__":
    main()
