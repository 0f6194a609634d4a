"""Claim 3, the EMA update: momentum-ssl's foreach update against per-parameter loops, and its
share of a training step.

    python bench/ema.py [--repeats 30] [--steps 3] [--batch 64] [--device cpu]

The teacher of ResNet-18 (CIFAR stem) + BYOL's heads at full scope. Each update is timed
``--repeats`` times (median): ``ema_update_`` (one foreach lerp), a foreach mul then add, the
in-place per-parameter loop of most reference code, and the allocating loop
``t.data = tau * t.data + (1 - tau) * p.data`` (solo-learn's MomentumUpdater). Then the median
of ``--steps`` full training steps of that learner (batch ``--batch`` x 2 views: forward,
backward, SGD, EMA) gives the update's share of a step. Goal: share < 2%.
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import machine, print_table


def median_seconds(fn, repeats: int, sync) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from momentum_ssl.core.learner import Learner
    from momentum_ssl.core.methods import build_method
    from momentum_ssl.core.models.backbones import build_backbone
    from momentum_ssl.core.momentum import ema_update_

    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    learner = Learner(build_backbone("resnet18", cifar_stem=True), build_method("byol"),
                      "full").to(device)
    pairs = learner.teacher.pairs
    online = [p for s, _ in pairs for p in s.parameters()]
    teacher = [p for _, t in pairs for p in t.parameters()]
    tau = 0.99

    @torch.no_grad()
    def mul_add() -> None:
        torch._foreach_mul_(teacher, tau)
        torch._foreach_add_(teacher, online, alpha=1 - tau)

    @torch.no_grad()
    def loop_in_place() -> None:
        for p, t in zip(online, teacher):
            t.mul_(tau).add_(p, alpha=1 - tau)

    @torch.no_grad()
    def loop_allocating() -> None:
        for p, t in zip(online, teacher):
            t.data = tau * t.data + (1 - tau) * p.data

    updates = {"ema_update_ (foreach lerp)": lambda: ema_update_(pairs, tau),
               "foreach mul + add": mul_add,
               "loop, in place": loop_in_place,
               "loop, allocating (solo-learn)": loop_allocating}
    seconds = {name: median_seconds(fn, args.repeats, sync) for name, fn in updates.items()}

    optimizer = torch.optim.SGD(online, lr=0.01, momentum=0.9)
    x1 = torch.randn(args.batch, 3, 32, 32, device=device)
    x2 = torch.randn(args.batch, 3, 32, 32, device=device)

    def step() -> None:
        loss, _ = learner(x1, x2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        learner.update_teacher(tau)

    step_s = median_seconds(step, args.steps, sync)

    ours = seconds["ema_update_ (foreach lerp)"]
    print(f"EMA update, ResNet-18 (CIFAR stem) + BYOL heads: {len(online)} tensors, "
          f"{sum(p.numel() for p in online) / 1e6:.1f} M parameters; {device.type}, "
          f"{torch.get_num_threads()} threads; {machine()}")
    print(f"median of {args.repeats} updates each; a step is the median of {args.steps} "
          f"full-scope BYOL steps at batch {args.batch} x 2 views")
    print_table(["update", "ms", "share of a step", "x ema_update_"],
                [[name, 1e3 * s, 100 * s / step_s, s / ours] for name, s in seconds.items()],
                ["{}", "{:.2f}", "{:.2f}%", "{:.2f}x"])
    print(f"training step: {step_s:.2f} s; goal: ema_update_ < 2% of a step")
    print(f"ratio in-place loop / ema_update_: {seconds['loop, in place'] / ours:.2f}x")


if __name__ == "__main__":
    main()
