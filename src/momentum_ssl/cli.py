"""``python -m momentum_ssl <stage>``: thin wrappers that load params and call one function.

Expected failures (bad params, a missing or corrupt dataset) print one ``error:`` line naming the
problem and the fix, and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from .config import ConfigError, load_params, to_dict


def _convert(args: argparse.Namespace) -> None:
    from .data.convert import convert
    from .data.datasets import SPLITS

    out = convert(load_params(args.params))
    meta = json.loads((out / "meta.json").read_text())
    counts = ", ".join(f"{split} {meta['splits'][split]['num_samples']}" for split in SPLITS)
    print(f"wrote {out}/{{train,test}}.beton ({counts} images)")


def _grid_run(params, args: argparse.Namespace, baselines: bool = False):
    from .paths import BASELINES

    runs = {run.name: run for run in params.grid}
    if args.run in runs or (baselines and args.run in BASELINES):
        return runs.get(args.run)
    choices = [*runs, *(BASELINES if baselines else ())]
    raise ConfigError(f"--run {args.run!r} is not in the grid of {args.params}; choose one of: "
                      + ", ".join(choices))


def _plan(args: argparse.Namespace) -> None:
    import yaml

    from .artifacts import atomic_write_text
    from .config import run_params
    from .paths import plan_file

    params = load_params(args.params)
    run = _grid_run(params, args)
    path = plan_file(run.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(run_params(params, run), sort_keys=False))
    print(f"wrote {path}")


def _check_plan(params, run, params_path: str) -> None:
    """DVC and Snakemake decide whether a run is up to date from results/plan/<run>.yaml; a
    plan that no longer matches the params would record a run under the wrong params."""
    import yaml

    from .config import run_params
    from .paths import plan_file

    path = plan_file(run.name)
    if not path.is_file():
        return
    expected = yaml.safe_load(yaml.safe_dump(run_params(params, run), sort_keys=False))
    if yaml.safe_load(path.read_text()) != expected:
        raise ConfigError(f"{path} was written for other params than {params_path} gives "
                          f"{run.name}; rerun python -m momentum_ssl plan --run {run.name} "
                          "first (dvc repro and snakemake do)")


def _claim_gpus(params, count: int = 1) -> list[str] | None:
    """Claim free GPUs before CUDA starts (gpus.py); None on a machine without one."""
    if params.pretrain.device == "cpu":
        return None
    import os

    from .gpus import claim

    preset = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = claim(count)
    if gpus is not None:  # which devices, and whether SLURM (or a user) chose them
        how = "kept CUDA_VISIBLE_DEVICES" if preset is not None else "claimed"
        print(f"GPUs {','.join(gpus)} ({how})", flush=True)
    return gpus


def _pretrain(args: argparse.Namespace) -> None:
    import os
    import subprocess

    from .train import pretrain

    params = load_params(args.params)
    run = _grid_run(params, args)
    _check_plan(params, run, args.params)
    gpus = _claim_gpus(params, run.gpus if "WORLD_SIZE" not in os.environ else 1)
    if run.gpus > 1 and "WORLD_SIZE" not in os.environ:
        if gpus is None:
            print(f"{run.name} asks for {run.gpus} GPUs and this machine has none: training "
                  "in one process on the CPU")
        else:  # one process per claimed GPU; this process holds the claim until they end
            torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                        f"--nproc-per-node={len(gpus)}", "-m", "momentum_ssl", "--",
                        "pretrain", "--run", run.name, "--params", args.params]
            print(" ".join(torchrun[2:]), flush=True)
            done = subprocess.run(torchrun)
            if done.returncode:
                raise SystemExit(done.returncode)
            return
    print(f"wrote {pretrain(params, run)}")


def _extract(args: argparse.Namespace) -> None:
    from .features import extract, needs_accelerator

    params = load_params(args.params)
    _grid_run(params, args, baselines=True)
    if needs_accelerator(args.run):
        _claim_gpus(params)
    print(f"wrote {extract(params, args.run)}/{{train,test}}.parquet")


def _probe(args: argparse.Namespace) -> None:
    from .probes import probe

    params = load_params(args.params)
    _grid_run(params, args, baselines=True)
    out = probe(params, args.run)
    metrics = json.loads(out.read_text())
    key = metrics["knn_headline"]
    scores = ", ".join(f"{enc} kNN {metrics[enc]['knn'][key]:.4f} logistic "
                       f"{metrics[enc]['logistic']['top1']:.4f}"
                       for enc in ("student", "teacher", "raw") if enc in metrics)
    print(f"wrote {out}: {scores}")


def _transfer(args: argparse.Namespace) -> None:
    from .features import needs_accelerator
    from .transfer import transfer, transfer_summary

    params = load_params(args.params)
    _grid_run(params, args, baselines=True)
    if needs_accelerator(args.run):
        _claim_gpus(params)
    out = transfer(params, args.run)
    scores = ", ".join(f"{t} kNN {v:.4f}" for t, v in transfer_summary(out).items())
    print(f"wrote {out}: {scores}")


def _report(args: argparse.Namespace) -> None:
    from .report import report

    print(f"wrote {report(load_params(args.params))}")


def _params(args: argparse.Namespace) -> None:
    import yaml

    print(yaml.safe_dump(to_dict(load_params(args.params)), sort_keys=False), end="")


STAGES = {
    "convert": (_convert, "convert params.data.dataset to data/beton/<dataset>/*.beton"),
    "plan": (_plan, "write the params one grid run depends on to results/plan/<run>.yaml"),
    "pretrain": (_pretrain, "pretrain one grid run (--run NAME), resuming if it was stopped"),
    "extract": (_extract, "features of a grid run or baseline (raw, random) to Parquet"),
    "probe": (_probe, "kNN and logistic probes of a grid run's or baseline's features"),
    "transfer": (_transfer, "probe a grid run's frozen student (or a baseline) on the "
                            "transfer targets"),
    "report": (_report, "results/report.md and results/plots/*.png from every probe"),
    "params": (_params, "validate a params file and print it with every default filled in"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m momentum_ssl", description=__doc__.split(
        "\n")[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, (_, help_text) in STAGES.items():
        stage = sub.add_parser(name, help=help_text, description=help_text)
        stage.add_argument("--params", default="params.yaml",
                           help="params file (default: params.yaml; profiles live in params/)")
        if name in ("plan", "pretrain"):
            stage.add_argument("--run", required=True, help="grid run name, e.g. byol-full")
        elif name in ("extract", "probe", "transfer"):
            stage.add_argument("--run", required=True,
                               help="grid run name (e.g. byol-full) or baseline (raw, random)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .artifacts import CorruptArtifact, MissingArtifact
    from .data.datasets import DataError, DatasetNotFound

    expected: tuple = (ConfigError, DataError, DatasetNotFound, MissingArtifact, CorruptArtifact)
    if args.stage == "pretrain":  # only this stage pays for importing the training loop
        from .train import TrainingDiverged

        expected += (TrainingDiverged,)
    try:
        STAGES[args.stage][0](args)
    except expected as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
