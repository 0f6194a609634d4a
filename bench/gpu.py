"""Claim 7, GPU pretraining throughput: images/s of BYOL and MoCo v3 (full-scope EMA), ResNet-18
at 32x32, bf16 autocast and channels_last, one GPU.

    python bench/gpu.py [--methods byol,mocov3] [--batch 512] [--steps 50] [--device cuda]
                        [--compile] [--deterministic]

Each step is the training loop's (pretrain.py): forward of both views under bf16 autocast, the
NaN guard, backward, SGD, the EMA update. The views are random tensors already on the device,
so the figure is the model's side of pretraining (the loader is bench/loader.py); an image is
one pair of views. ``--warmup`` steps are not timed. Without a CUDA device it says so and exits
(``--device cpu`` runs the same code on the CPU, to check it). Goal: >= 10,000 images/s on an
H100, with the device's name printed beside the figure. ``--deterministic`` measures the
same steps under ``compute.deterministic`` (docs/REPRODUCIBILITY.md): its cost is the ratio of
the two runs' figures.
"""

from __future__ import annotations

import argparse
import time

from common import machine, print_table

GOAL = 10_000


def images_per_second(method: str, batch: int, steps: int, warmup: int, device,
                      compile_model: bool = False) -> float:
    import torch

    from momentum_ssl.core.learner import Learner
    from momentum_ssl.core.methods import build_method
    from momentum_ssl.core.models.backbones import build_backbone

    torch.manual_seed(0)
    learner = Learner(build_backbone("resnet18", cifar_stem=True), build_method(method),
                      "full").to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD([p for p in learner.parameters() if p.requires_grad], lr=0.01,
                                momentum=0.9)
    forward = torch.compile(learner) if compile_model else learner
    views = [torch.randn(batch, 3, 32, 32, device=device).contiguous(
        memory_format=torch.channels_last) for _ in range(2)]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            sync()
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss, _ = forward(*views)
        if not torch.isfinite(loss):
            raise RuntimeError(f"{method}: the loss is {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        learner.update_teacher(0.99)
    sync()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="byol,mocov3")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the learner's forward (compile time not counted: "
                             "it happens in the warm-up steps)")
    parser.add_argument("--deterministic", action="store_true",
                        help="compute.deterministic: deterministic algorithms, cuDNN without "
                             "benchmark, cuBLAS' fixed workspace (its cost against a run "
                             "without)")
    args = parser.parse_args()
    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("GPU throughput: no CUDA device here; skipped (claim 7 runs on a GPU machine)")
        return
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"CPU, {torch.get_num_threads()} threads")
    if args.deterministic:
        from momentum_ssl.plumbing.compute import configure
        from momentum_ssl.config import ComputeConfig

        configure(ComputeConfig(deterministic=True), device.type)
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rows = []
    for method in args.methods.split(","):
        rows.append([method, images_per_second(method, args.batch, args.steps, args.warmup,
                                               device, args.compile)])
        # at once: a run stopped by a time limit keeps the methods already measured
        print(f"{method}: {rows[-1][1]:.0f} images/s on {name}", flush=True)
    print(f"pretraining throughput on {name}: ResNet-18 (CIFAR stem) at 32x32, full-scope EMA, "
          f"batch {args.batch} x 2 views, bf16 autocast, channels_last"
          f"{', torch.compile' if args.compile else ''}"
          f"{', deterministic' if args.deterministic else ''}, {args.steps} steps after "
          f"{args.warmup}; {machine()}")
    print_table(["method", "images/s"], rows, ["{}", "{:.0f}"])
    print("ratio to the goal (10,000 images/s on an H100): " +
          ", ".join(f"{method} {value / GOAL:.2f}x" for method, value in rows))


if __name__ == "__main__":
    main()
