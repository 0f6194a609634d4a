"""Goal 3: momentum-ssl against lightly, the tool a user would pick instead: one epoch of the
params' SimCLR run, trained both ways, then the same kNN evaluation of each backbone.

    python bench/peer.py [--params params.yaml] [--run simclr-none] [--seeds 0,1,2]
                         [--per-class K] [--sides momentum-ssl,lightly]

- momentum-ssl: what a user gets, ``momentum_ssl.stages.pretrain.pretrain(params, run, seed=S)`` for one
  epoch with the in-training kNN monitor off (``pretrain.monitor_train`` and ``monitor_test``
  0: work lightly's side does not do); the data converted first if needed (not timed). Wall
  time: from the call to its return; "loop s": ``time/pretrain_s`` of its dvclive summary
  (the epoch loop alone).
- lightly 1.6.0 (``make bench-peer`` installs it; docs/BENCHMARKS.md): the same backbone
  (``build_backbone``, the same ``torch.manual_seed``), lightly's ``SimCLRProjectionHead``
  with the run's resolved sizes and ``NTXentLoss`` with its temperature, lightly's
  ``BYOLView1Transform`` / ``BYOLView2Transform`` with the params' ``augment`` recipe and the
  dataset's mean/std, a ``torch.utils.data.DataLoader`` (same batch, worker count, shuffle,
  drop_last) over the same training images (``load_source`` + ``stratified_subset``), SGD
  with the same lr (linear scaling), momentum, weight decay and per-step warm-up + cosine
  schedule (``train.learning_rate``). Wall time: from building the dataset to the last step;
  "loop s": the epoch loop alone.

Each side runs in its own process (``import ffcv`` sets torch's threads to 1 and FFCV's loader
sets them to ``loader.num_workers``: one side's imports must not reach the other), both with
torch's default thread count (one per core; momentum-ssl's loader keeps it on raw datasets,
which it reads without FFCV), printed per side. The evaluation, in a third process and in
neither wall time, is identical for both: the trained backbone's features of the train and
test images without augmentation (the eval loader), then the weighted kNN at k = 20 with
``probe.temperature``. ``--per-class K`` trains on K images per class instead (converted into
a temporary folder): a quick slice for development. Prints a table (with "cpu s", the CPU
seconds of each side's process and its loader workers, imports included, which other work on a
shared machine stretches less than the wall time; the header gives the 1-minute load average
before and after), then the ceiling of the ratio and, last, the ratio of the wall times
lightly / momentum-ssl and the kNN difference.

The ceiling: after its timed run, momentum-ssl's process times 20 steps of its training step on
batches held in memory (bench/pipeline.py's "model only", the median after 3 warm-up steps;
neither in its wall time nor in its "cpu s"). Lightly's wall time over that step's epochs is
the most the ratio could show if momentum-ssl's side had no set-up and its loader cost nothing.

Both sides train once per seed of ``--seeds`` (default: the params' ``seeds``; ``--seed S``
for one), each seed drawing the same things on both sides (``torch.manual_seed``, the data
order's generator). The wall-time ratio is over the summed wall times of all seeds; the kNN
difference is paired by seed, its mean with a 95% Student-t interval (``stats.paired``), and
judged as the report judges a claim: momentum-ssl's kNN is **better** (the interval lies above
0), **worse** (below 0), or **inconclusive** (it holds 0, or there is one seed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, print_table
from pipeline import WARMUP, model_step, setup

SIDES = ("momentum-ssl", "lightly")
K = 20
MODEL_STEPS = 20  # timed steps of momentum-ssl's model alone (after WARMUP)


def load(params_path: str, run_name: str, per_class: int | None, out_dir: str | None):
    """The params as both sides train with them (one epoch, monitor off) and the run."""
    from momentum_ssl.config import ConfigError, load_params

    params = load_params(params_path)
    runs = {run.name: run for run in params.grid}
    if run_name not in runs:
        raise ConfigError(f"--run {run_name!r} is not in {params_path}'s grid; choose one of "
                          + ", ".join(runs))
    data = params.data
    if per_class is not None:
        data = dataclasses.replace(data, train_per_class=per_class, out_dir=out_dir)
    params = dataclasses.replace(
        params, data=data,
        pretrain=dataclasses.replace(params.pretrain, epochs=1, monitor_train=0,
                                     monitor_test=0))
    return params, runs[run_name]


def train_momentum_ssl(params, run, seed: int, out: Path) -> dict:
    import torch

    from momentum_ssl.stages.pretrain import pretrain

    start = time.perf_counter()
    folder = pretrain(params, run, out=out / f"momentum-ssl-s{seed}", seed=seed)
    wall = time.perf_counter() - start
    summary = json.loads((folder / "dvclive" / "metrics.json").read_text())
    state = torch.load(folder / "model.pt", map_location="cpu", weights_only=False)
    backbone = {k.removeprefix("backbone."): v for k, v in state["learner"].items()
                if k.startswith("backbone.")}
    torch.save(backbone, out / f"momentum-ssl-s{seed}.pt")
    # after the timed run: the same step on batches held in memory (bench/pipeline.py's
    # "model only"), the floor under this side's epoch; its CPU time is not this side's
    cpu_before = time.process_time()
    _, loader, learner, optimizer = setup(params, run, seed)
    steps = min(MODEL_STEPS, len(loader) - WARMUP)
    model_s = model_step(loader, learner, optimizer, steps)[0] if steps > 0 else None
    return {"wall_s": wall, "loop_s": summary["time"]["pretrain_s"],
            "steps": summary["time"]["steps"], "threads": torch.get_num_threads(),
            "model_step_s": model_s, "untimed_cpu_s": time.process_time() - cpu_before}


class _Views:
    """The source images (H, W, 3 uint8) as PIL images through lightly's two-view transform,
    as a lightly user feeds a dataset."""

    def __init__(self, source, indices, transform):
        self.source, self.indices, self.transform = source, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        from PIL import Image

        image, label = self.source[self.indices[i]]
        return self.transform(Image.fromarray(image)), label


def lightly_mismatch(params, run) -> str | None:
    """Why the lightly side cannot train ``run`` as momentum-ssl does, or None."""
    from momentum_ssl.config import resolve

    resolved = resolve(params, run)
    cfg, aug = resolved.pretrain, resolved.augment
    if run.method != "simclr" or cfg.optimizer != "sgd" or cfg.param_groups:
        return (f"the lightly side trains SimCLR with plain SGD; {run.name} is {run.method} "
                f"with {cfg.optimizer}" + (" and parameter groups" if cfg.param_groups else ""))
    if aug.crop_scale[1] != 1.0 or abs(aug.crop_ratio[0] - 3 / 4) > 1e-6 or abs(
            aug.crop_ratio[1] - 4 / 3) > 1e-6:
        return ("lightly's BYOL transforms crop with scale (min, 1.0) and ratio (3/4, 4/3); "
                f"augment asks for scale {list(aug.crop_scale)}, ratio {list(aug.crop_ratio)}")
    return None


def lightly_transform(aug, mean: list[float], std: list[float]):
    """lightly's BYOL views with the params' recipe. lightly fixes the crop's largest scale
    (1.0) and ratio (3/4, 4/3) and the jitter's strength factor (1.0 here)."""
    from lightly.transforms import BYOLView1Transform, BYOLView2Transform
    from lightly.transforms.multi_view_transform import MultiViewTransform

    views = []
    for v, View in enumerate((BYOLView1Transform, BYOLView2Transform)):
        views.append(View(
            input_size=aug.size, cj_prob=aug.jitter_p, cj_strength=1.0,
            cj_bright=aug.brightness, cj_contrast=aug.contrast, cj_sat=aug.saturation,
            cj_hue=aug.hue, min_scale=aug.crop_scale[0], random_gray_scale=aug.grayscale_p,
            gaussian_blur=aug.blur_p[v], solarization_prob=aug.solarize_p[v],
            sigmas=tuple(aug.blur_sigma), hf_prob=aug.flip_p,
            normalize={"mean": list(mean), "std": list(std)}))
    return MultiViewTransform(views)


