"""The arithmetic under claims 5b and 8: the floating-point work of the params' pretraining and
evaluation, and the rates this machine runs it at.

    python bench/flops.py [--params params.yaml]

Counted with torch's ``FlopCounterMode`` (convolutions and matrix products, two FLOPs a
multiply-add; element-wise work, normalisation and the optimiser are not counted), on one
batch of the shapes the stages see:

- pretraining, per grid run and seed: one training step (the learner's forward on both views
  at the global batch, and its backward) x steps per epoch x epochs;
- evaluation, a lower bound: per grid run and seed, and per baseline (raw pixels once, the
  random-init backbone per seed), each encoder's forward over the train and test images
  (student, and teacher when it owns backbone blocks) and the kNN search's products,
  2 x train x test x feature size per encoder. Left out: the logistic fits, the transfer
  targets, the kNN's top-k selection and writing the files.

``evaluation / pretraining`` is the lowest value claim 5b's time ratio can take while both run
at the same FLOP rate, before any stage's start-up. The rates: the median of a few training
steps of the first grid run, and of a few encoder passes of its student at the same batch, on
random inputs, with torch's default threads. Prints a table per cell and that ratio last.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

from common import machine, print_table


@dataclass
class Work:
    """FLOPs of one cell: pretraining (0 for a baseline) and the evaluation's lower bound."""

    name: str
    encoders: int
    pretrain: float
    evaluate: float


def count(fn) -> float:
    """FLOPs of ``fn()`` by torch's counter."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def splits(params):
    """(train images, test images, a batch of the evaluation images) of the converted data.
    Random inputs are drawn like that batch (``randn_like``): its shape, and its memory
    layout, which the convolutions keep (channels-last batches train faster here)."""
    from momentum_ssl.data.convert import read_meta
    from momentum_ssl.data.loaders import beton_folder, eval_batches

    meta = read_meta(beton_folder(params))
    x, _ = next(iter(eval_batches(params, "test")))
    return meta["splits"]["train"]["num_samples"], meta["splits"]["test"]["num_samples"], x


def raw_size(batch) -> int:
    """The raw baseline's feature size for a ``batch`` of evaluation images: the pixels extract
    keeps (one channel of gray ones)."""
    from momentum_ssl.core.encoders import single_channel

    return single_channel(batch.flatten(1).numpy()).shape[1]


def forward_backward(learner, x1, x2) -> None:
    """What a training step computes besides the optimiser: the loss of both views and its
    backward."""
    loss, _ = learner(x1, x2)
    loss.backward()


def evaluation_flops(encoder, like, n_train: int, n_test: int) -> tuple[float, int]:
    """(FLOPs of encoding both splits and the kNN products, number of encoders); ``like``: a
    batch of evaluation images."""
    import torch

    x = torch.randn_like(like)
    per_image = count(lambda: encoder(x)) / len(x)
    features = encoder(x[:2])
    knn = sum(2.0 * n_train * n_test * f.shape[1] for f in features.values())
    return per_image * (n_train + n_test) + knn, len(features)


def work(params) -> list[Work]:
    """Every cell of the params' DAG: the grid runs per seed, then the baselines."""
    import torch

    from momentum_ssl.config import resolve, with_seed
    from momentum_ssl.core.encoders import Encoders, PixelEncoder, SingleEncoder, random_backbone
    from momentum_ssl.core.learner import build_learner

    n_train, n_test, like = splits(params)
    batch = params.loader.batch_size
    steps = n_train // batch * params.pretrain.epochs  # the loader drops the last batch
    cells = []
    for run in params.grid:
        for seed in params.seeds:
            resolved = resolve(with_seed(params, seed), run)
            torch.manual_seed(seed)
            learner = build_learner(resolved, run).train()
            x1, x2 = torch.randn_like(like), torch.randn_like(like)
            train = count(lambda: forward_backward(learner, x1, x2)) * steps
            learner.eval()
            with torch.no_grad():
                evaluate, encoders = evaluation_flops(Encoders(learner), like, n_train,
                                                      n_test)
            cells.append(Work(f"{run.name}/s{seed}", encoders, train, evaluate))
    knn_raw = 2.0 * n_train * n_test * raw_size(like)
    cells.append(Work("raw", len(PixelEncoder.names), 0.0, knn_raw))
    for seed in params.seeds:
        with torch.no_grad():
            evaluate, encoders = evaluation_flops(
                SingleEncoder(random_backbone(with_seed(params, seed))), like, n_train,
                n_test)
        cells.append(Work(f"random/s{seed}", encoders, 0.0, evaluate))
    return cells


def totals(cells: list[Work]) -> tuple[float, float]:
    """(all pretraining's FLOPs, all evaluation's)."""
    return sum(c.pretrain for c in cells), sum(c.evaluate for c in cells)


