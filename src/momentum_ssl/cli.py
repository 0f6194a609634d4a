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


def _params(args: argparse.Namespace) -> None:
    import yaml

    print(yaml.safe_dump(to_dict(load_params(args.params)), sort_keys=False), end="")


STAGES = {
    "convert": (_convert, "convert params.data.dataset to data/beton/<dataset>/*.beton"),
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .data.datasets import DataError, DatasetNotFound

    try:
        STAGES[args.stage][0](args)
    except (ConfigError, DataError, DatasetNotFound) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
