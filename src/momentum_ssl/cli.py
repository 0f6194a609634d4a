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


def _pretrain(args: argparse.Namespace) -> None:
    from .train import pretrain

    params = load_params(args.params)
    runs = {run.name: run for run in params.grid}
    if args.run not in runs:
        raise ConfigError(f"--run {args.run!r} is not in the grid of {args.params}; its runs: "
                          + ", ".join(runs))
    print(f"wrote {pretrain(params, runs[args.run])}")


def _params(args: argparse.Namespace) -> None:
    import yaml

    print(yaml.safe_dump(to_dict(load_params(args.params)), sort_keys=False), end="")


STAGES = {
    "convert": (_convert, "convert params.data.dataset to data/beton/<dataset>/*.beton"),
    "pretrain": (_pretrain, "pretrain one grid run (--run NAME), resuming if it was stopped"),
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
        if name == "pretrain":
            stage.add_argument("--run", required=True, help="grid run name, e.g. byol-full")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .data.datasets import DataError, DatasetNotFound
    from .train import TrainingDiverged

    try:
        STAGES[args.stage][0](args)
    except (ConfigError, DataError, DatasetNotFound, TrainingDiverged) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
