"""Reading a params file: YAML to :class:`~momentum_ssl.config.runs.Params`, every recipe
checked before any work starts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .base import METHODS, ConfigError, _build, _require
from .runs import Params, RunSpec, resolve


def _grid_runs(grid: Any) -> list:
    """``grid`` maps each run's name to its spec; the name must be the one the spec implies
    (``byol-full``, ``simclr-last2``, ``byol-full-res``), since DVC and Snakemake name stages
    and output folders by it."""
    if not isinstance(grid, Mapping):
        raise ConfigError("grid: expected a mapping from run name to {method, scope, k, "
                          f"residual}}, e.g. 'byol-full: {{method: byol, scope: full}}'; got "
                          f"{grid!r}")
    runs = []
    for name, spec in grid.items():
        run = _build(RunSpec, spec, f"grid.{name}")
        _require(run.name == name, f"grid.{name}",
                 f"the run's name must be '{run.name}' for method {run.method}, scope "
                 f"{run.scope}" + (f", k {run.k}" if run.scope == "last_k" else "")
                 + (", residual" if run.residual else "") + "; rename the key")
        runs.append(spec)
    return runs


def params_from_dict(data: Any) -> Params:
    """Validate a parsed params mapping into :class:`Params`."""
    if isinstance(data, Mapping) and "grid" in data:
        data = {**data, "grid": _grid_runs(data["grid"])}
    params = _build(Params, data, "")
    # every recipe is checked before any work: each run's, and those no run uses yet
    for run in (*params.grid, *(RunSpec(method) for method in METHODS)):
        resolve(params, run)
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file; raises :class:`ConfigError` naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} not found; run from the repository root or pass "
                          "--params PATH (profiles live in params/)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if isinstance(data, Mapping) and isinstance(data.get("recipes"), str):
        data = {**data, "recipes": _recipes_file(path.parent / data["recipes"], path)}
    try:
        return params_from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def _recipes_file(path: Path, params_path: Path) -> Any:
    """``recipes: FILE`` in a params file: the recipes section read from FILE (relative to the
    params file's folder), so profiles at one scale (CIFAR-10 and CIFAR-100) share one."""
    if not path.is_file():
        raise ConfigError(f"{params_path}: recipes: file {path} not found; give a path relative "
                          f"to {params_path.parent}/ (recipe files live in params/recipes/)")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
