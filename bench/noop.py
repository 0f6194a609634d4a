"""No-op reruns: how long `dvc repro` and `snakemake -n` take when everything is up to date.

    python bench/noop.py [--repeats 3]

Run it from the repository root after the DAG has run (`make run`, or a Snakemake run, whose
`onsuccess` records everything with `dvc commit`). It first checks that `dvc status` reports
nothing to do, then times each command ``--repeats`` times and prints the median. Goal: each
under 10 s on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}


def timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, env=ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return elapsed, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    _, status = timed([str(BIN / "dvc"), "status"])
    if "up to date" not in status:
        sys.exit("the DAG is not up to date (dvc status lists changes); run make run first:\n"
                 + status)
    commands = {"dvc repro": [str(BIN / "dvc"), "repro"],
                "snakemake -n": [str(BIN / "snakemake"), "-n", "--quiet"]}
    print(f"no-op reruns, everything up to date, {os.cpu_count()} CPUs ({platform.machine()}); "
          f"median of {args.repeats}")
    print(f"{'command':<14} {'seconds':>8}  {'goal':>6}")
    for name, command in commands.items():
        times = []
        for _ in range(args.repeats):
            elapsed, output = timed(command)
            if name == "dvc repro" and "Running stage" in output:
                sys.exit(f"dvc repro ran a stage, so this is not a no-op:\n{output}")
            times.append(elapsed)
        print(f"{name:<14} {statistics.median(times):>8.2f}  {'< 10':>6}")


if __name__ == "__main__":
    main()