def train_lightly(params, run, seed: int, out: Path) -> dict:
    import torch
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from torch.utils.data import DataLoader

    from momentum_ssl.config import resolve, with_seed
    from momentum_ssl.data.convert import read_meta, stratified_subset
    from momentum_ssl.data.datasets import load_source
    from momentum_ssl.data.loaders import beton_folder
    from momentum_ssl.core.models.backbones import build_backbone
    from momentum_ssl.core.optim import learning_rate

    data_seed = params.seed  # the .beton's subset; the run's seed draws the rest
    params = resolve(with_seed(params, seed), run)  # as pretrain() trains the run
    cfg, model, simclr = params.pretrain, params.model, params.methods.simclr
    # torch's default threads, as momentum-ssl's side keeps them on a raw dataset (printed)
    start = time.perf_counter()
    meta = read_meta(beton_folder(params))
    source = load_source(params.data, "train")
    indices = stratified_subset(source.labels, len(source.classes),
                                params.data.train_per_class, data_seed)
    dataset = _Views(source, indices, lightly_transform(params.augment, meta["mean"],
                                                        meta["std"]))
    loader = DataLoader(dataset, batch_size=params.loader.batch_size, shuffle=True,
                        num_workers=params.loader.num_workers, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    backbone = build_backbone(model.backbone, model.width, model.cifar_stem,
                              model.zero_init_residual)
    head = SimCLRProjectionHead(input_dim=backbone.dim, hidden_dim=simclr.proj_hidden,
                                output_dim=simclr.proj_out, num_layers=2,
                                batch_norm=simclr.proj_hidden_bn)
    criterion = NTXentLoss(temperature=simclr.temperature)
    net = torch.nn.Sequential(backbone, head).train()
    peak = cfg.lr * params.loader.batch_size / 256
    optimizer = torch.optim.SGD(net.parameters(), lr=peak, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    total = len(loader)
    warmup = round(cfg.warmup_epochs * total)
    loop_start = time.perf_counter()
    step = 0
    for (x1, x2), _ in loader:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, total, warmup, peak)
        loss = criterion(net(x1), net(x2))
        if not torch.isfinite(loss):
            raise SystemExit(f"error: lightly's loss is {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
    end = time.perf_counter()
    torch.save(backbone.state_dict(), out / f"lightly-s{seed}.pt")
    return {"wall_s": end - start, "loop_s": end - loop_start, "steps": step,
            "threads": torch.get_num_threads()}


def split_features(params, backbone, split: str) -> tuple:
    """Pooled features of every image of ``split`` without augmentation, and the labels, as
    the extract stage reads them (``eval_batches``: raw pixels straight from the file when
    stored so, else the eval loader)."""
    import torch

    from momentum_ssl.data.loaders import eval_batches
    from momentum_ssl.core.encoders import SingleEncoder, encode

    columns, labels = encode(SingleEncoder(backbone), eval_batches(params, split),
                             torch.device("cpu"))
    return columns["student"], labels


def evaluate(params, out: Path, sides: list[str], seed: int) -> dict:
    """k20 weighted kNN of each side's backbone trained with ``seed``, on features without
    augmentation."""
    import torch

    from momentum_ssl.core.models.backbones import build_backbone
    from momentum_ssl.analysis.classifiers import knn_probe

    model = params.model
    scores = {}
    for side in sides:
        backbone = build_backbone(model.backbone, model.width, model.cifar_stem,
                                  model.zero_init_residual)
        backbone.load_state_dict(torch.load(out / f"{side}-s{seed}.pt", map_location="cpu"))
        backbone.eval()
        train, train_y = split_features(params, backbone, "train")
        test, test_y = split_features(params, backbone, "test")
        knn = knn_probe(train, train_y, test, test_y, ks=(K,),
                        temperature=params.probe.temperature)
        scores[side] = knn[f"k{K}_weighted"]
    return scores


def child(args, step: str, out: Path, seed: int) -> dict:
    """Run one step (a side's training, or the evaluation) in its own process; its answer."""
    command = [sys.executable, __file__, "--params", args.params, "--run", args.run, "--seed",
               str(seed), "--sides", args.sides, "--only", step, "--out", str(out)]
    if args.per_class is not None:
        command += ["--per-class", str(args.per_class)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        sys.exit(f"{step} failed:\n{tail}")
    # CPU seconds of the process and its loader workers, imports included: on a machine
    # shared with other work, wall time stretches while this stays about the same
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return {**answer, "cpu_s": cpu - answer.pop("untimed_cpu_s", 0.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--run", default="simclr-none")
    parser.add_argument("--seed", type=int, help="one seed (the same as --seeds S)")
    parser.add_argument("--seeds", help="comma-separated seeds; default: params.seeds")
    parser.add_argument("--per-class", type=int,
                        help="train on this many images per class (a quick slice)")
    parser.add_argument("--sides", default=",".join(SIDES),
                        help="which sides to train (comma-separated; default both)")
    parser.add_argument("--only", choices=[*SIDES, "eval"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sides = [s for s in args.sides.split(",") if s]
    if not sides or any(s not in SIDES for s in sides):
        sys.exit(f"error: --sides takes {' and/or '.join(SIDES)}, comma-separated")

    from momentum_ssl.config import ConfigError

    try:
        if args.only:
            params, run = load(args.params, args.run, args.per_class,
                               str(args.out / "beton") if args.per_class else None)
            if args.only == "eval":
                answer = evaluate(params, args.out, sides, args.seed)
            elif args.only == "lightly":
                answer = train_lightly(params, run, args.seed, args.out)
            else:
                answer = train_momentum_ssl(params, run, args.seed, args.out)
            print(json.dumps(answer))
            return
        if "lightly" in sides:
            try:
                import lightly  # noqa: F401
            except ImportError:
                sys.exit("error: lightly is not installed; run `make bench-peer` (it installs "
                         "bench/requirements-peer.txt), or pass --sides momentum-ssl")
        with tempfile.TemporaryDirectory(prefix="momentum-ssl-peer-") as tmp:
            out = Path(tmp)
            params, run = load(args.params, args.run, args.per_class,
                               str(out / "beton") if args.per_class else None)
            seeds = seeds_of(args, params)
            if "lightly" in sides and (why := lightly_mismatch(params, run)):
                sys.exit(f"error: {why}")
            from momentum_ssl.data.convert import convert
            from momentum_ssl.data.loaders import beton_folder

            if not (beton_folder(params) / "meta.json").is_file():
                convert(params)
            load_before = os.getloadavg()[0]
            results = {}  # (side, seed) -> answer
            for seed in seeds:
                for side in sides:
                    results[side, seed] = child(args, side, out, seed)
                scores = child(args, "eval", out, seed)
                for side in sides:
                    results[side, seed]["knn"] = scores[side]
    except ConfigError as err:
        sys.exit(f"error: {err}")

    from momentum_ssl.config import resolve

    params = resolve(params, run)  # the run's recipe, as both sides train it
    batch = params.loader.batch_size
    seed_text = (f"seed {seeds[0]}" if len(seeds) == 1
                 else f"seeds {', '.join(map(str, seeds))}")
    print(f"one epoch of {args.run} ({seed_text}), {params.data.dataset}: "
          f"{params.data.train_per_class or 'all'} training images per class, "
          f"{params.augment.size}px, {params.model.backbone}, batch {batch}, "
          f"{params.loader.num_workers} workers; {machine()}; 1-min load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print_table(["side", "seed", "threads", "steps", "wall s", "loop s", "cpu s", "s/step",
                 "images/s", f"k{K} weighted"],
                [[side, seed, r["threads"], r["steps"], r["wall_s"], r["loop_s"], r["cpu_s"],
                  r["wall_s"] / r["steps"], r["steps"] * batch / r["wall_s"], r["knn"]]
                 for (side, seed), r in results.items()],
                ["{}", "{}", "{}", "{}", "{:.1f}", "{:.1f}", "{:.1f}", "{:.3f}", "{:.0f}",
                 "{:.4f}"])
    if len(sides) < 2:
        print(f"ratio lightly / momentum-ssl: not measured (only {sides[0]} ran)")
        return
    if (line := ceiling(results, seeds)) is not None:
        print(line)
    print(comparison(results, seeds))


def seeds_of(args, params) -> list[int]:
    """--seed S, else --seeds, else the params' seeds."""
    from momentum_ssl.config import ConfigError

    if args.seed is not None:
        return [args.seed]
    if args.seeds is None:
        return list(params.seeds)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds takes comma-separated integers, got {args.seeds!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds needs distinct seeds, got {args.seeds!r}")
    return seeds


def ceiling(results: dict, seeds: list[int]) -> str | None:
    """The most the wall-time ratio could show: lightly's wall time over momentum-ssl's
    epochs of the model step alone (no set-up, no loader), summed over seeds; None when a seed
    had too few batches to time that step."""
    ours = [results["momentum-ssl", seed] for seed in seeds]
    if any(r.get("model_step_s") is None for r in ours):
        return None
    floor = sum(r["steps"] * r["model_step_s"] for r in ours)
    lightly = sum(results["lightly", seed]["wall_s"] for seed in seeds)
    steps = ", ".join(f"{r['model_step_s']:.4f}" for r in ours)
    return (f"momentum-ssl's model step alone (batches in memory): {steps} s, "
            f"{floor:.1f} s for the epochs; lightly's wall time over that: {lightly / floor:.2f}x,"
            f" the most this ratio can reach with no set-up and no loader")


def comparison(results: dict, seeds: list[int]) -> str:
    """The last line: the summed wall times' ratio, and the kNN difference paired by seed."""
    from momentum_ssl.analysis.stats import CONTRADICTED, SUPPORTED, paired, verdict

    wall = {side: sum(results[side, seed]["wall_s"] for seed in seeds)
            for side in ("momentum-ssl", "lightly")}
    effect = paired({seed: 100 * results["momentum-ssl", seed]["knn"] for seed in seeds},
                    {seed: 100 * results["lightly", seed]["knn"] for seed in seeds})
    s = effect.summary
    judged = {SUPPORTED: "better", CONTRADICTED: "worse"}.get(verdict(effect, "greater"),
                                                              "inconclusive")
    interval = ("one seed: no interval" if s.low is None
                else f"mean of {s.n} seeds, 95% CI [{s.low:+.2f}, {s.high:+.2f}]")
    ratio = wall["lightly"] / wall["momentum-ssl"]
    return (f"ratio lightly / momentum-ssl wall time: {ratio:.2f}x; k{K} weighted kNN "
            f"momentum-ssl - lightly: {s.mean:+.2f} points ({interval}): {judged}")


if __name__ == "__main__":
    main()
