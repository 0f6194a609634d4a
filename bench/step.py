"""Training-step cost by momentum scope, and the EMA update's share of a step.

    python bench/step.py [--methods byol,simclr] [--rounds 3] [--batch 64]

For each method x scope: ResNet-18 with the CIFAR stem at 32x32, the method's paper heads,
batch ``--batch`` (two views), SGD; a step is forward, backward, optimiser step and EMA update.
The scopes of a method are stepped round-robin (see :func:`step_seconds`). Printed as seconds for scope none and ratios to
it for the others (goals: projector <= 1.05x, full about 8/6 = 1.33x: the teacher's two
forwards over the student's forward + backward of about 3 forward-costs per view). Then last_k
for k = 1..3 (BYOL), and the EMA update alone: the foreach update against a per-parameter loop,
and its share of a full-scope step (goal < 2%).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path


def step_seconds(method: str, scopes: list[tuple[str, int]], batch: int,
                 rounds: int) -> list[float]:
    """Median seconds per training step of ``method`` under each (scope, k). The learners are
    stepped round-robin, one warm-up round then ``rounds`` timed ones, so that the machine's
    drift falls on every scope alike."""
    import torch

    from momentum_ssl.learner import Learner
    from momentum_ssl.methods import build_method
    from momentum_ssl.models.backbones import build_backbone
    from momentum_ssl.momentum import cosine_tau

    runs = []
    for scope, k in scopes:
        torch.manual_seed(0)
        learner = Learner(build_backbone("resnet18", cifar_stem=True), build_method(method),
                          scope, k)
        optimizer = torch.optim.SGD([p for p in learner.parameters() if p.requires_grad],
                                    lr=0.01, momentum=0.9)
        runs.append((learner, optimizer))
    x1, x2 = torch.randn(batch, 3, 32, 32), torch.randn(batch, 3, 32, 32)
    times: list[list[float]] = [[] for _ in scopes]
    for round_ in range(rounds + 1):
        for i, (learner, optimizer) in enumerate(runs):
            start = time.perf_counter()
            loss, _ = learner(x1, x2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            learner.update_teacher(cosine_tau(round_, 100, 0.99))
            if round_ > 0:
                times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def ema_seconds(repeats: int = 20) -> tuple[float, float]:
    """Median seconds of the foreach EMA and of a per-parameter loop, ResNet-18 + BYOL heads."""
    import torch

    from momentum_ssl.learner import Learner
    from momentum_ssl.methods import build_method
    from momentum_ssl.models.backbones import build_backbone

    learner = Learner(build_backbone("resnet18"), build_method("byol"), "full")
    pairs = learner.teacher.pairs

    @torch.no_grad()
    def loop(tau: float) -> None:
        for online, teacher in pairs:
            for p, t in zip(online.parameters(), teacher.parameters()):
                t.mul_(tau).add_(p, alpha=1 - tau)

    def median(fn) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(0.99)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    median(learner.update_teacher)  # warm-up
    return median(learner.update_teacher), median(loop)


def main() -> None:
    from momentum_ssl.methods import METHODS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    import torch

    print(f"ResNet-18 (CIFAR stem) at 32x32, batch {args.batch} x 2 views, CPU, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs ({platform.machine()}); "
          f"median of {args.rounds} rounds after 1 warm-up round")
    print(f"{'method':<14}{'none s/step':>12}{'projector':>11}{'last_k=2':>10}{'full':>8}")
    full_step, ratios = [], []
    scopes = [("none", 1), ("projector", 1), ("last_k", 2), ("full", 1)]
    for method in args.methods.split(","):
        none, *others = step_seconds(method, scopes, args.batch, args.rounds)
        full_step.append(others[-1])
        ratios.append([t / none for t in others])
        print(f"{method:<14}{none:>12.2f}" + "".join(f"{r:>{w}.2f}x" for r, w in
                                                     zip(ratios[-1], (10, 9, 7))))
    medians = [statistics.median(column) for column in zip(*ratios)]
    print(f"{'median':<14}{'':>12}" + "".join(f"{r:>{w}.2f}x" for r, w in
                                              zip(medians, (10, 9, 7))))

    none, *by_k = step_seconds("byol", [("none", 1)] + [("last_k", k) for k in (1, 2, 3)],
                               args.batch, args.rounds)
    print("byol last_k, ratio to none: " + ", ".join(f"k={k} {t / none:.2f}x"
                                                      for k, t in zip((1, 2, 3), by_k)))

    foreach, loop = ema_seconds()
    share = foreach / statistics.median(full_step)
    print(f"EMA update (ResNet-18 + BYOL heads): foreach {foreach * 1e3:.1f} ms, per-parameter "
          f"loop {loop * 1e3:.1f} ms; share of a full-scope step {100 * share:.2f}%; "
          f"loop / foreach {loop / foreach:.2f}x")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main()
