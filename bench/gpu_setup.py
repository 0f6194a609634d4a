"""The GPU check's packages on a machine that received the working tree without .venv (git
ignores it): what the check's steps import, checked in the Python that runs this, and the
missing ones installed into a virtual environment of its own.

    python3 bench/gpu_setup.py [--venv .gpu-venv] [--dry-run]

The packages are pyproject.toml's dependencies and its ``test`` extra, at constraints.txt's
versions, except torch and torchvision: the machine's own builds, made for its CUDA driver,
are kept (the CUDA of a wheel installed here might not match the driver). When every package is
there, nothing is done. Otherwise ``--venv`` is made with ``--system-site-packages`` (so the
machine's torch stays visible) and pip installs the missing ones into it; bench/gpu_check.sh then
runs its later steps with that environment's Python. pip reads its usual settings from the
environment: on a machine without a network, point it at a folder of wheels with
``PIP_NO_INDEX=1 PIP_FIND_LINKS=/path/to/wheels``. ffcv is built from source and needs
pkg-config, libopencv-dev and libturbojpeg0-dev. ``--dry-run`` lists what is missing and stops.
Exits 1 when torch is missing (no CUDA build to keep) or pip fails.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEPT = ("torch", "torchvision")  # the machine's CUDA builds


def requirements(pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """pyproject.toml's dependencies and test extra (``name==version``), torch and torchvision
    left out. Read with a pattern, not tomllib: the machine's Python may be older than 3.11."""
    text = pyproject.read_text()
    found = []
    for block in re.findall(r"^(?:dependencies|test)\s*=\s*\[(.*?)\]", text, re.M | re.S):
        found += re.findall(r'"([A-Za-z0-9_.\-]+(?:\[[^\]]*\])?==[^"]+)"', block)
    return [r for r in found if name_of(r) not in KEPT]


def name_of(requirement: str) -> str:
    return re.split(r"[\[=<>]", requirement, maxsplit=1)[0].strip().lower()


def missing(wanted: list[str]) -> list[str]:
    """The requirements this Python has no distribution of (any version)."""
    out = []
    for requirement in wanted:
        try:
            importlib.metadata.distribution(name_of(requirement))
        except importlib.metadata.PackageNotFoundError:
            out.append(requirement)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--venv", default=".gpu-venv",
                        help="the environment to make when packages are missing")
    parser.add_argument("--dry-run", action="store_true", help="list what is missing; install "
                                                               "nothing")
    args = parser.parse_args(argv)
    wanted = requirements()
    try:
        import torch
    except ImportError:
        print(f"{sys.executable} has no torch: the GPU machine's Python must bring a CUDA build "
              "of torch and torchvision (or set PYTHON to one that has them)")
        return 1
    print(f"python {sys.executable} {sys.version.split()[0]}, torch {torch.__version__} "
          f"(CUDA {torch.version.cuda}), kept; {len(wanted)} other packages wanted")
    absent = missing(wanted)
    if not absent:
        print("packages: every one present, nothing to install")
        return 0
    print(f"packages missing ({len(absent)}): {' '.join(absent)}", flush=True)
    if args.dry_run:
        return 0
    venv = Path(args.venv)
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                       check=True)
    # constraints.txt without torch and torchvision, so that pip never replaces the machine's
    constraints = [line for line in (REPO / "constraints.txt").read_text().splitlines()
                   if name_of(line) not in KEPT]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(constraints) + "\n")
    done = subprocess.run([str(python), "-m", "pip", "install", "-q",
                           "--disable-pip-version-check", "-c", f.name, *absent])
    Path(f.name).unlink()
    if done.returncode:
        print(f"pip failed ({done.returncode}): the steps that need {' '.join(absent)} will "
              "fail; see the module docstring for a machine without a network")
        return 1
    print(f"packages: installed into {venv}; the later steps run {python}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