def ratio(cells: list[Work]) -> float:
    """All evaluation's FLOPs over all pretraining's."""
    pretrain, evaluate = totals(cells)
    return evaluate / pretrain


def seconds_at(cells: list[Work], speed: dict[str, float]) -> tuple[float, float]:
    """(pretraining's, evaluation's) FLOPs in seconds at the measured rates: training steps
    for the one, encoding for the other."""
    pretrain, evaluate = totals(cells)
    return pretrain / speed["train"], evaluate / speed["encode"]


def rates(params, repeats: int = 10, warmup: int = 3) -> dict[str, float]:
    """FLOP/s of the first grid run's training step and of its student's forward pass at the
    global batch (the median of ``repeats`` after ``warmup``), on random inputs."""
    import torch

    from momentum_ssl.config import resolve, with_seed
    from momentum_ssl.core.encoders import SingleEncoder
    from momentum_ssl.core.learner import build_learner
    from momentum_ssl.core.optim import build_optimizer
    from pipeline import train_step

    _, _, like = splits(params)
    run = params.grid[0]
    resolved = resolve(with_seed(params, params.seeds[0]), run)
    learner = build_learner(resolved, run).train()
    optimizer = build_optimizer(learner, resolved.pretrain, 0.01)
    x1, x2 = torch.randn_like(like), torch.randn_like(like)

    def timed(fn) -> float:
        times = []
        for _ in range(warmup + repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times[warmup:])

    step_flops = count(lambda: forward_backward(learner, x1, x2))
    step_s = timed(lambda: train_step(learner, optimizer, x1, x2))
    encoder = SingleEncoder(learner.backbone).eval()
    encode_flops = count(lambda: encoder(x1))
    encode_s = timed(lambda: encoder(x1))
    return {"train": step_flops / step_s, "encode": encode_flops / encode_s,
            "step_s": step_s, "threads": torch.get_num_threads()}


def arithmetic_line(cells: list[Work], speed: dict[str, float], evaluate_s: float,
                    pretrain_s: float) -> str:
    """bench/e2e.py's account of its stages' seconds: how many of them the arithmetic takes
    at the rates measured here."""
    pretrain, evaluate = totals(cells)
    pretrain_floor, evaluate_floor = seconds_at(cells, speed)
    return (f"arithmetic (bench/flops.py): evaluation {evaluate / 1e9:.0f} GFLOP at least, "
            f"pretraining {pretrain / 1e9:.0f} GFLOP: {evaluate / pretrain:.2f}x; at the rates "
            f"measured here (encoding {speed['encode'] / 1e9:.0f}, training step "
            f"{speed['train'] / 1e9:.0f} GFLOP/s) {evaluate_floor:.0f} s of the evaluate "
            f"stages' {evaluate_s:.0f} s and {pretrain_floor:.0f} s of the pretrain stages' "
            f"{pretrain_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    from momentum_ssl.config import load_params
    from momentum_ssl.data.convert import convert
    from momentum_ssl.data.loaders import beton_folder

    params = load_params(args.params)
    if not (beton_folder(params) / "meta.json").is_file():
        convert(params)
    cells = work(params)
    speed = rates(params)
    print(f"floating-point work of {args.params}: {len(params.grid)} runs x "
          f"{len(params.seeds)} seeds and the baselines, torch's FLOP counter; {machine()}")
    pretrain, evaluate = totals(cells)
    print_table(["cell", "encoders", "pretrain GFLOP", "evaluate GFLOP", "evaluate / pretrain"],
                [[c.name, c.encoders, c.pretrain / 1e9, c.evaluate / 1e9,
                  c.evaluate / c.pretrain if c.pretrain else ""] for c in cells]
                + [["total", "", pretrain / 1e9, evaluate / 1e9, ""]],
                ["{}", "{}", "{:.1f}", "{:.1f}", "{:.2f}"])
    pretrain_floor, evaluate_floor = seconds_at(cells, speed)
    print(f"rates, {speed['threads']} threads: training step {speed['train'] / 1e9:.0f} GFLOP/s "
          f"({speed['step_s']:.4f} s a step of {params.grid[0].name}), encoding "
          f"{speed['encode'] / 1e9:.0f} GFLOP/s; at these rates pretraining takes at least "
          f"{pretrain_floor:.0f} s and evaluation at least {evaluate_floor:.0f} s "
          f"({evaluate_floor / pretrain_floor:.2f}x)")
    print(f"ratio evaluation / pretraining FLOPs: {ratio(cells):.2f}x (claim 5b's goal: "
          f"<= 0.5x of the time)")


if __name__ == "__main__":
    main()
