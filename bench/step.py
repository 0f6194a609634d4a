"""Claim 2, training-step cost by momentum scope: every scope against no EMA, next to theory.

    python bench/step.py [--methods byol,mocov3] [--rounds 4] [--batch 64]

For each method x scope (none, projector, last_k for k = 1..3, full): ResNet-18 with the CIFAR
stem at 32x32, the method's paper heads, batch ``--batch`` (two views), SGD; a step is forward,
backward, optimiser step and EMA update. The scopes of a method are stepped round-robin (see
:func:`step_seconds`). Printed as seconds for scope none and ratios to it for the others,
then the theory: the step's multiply-adds with that scope over those without a teacher, counted
by ``torch.utils.flop_counter`` (convolutions and matrix products; about 8/6 = 1.33x for full:
the teacher's forward of each view over the student's forward + backward of about 3
forward-costs). Goals: projector <= 1.05x; full close to theory; last_k in between, growing
with k. The EMA update alone is bench/ema.py.
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import machine, print_table

SCOPES = [("none", 1), ("projector", 1), ("last_k", 1), ("last_k", 2), ("last_k", 3),
          ("full", 1)]


def learners(method: str, scopes: list[tuple[str, int]]):
    import torch

    from momentum_ssl.core.learner import Learner
    from momentum_ssl.core.methods import build_method
    from momentum_ssl.core.models.backbones import build_backbone

    for scope, k in scopes:
        torch.manual_seed(0)
        yield Learner(build_backbone("resnet18", cifar_stem=True), build_method(method), scope, k)


def step_seconds(method: str, scopes: list[tuple[str, int]], batch: int,
                 rounds: int) -> list[float]:
    """Median seconds per training step of ``method`` under each (scope, k). The learners are
    stepped round-robin, one warm-up round then ``rounds`` timed ones, so that the machine's
    drift falls on every scope alike. On the shared development VM the same step of the same
    learner takes 3.6 to 5.7 s, so single cells move by 15% or more between runs."""
    import torch

    from momentum_ssl.core.momentum import cosine_tau

    runs = []
    for learner in learners(method, scopes):
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


def step_flops(method: str, scopes: list[tuple[str, int]]) -> list[int]:
    """Floating-point operations of one forward + backward of each scope (batch 4: the ratios
    do not depend on the batch)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x1, x2 = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    flops = []
    for learner in learners(method, scopes):
        with FlopCounterMode(display=False) as counter:
            learner(x1, x2)[0].backward()
        flops.append(counter.get_total_flops())
    return flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="byol,mocov3")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    import torch

    names = [scope if scope != "last_k" else f"last_k={k}" for scope, k in SCOPES]
    print(f"training step by momentum scope: ResNet-18 (CIFAR stem) at 32x32, batch {args.batch} "
          f"x 2 views, CPU, {torch.get_num_threads()} threads; {machine()}")
    print(f"median of {args.rounds} rounds after 1 warm-up round; ratios to scope none; theory: "
          "multiply-adds of forward + backward")
    rows, ratios = [], []
    for method in args.methods.split(","):
        none, *others = step_seconds(method, SCOPES, args.batch, args.rounds)
        ratios.append([t / none for t in others])
        rows.append([method, f"{none:.2f}", *ratios[-1]])
        base, *flops = step_flops(method, SCOPES)
        rows.append([f"{method} theory", "", *[f / base for f in flops]])
    medians = [statistics.median(column) for column in zip(*ratios)]
    print_table(["method", "none s/step", *names[1:]], rows,
                ["{}", "{}"] + ["{:.2f}x"] * (len(names) - 1))
    print("goals: projector <= 1.05x, last_k between projector and full growing with k, full "
          "close to theory")
    print("ratio to none, median over methods: " +
          ", ".join(f"{name} {r:.2f}x" for name, r in zip(names[1:], medians)))


if __name__ == "__main__":
    main()
