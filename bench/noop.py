"""Claim 6, no-op reruns: how long `dvc repro` and `snakemake -n` take when everything is up
to date.

    python bench/noop.py [--dir DIR] [--repeats 3]

``DIR`` (default: here) is a checkout where the DAG has run: after `make run`, a Snakemake run
(whose `onsuccess` records everything with `dvc commit`), or bench/e2e.py's clone. It first
checks that `dvc status dvc.yaml` reports nothing to do (the root pipeline, which `dvc repro`
and the Snakefile run; a study under studies/ is a DAG of its own that `make run` leaves
alone), then times each command ``--repeats`` times and prints the median. Goal: each under
10 s on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import machine, print_table

GOAL_S = 10.0
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return elapsed, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path.cwd())
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    # the checkout's own sources, as bench/e2e.py runs them
    ENV["PYTHONPATH"] = str(args.dir.resolve() / "src")
    _, status = timed([str(BIN / "dvc"), "status", "dvc.yaml"], args.dir)
    if "up to date" not in status:
        sys.exit(f"the DAG in {args.dir} is not up to date (dvc status dvc.yaml lists changes); "
                 "run make run there first:\n" + status)
    commands = {"dvc repro": [str(BIN / "dvc"), "repro"],
                "snakemake -n": [str(BIN / "snakemake"), "-n", "--quiet"]}
    medians = {}
    for name, command in commands.items():
        times = []
        for _ in range(args.repeats):
            elapsed, output = timed(command, args.dir)
            if name == "dvc repro" and "Running stage" in output:
                sys.exit(f"dvc repro ran a stage, so this is not a no-op:\n{output}")
            times.append(elapsed)
        medians[name] = statistics.median(times)
    print(f"no-op reruns, everything up to date in {args.dir}; median of {args.repeats}; "
          f"{machine()}")
    print_table(["command", "seconds", "goal"],
                [[name, seconds, "< 10"] for name, seconds in medians.items()],
                ["{}", "{:.2f}", "{}"])
    print("ratio to the goal: " + ", ".join(f"{name} {seconds / GOAL_S:.2f}x"
                                            for name, seconds in medians.items()))


if __name__ == "__main__":
    main()
