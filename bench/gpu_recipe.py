"""One epoch of a paper-scale recipe on one GPU: a method's published recipe from a profile
(params/cifar10.yaml by default), synthetic images in CIFAR's format, ``pretrain.precision``'s
autocast (bf16 by default) and channels_last, a step built from the training loop's parts.

    python bench/gpu_recipe.py [--params params/cifar10.yaml] [--methods byol,simclr | all]
                               [--images 20480] [--warmup 5] [--batch N] [--device cuda]
                               [--precision auto|bf16|fp16|fp32]

The images (N x 32 x 32 x 3 uint8, 10 classes, seeded noise) sit on the device once; each batch's
two views come from the recipe's seeded ViewAugment on the device, as they do after FFCV's
decoding in the training loader (FFCV itself is not needed, so the check runs on a GPU machine
that lacks it). The step is written here from the parts that stages/pretrain.py's train_one_epoch
uses, without its loader, logging and checkpoints: the recipe's lr schedule and parameter
groups (core/optim.py: build_optimizer, set_learning_rates), its tau schedule, the precision
(plumbing/precision.py: fp16 with its gradient scaler), the NaN guard, the EMA. Prints, per method: images/s (an image
is one pair of views) over the epoch after ``--warmup`` steps, peak GPU memory, and the loss at
the first and last step. ``--device cpu`` runs the same code (a test does, with a small
backbone).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from common import machine, print_table


def one_epoch(params, method: str, images, device, warmup: int, backbone: str | None = None,
              batch: int | None = None, precision: str = "auto") -> dict:
    import torch

    from momentum_ssl.config import resolve
    from momentum_ssl.data.augment import ViewAugment
    from momentum_ssl.core.learner import build_learner
    from momentum_ssl.core.momentum import cosine_tau
    from momentum_ssl.core.optim import build_optimizer, learning_rate, set_learning_rates
    from momentum_ssl.plumbing.precision import Precision

    runs = [r for r in params.grid if r.method == method]
    run = next((r for r in runs if r.scope == "full" and not r.residual), runs[0])
    if backbone is not None:  # the CPU test's small stand-ins
        params = dataclasses.replace(params, model=dataclasses.replace(
            params.model, backbone=backbone, width=8))
    if batch is not None:
        params = dataclasses.replace(params, loader=dataclasses.replace(params.loader,
                                                                        batch_size=batch))
    recipe = resolve(params, run)
    cfg, batch = recipe.pretrain, recipe.loader.batch_size
    steps = len(images) // batch
    if steps <= warmup:
        raise SystemExit(f"--images {len(images)} gives {steps} steps of {batch}: need more than "
                         f"--warmup {warmup}")
    total, warm = cfg.epochs * steps, round(cfg.warmup_epochs * steps)
    peak = cfg.lr * batch / 256
    x = images.to(device).permute(0, 3, 1, 2).contiguous()  # uint8, N x 3 x 32 x 32
    mean = (x.float().mean((0, 2, 3)) / 255).tolist()
    std = (x.float().std((0, 2, 3)) / 255).tolist()
    views = [ViewAugment(recipe.augment, v, mean, std).to(device) for v in (0, 1)]
    for view in views:
        view.reseed(params.seed, 0)
    torch.manual_seed(params.seed)
    learner = build_learner(params, run).to(device)
    if device.type == "cuda":
        learner = learner.to(memory_format=torch.channels_last)
        torch.cuda.reset_peak_memory_stats(device)
    optimizer = build_optimizer(learner, cfg, peak)
    amp = Precision.for_device(precision, device)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(params.seed))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    losses, start = [], 0.0
    for step in range(steps):
        if step == warmup:
            sync()
            start = time.perf_counter()
        chosen = order[step * batch:(step + 1) * batch].to(device)
        x1, x2 = views[0](x[chosen]), views[1](x[chosen])
        set_learning_rates(optimizer, learning_rate(step, total, warm, peak), peak)
        tau = cosine_tau(step, total, recipe.momentum.tau, recipe.momentum.final_tau)
        with amp.autocast():
            loss, _ = learner(x1, x2)
        if not torch.isfinite(loss):
            raise RuntimeError(f"{run.name}: the loss is {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        amp.backward(loss, optimizer)
        amp.step(optimizer)
        learner.update_teacher(tau)
        if step in (0, steps - 1):
            losses.append(float(loss.detach()))
    sync()
    elapsed = time.perf_counter() - start
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return {"run": run.name, "precision": amp.name, "optimizer": cfg.optimizer, "lr": cfg.lr,
            "batch": batch,
            "steps": steps, "images_s": batch * (steps - warmup) / elapsed, "memory_gib": memory,
            "loss_first": losses[0], "loss_last": losses[-1]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params/cifar10.yaml")
    parser.add_argument("--methods", default="byol,simclr",
                        help="comma-separated, or all: every method of the profile's grid")
    parser.add_argument("--images", type=int, default=20480)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=None,
                        help="global batch (default: the profile's loader.batch_size)")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                        help="pretrain.precision (auto: bf16 where the GPU has it, else fp16)")
    parser.add_argument("--backbone", default=None, help=argparse.SUPPRESS)  # CPU test only
    args = parser.parse_args(argv)
    import torch

    from momentum_ssl.config import load_params

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("recipe epoch: no CUDA device here; skipped (it runs on a GPU machine)")
        return
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    params = load_params(args.params)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 32, 32, 3), dtype=torch.uint8, generator=gen)
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"CPU, {torch.get_num_threads()} threads")
    rows = []
    methods = (list(dict.fromkeys(r.method for r in params.grid)) if args.methods == "all"
               else args.methods.split(","))
    for method in methods:
        rows.append(one_epoch(params, method, images, device, args.warmup, args.backbone,
                              args.batch, args.precision))
        # at once: a run stopped by a time limit keeps the methods already measured
        print(f"{rows[-1]['run']}: {rows[-1]['images_s']:.0f} images/s, "
              f"{rows[-1]['memory_gib']:.2f} GiB peak on {name}, {rows[-1]['precision']}",
              flush=True)
    print(f"one epoch of {args.params}'s recipes on {name}: {args.images} synthetic CIFAR-format "
          f"images, channels_last on CUDA; {machine()}")
    print_table(["run", "precision", "optimizer", "lr", "batch", "steps", "images/s", "peak GiB",
                 "loss first", "loss last"],
                [[r["run"], r["precision"], r["optimizer"], r["lr"], r["batch"], r["steps"],
                  r["images_s"], r["memory_gib"], r["loss_first"], r["loss_last"]] for r in rows],
                ["{}", "{}", "{}", "{}", "{}", "{}", "{:.0f}", "{:.2f}", "{:.4f}", "{:.4f}"])


if __name__ == "__main__":
    main()
