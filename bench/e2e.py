"""Claim 5, end to end: the embedded default from set-up done to the report, wall time and peak
memory, stage by stage.

    python bench/e2e.py [--dir DIR]

Clones the repository's committed HEAD into ``DIR`` (a new temporary folder by default; it
must not exist), so no earlier result, DVC cache or run-cache entry is reused, and runs
``dvc repro`` there with this checkout's virtual environment: what ``make run`` does once
set-up is done. The clone's own sources are imported (PYTHONPATH), not this checkout's. Each
stage's seconds run from its "Running stage" line to the next one; peak memory is the RSS of
the whole process tree (DVC and the stage it runs), sampled every 0.2 s. Goal: at most 20
minutes and 4 GB on 2 cores. After the run, the floating-point work of the DAG's pretraining and
evaluation (bench/flops.py) and the rates this machine runs it at: how many of the stages'
seconds are arithmetic. ``DIR`` is kept, up to date, for bench/noop.py.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import flops
from common import ROOT, machine, measured, print_table

GOAL_S, GOAL_BYTES = 20 * 60, 4e9
STAGE = re.compile(r"^Running stage '([^']+)'")


def clone(dest: Path) -> str:
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout
    if dirty:
        print("note: uncommitted changes are not benchmarked, only the committed HEAD")
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(dest)],
                   check=True)
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=dest,
                          capture_output=True, text=True, check=True).stdout.strip()


def stage_seconds(lines: list[tuple[float, str]], total: float) -> dict[str, float]:
    """Seconds per stage, from the arrival times of DVC's "Running stage" lines."""
    starts = [(t, m.group(1)) for t, line in lines if (m := STAGE.match(line))]
    ends = [t for t, _ in starts[1:]] + [total]
    return {name: end - start for (start, name), end in zip(starts, ends)}


def kind(stage: str) -> str:
    """plan@byol-full-0 -> plan; evaluate-raw, evaluate-random@1 -> evaluate (baselines)."""
    base = stage.split("@")[0]
    if "-" in base:
        return base.split("-")[0] + " (baselines)"
    return base


# of the runs and of the baselines: one evaluate stage each (extract, probe and transfer
# were three stages each before 2026-11-26; they still count when an older commit is timed)
EVALUATION = ("evaluate", "extract", "probe", "transfer")


def evaluation_seconds(by_kind: dict[str, list[float]]) -> float:
    """All evaluation: the evaluate stages (extract, probe and transfer) of the runs and the
    baselines."""
    return sum(sum(t) for kind, t in by_kind.items() if kind.split()[0] in EVALUATION)


def evaluation_ratio(by_kind: dict[str, list[float]]) -> float:
    """All evaluation over all pretraining, in seconds: issue 15's goal 2 (at most 0.5x)."""
    return evaluation_seconds(by_kind) / sum(by_kind["pretrain"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path,
                        help="where to clone and run (must not exist); default: a new "
                             "temporary folder")
    args = parser.parse_args()
    dest = args.dir or Path(tempfile.mkdtemp(prefix="momentum-ssl-e2e-")) / "repo"
    if dest.exists():
        sys.exit(f"{dest} exists; give a new folder with --dir")
    venv_bin = Path(sys.executable).parent
    commit = clone(dest)
    env = {**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}",
           "PYTHONPATH": str(dest / "src")}
    done = measured([str(venv_bin / "dvc"), "repro"], cwd=dest, env=env)
    if done.returncode:
        sys.exit("dvc repro failed:\n" + "\n".join(line for _, line in done.lines[-40:]))
    by_kind: dict[str, list[float]] = defaultdict(list)
    for stage, seconds in stage_seconds(done.lines, done.seconds).items():
        by_kind[kind(stage)].append(seconds)

    print(f"end to end: the embedded default, dvc repro in a fresh clone of {commit} "
          f"({dest}); {machine()}")
    print_table(["stages", "count", "seconds", "per stage"],
                [[name, len(t), sum(t), sum(t) / len(t)] for name, t in by_kind.items()]
                + [["total", sum(map(len, by_kind.values())), done.seconds, ""]],
                ["{}", "{}", "{:.0f}", "{:.1f}"])
    best = [line for line in (dest / "results" / "report.md").read_text().splitlines()
            if line.startswith("Best run")]
    print(f"report: {dest / 'results' / 'report.md'}; {best[0] if best else 'no best run'}")
    print(f"peak memory: {done.peak_tree_bytes / 1e9:.2f} GB (process tree), largest process "
          f"{done.peak_process_bytes / 1e9:.2f} GB; goal <= 20 min and <= 4 GB")
    # after the timed run: the floating-point work of its stages, and this machine's rates
    from momentum_ssl.config import load_params

    os.chdir(dest)
    params = load_params("params.yaml")
    print(flops.arithmetic_line(flops.work(params), flops.rates(params),
                                evaluation_seconds(by_kind), sum(by_kind["pretrain"])))
    print(f"evaluation (evaluate: extract, probe, transfer of the runs and baselines) / "
          f"pretraining: {evaluation_ratio(by_kind):.2f}x (goal <= 0.5x)")
    print(f"ratio to the goal: time {done.seconds / GOAL_S:.2f}x, memory "
          f"{done.peak_tree_bytes / GOAL_BYTES:.2f}x")


if __name__ == "__main__":
    main()
