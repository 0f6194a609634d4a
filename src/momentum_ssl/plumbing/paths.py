"""Where every stage reads and writes, relative to the repository root (dvc.yaml and the
Snakefile name the same paths)."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path("results")
BASELINES = ("raw", "random")  # raw pixels and a random-init backbone, probed like the runs
SEEDLESS = ("raw",)  # baselines without randomness: one of each, whatever the seeds


def cell(name: str, seed: int | None = None) -> str:
    """Where grid run (or baseline) ``name`` trained with ``seed`` lives under each stage's
    folder: ``<name>/s<seed>``; the raw-pixel baseline (no seed) is ``raw``."""
    return name if seed is None else f"{name}/s{seed}"


def seed_flag(seed: int | None) -> str:
    """The CLI flag that names ``seed`` in a message's command (empty for None)."""
    return "" if seed is None else f" --seed {seed}"


def plan_file(run: str, root: Path = RESULTS) -> Path:
    return root / "plan" / f"{run}.yaml"


def run_dir(run: str, root: Path = RESULTS) -> Path:
    return root / "runs" / run


def features_dir(name: str, root: Path = RESULTS) -> Path:
    return root / "features" / name


def probe_file(name: str, root: Path = RESULTS) -> Path:
    return root / "probes" / f"{name}.json"


def transfer_file(name: str, root: Path = RESULTS) -> Path:
    return root / "transfer" / f"{name}.json"


def linear_file(name: str, root: Path = RESULTS) -> Path:
    """The linear evaluation's result of ``<run>/s<seed>`` (stages/linear.py)."""
    return root / "linear" / f"{name}.json"


def predictions_file(name: str, root: Path = RESULTS) -> Path:
    return root / "predictions" / f"{name}.parquet"


def epochs_file(name: str, root: Path = RESULTS) -> Path:
    """A run's kept checkpoints' kNN scores (stages/epochs.py)."""
    return root / "epochs" / f"{name}.json"


def export_dir(run: str, root: Path = RESULTS) -> Path:
    return root / "export" / run
