"""The portable mode's cost: the training step with every kernel library pinned to AVX2 against
the machine's native kernels.

    python bench/portable.py [--params params.yaml] [--run simclr-none] [--steps 20]

Two processes time the same step (bench/pipeline.py's "model only": forward of both views,
backward, optimiser step and EMA update on batches held in memory; the median after 3 warm-up
steps), at the params' ``compute.threads``: one with the variables of ``compute.portable: true``
set before torch loads (momentum_ssl/compute.py), one without. On a CPU whose widest vectors
are AVX2 both take the same kernels and the ratio is about 1; on AVX-512 it is what portability
costs. The last line is the ratio portable / native.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from common import ROOT, machine, print_table


def measure(params_path: str, run_name: str, steps: int) -> dict:
    import torch

    from pipeline import _setup, model_step

    from momentum_ssl.plumbing.compute import configure
    from momentum_ssl.config import load_params

    params = load_params(params_path)
    _, loader, learner, optimizer = _setup(params_path, run_name)
    configure(params.compute, "cpu")  # after the loader: FFCV sets torch's threads
    seconds, count = model_step(loader, learner, optimizer, steps)
    return {"seconds": seconds, "steps": count, "threads": torch.get_num_threads(),
            "isa": torch.backends.cpu.get_cpu_capability()}


def child(portable: bool, args: argparse.Namespace) -> dict:
    from momentum_ssl.plumbing.compute import PORTABLE_ENV, environment
    from momentum_ssl.config import load_params

    params = load_params(args.params)
    env = {k: v for k, v in os.environ.items() if k not in PORTABLE_ENV}
    env.update(environment({"portable": portable, "threads": params.compute.threads}))
    env["PYTHONPATH"] = str(ROOT / "src")
    command = [sys.executable, __file__, "--params", args.params, "--run", args.run,
               "--steps", str(args.steps), "--child"]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"the {'portable' if portable else 'native'} child failed:\n"
                 f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--run", default="simclr-none")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per mode")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.params, args.run, args.steps)))
        return

    from momentum_ssl.config import load_params
    from momentum_ssl.data.convert import convert
    from momentum_ssl.data.loaders import beton_folder

    params = load_params(args.params)
    if args.run not in {r.name for r in params.grid}:
        sys.exit(f"--run {args.run} is not in the grid of {args.params}")
    if not (beton_folder(params) / "meta.json").is_file():
        convert(params)
    native, portable = child(False, args), child(True, args)
    print(f"training step of {args.run}, native kernels against compute.portable; {machine()}")
    print_table(["kernels", "ISA used", "threads", "steps", "s/step", "x native"],
                [["native", native["isa"], native["threads"], native["steps"],
                  native["seconds"], 1.0],
                 ["portable (AVX2)", portable["isa"], portable["threads"], portable["steps"],
                  portable["seconds"], portable["seconds"] / native["seconds"]]],
                ["{}", "{}", "{}", "{}", "{:.4f}", "{:.2f}"])
    print(f"ratio portable / native: {portable['seconds'] / native['seconds']:.2f}x")


if __name__ == "__main__":
    main()
