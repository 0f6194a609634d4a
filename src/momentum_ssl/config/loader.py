"""Reading a params file: YAML to :class:`~momentum_ssl.config.runs.Params`, every recipe
checked before any work starts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .base import METHODS, ConfigError, _build, _require
from .claims import CLAIMS_FILE, PAPERS
from .data import local_size
from .runs import Params, RunSpec, resolve


# Where recipe files live: the root pipeline's plans depend on this folder (dvc.yaml), since
# DVC's params see a ``recipes: FILE`` key's path, not the file's values; a study's plans on the
# one file its profile names (study.py). The plan stage refuses a file elsewhere (untracked).
RECIPES_DIR = "params/recipes"


def recipes_path(path: str | Path) -> Path | None:
    """The recipes file a params file names (``recipes: FILE``, relative to its folder), or
    None when its recipes are inline."""
    path = Path(path)
    try:
        value = yaml.safe_load(path.read_text()).get("recipes")
    except (OSError, yaml.YAMLError, AttributeError):
        return None  # load_params names the problem
    return path.resolve().parent / value if isinstance(value, str) else None


def check_recipes_tracked(path: str | Path) -> None:
    """A plan must not read a recipes file that no pipeline declares: it must lie in a
    ``params/recipes/`` folder (the one dvc.yaml's plans depend on, or a study's file there)."""
    recipes = recipes_path(path)
    if recipes is not None and recipes.resolve().parent.parts[-2:] != ("params", "recipes"):
        raise ConfigError(f"{path}: recipes: {recipes} is outside {RECIPES_DIR}/, the folder "
                          "the plan stages depend on, so an edit to it would rerun nothing; "
                          f"move it into {RECIPES_DIR}/")


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
    if isinstance(data, Mapping) and isinstance(data.get("claims"), str):
        _require(data["claims"] == PAPERS, "claims",
                 f"expected a list of claims or '{PAPERS}' (the papers' claims, "
                 f"src/momentum_ssl/{CLAIMS_FILE.name}), got {data['claims']!r}")
        data = {key: value for key, value in data.items() if key != "claims"}  # the default
    params = _build(Params, data, "")
    # every recipe is checked before any work: each run's, and those no run uses yet
    for run in (*params.grid, *(RunSpec(method) for method in METHODS)):
        _check_views(resolve(params, run), run)
    return params


MULTI_CROP_METHODS = ("dino",)  # methods whose loss takes local crops (methods/dino.py)


def _check_views(resolved: Params, run: RunSpec) -> None:
    """Local crops only for a method that uses them, and of a side a ViT can cut into patches."""
    augment, model = resolved.augment, resolved.model
    if augment.local_crops == 0:
        return
    _require(run.method in MULTI_CROP_METHODS, "augment.local_crops",
             f"{run.method} takes two views, but its runs get {augment.local_crops} local "
             f"crops; set local_crops in recipes.dino.augment only (methods with local crops: "
             f"{', '.join(MULTI_CROP_METHODS)})")
    side = local_size(augment)
    _require(not model.backbone.startswith("vit_") or side % model.patch_size == 0,
             "augment.local_size", f"{side} px local crops are not a whole number of "
             f"model.patch_size ({model.patch_size}) patches; set local_size to a multiple")


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
        # relative to the folder of the file itself (a link's target's folder)
        data = {**data, "recipes": _recipes_file(path.resolve().parent / data["recipes"], path)}
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
