"""The ``plan`` stage: the params one grid run reads at one seed, as a file of their own.

    write_plan(params, run, seed)    # (results/plan/<run>/s<seed>.yaml, whether it was written)
    check_plan(params, run, seed, "params.yaml")      # before pretrain: the plan still fits

DVC and Snakemake decide whether a run is up to date from its plan file
(:func:`~momentum_ssl.config.run_params` of the run at the seed), not from params.yaml, so a
change reruns exactly the runs it touches.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..config import ConfigError, Params, RunSpec, run_params, with_seed
from ..plumbing.artifacts import atomic_write_text, read_yaml
from ..plumbing.paths import cell, plan_file, seed_flag


def write_plan(params: Params, run: RunSpec, seed: int) -> tuple[Path, bool]:
    """(the plan's path, whether it was written). The same bytes are not written again, so a
    plan's mtime moves only with its content when Snakemake reruns the plan rule."""
    path = plan_file(cell(run.name, seed))
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(run_params(with_seed(params, seed), run), sort_keys=False)
    if path.is_file() and path.read_text() == text:
        return path, False
    atomic_write_text(path, text)
    return path, True


def check_plan(params: Params, run: RunSpec, seed: int, params_path: str) -> None:
    """A plan that no longer matches the params would record a run under the wrong params:
    raise :class:`ConfigError` naming the command that rewrites it (nothing to check when there
    is no plan file)."""
    path = plan_file(cell(run.name, seed))
    if not path.is_file():
        return
    command = f"python -m momentum_ssl plan --run {run.name}{seed_flag(seed)}"
    expected = yaml.safe_load(yaml.safe_dump(run_params(with_seed(params, seed), run),
                                             sort_keys=False))
    if read_yaml(path, command) != expected:
        raise ConfigError(f"{path} was written for other params than {params_path} gives "
                          f"{run.name}; rerun {command} first (dvc repro and snakemake do)")
