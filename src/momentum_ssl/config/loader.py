"""Reading a params file: YAML to :class:`~momentum_ssl.config.runs.Params`, every recipe
checked before any work starts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..core.methods import METHODS as METHOD_CLASSES
from .base import METHODS, ConfigError, _build, _require
from .claims import CLAIMS_FILE, PAPERS
from .data import local_size
from .runs import Params, RunSpec, params_hash, resolve, run_params


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


# A variant's name: its base name, then "+<what varies>" once or more, in characters that DVC's
# stage names (plan@<run>-<seed>), Snakemake's wildcards and folder names all accept.
VARIANT = re.compile(r"(\+[A-Za-z0-9][A-Za-z0-9._-]*)+")
# sweep keys: a section's key, or its short form; the variant's label is the last part
SWEEP_SECTIONS = ("pretrain", "momentum", "augment", "model", "method_settings", "residual")
SWEEP_SHORT = {"tau": "momentum.tau", "tau0": "momentum.tau", "lr": "pretrain.lr",
               "epochs": "pretrain.epochs", "weight": "residual.weight"}


def _label(value: Any) -> str:
    return format(value, "g") if isinstance(value, float) else str(value).lower()


def _sweep_key(key: Any, where: str) -> str:
    """A sweep's key as ``<section>.<key>`` (``tau`` -> ``momentum.tau``)."""
    full = SWEEP_SHORT.get(key, key) if isinstance(key, str) else ""
    section, _, field = full.partition(".")
    _require(section in SWEEP_SECTIONS and bool(field) and "." not in field, where,
             f"{key!r} is not a key to sweep: give <section>.<key> with a section of "
             f"{', '.join(SWEEP_SECTIONS)}, or one of {', '.join(SWEEP_SHORT)}")
    return full


def expand_sweeps(grid: Mapping) -> dict[str, Any]:
    """The grid with each sweep written out as its variants, each marked ``swept: <key>``
    (what a study's params.yaml holds: DVC's matrix iterates the grid's keys as written)."""
    out = {}
    for name, (spec, swept) in _grid_entries(grid).items():
        out[name] = {**spec, "swept": swept} if swept else spec
    return out


def _sweep(name: str, spec: Mapping) -> tuple[str, dict[str, dict]]:
    """``sweep: {key: [values]}`` in a grid entry: one variant per value, named
    ``<name>+<key's last part><value>`` (``mocov3-full+tau0.99``), the value set as an
    override of that section (``residual.*`` turns the residual loss on)."""
    sweep = spec["sweep"]
    where = f"grid.{name}.sweep"
    _require(isinstance(sweep, Mapping) and len(sweep) == 1, where,
             f"expected one key and its values, e.g. 'sweep: {{tau: [0.99, 0.996]}}'; got "
             f"{sweep!r}")
    (key, values), = sweep.items()
    section, _, field = _sweep_key(key, where).partition(".")
    _require(isinstance(values, list) and len(values) >= 2
             and len({_label(v) for v in values}) == len(values), f"{where}.{key}",
             f"expected a list of at least two different values, got {values!r}")
    base = {k: v for k, v in spec.items() if k != "sweep"}
    variants = {}
    for value in values:
        entry = {**base}
        if section == "residual":
            own = entry.get("residual")
            entry["residual"] = {**(own if isinstance(own, Mapping) else {}), field: value}
        else:
            entry[section] = {**(entry.get(section) or {}), field: value}
        variants[f"{name}+{field}{_label(value)}"] = entry
    return f"{section}.{field}", variants


def _grid_entries(grid: Mapping) -> dict[str, tuple[Any, str | None]]:
    """{name: (spec, the key its sweep varies or None)}, each sweep expanded, in order."""
    out: dict[str, tuple[Any, str | None]] = {}
    for name, spec in grid.items():
        if isinstance(spec, Mapping) and "sweep" in spec:
            key, expanded = _sweep(name, spec)
        else:
            key, expanded = None, {name: spec}
        for variant, entry in expanded.items():
            _require(variant not in out, f"grid.{variant}",
                     "is listed twice (a sweep's variant and an entry); drop one")
            out[variant] = (entry, key)
    return out


def _grid_runs(grid: Any) -> list:
    """``grid`` maps each run's name to its spec. A plain run's name is the one the spec
    implies (``byol-full``, ``simclr-last2``, ``byol-full-res``), a variant's that name and
    ``+<what varies>`` (``mocov3-full+tau0.99``), since DVC and Snakemake name stages and
    output folders by it. ``residual: {weight, level}`` turns the residual loss on with this
    run's own residual section; ``sweep`` expands one entry into variants (:func:`_sweep`)."""
    if not isinstance(grid, Mapping):
        raise ConfigError("grid: expected a mapping from run name to {method, scope, k, "
                          f"residual}}, e.g. 'byol-full: {{method: byol, scope: full}}'; got "
                          f"{grid!r}")
    runs = []
    for name, (spec, swept) in _grid_entries(grid).items():
        if isinstance(spec, Mapping):
            _require(not {"variant", "residual_settings"} & set(spec),
                     f"grid.{name}", "unknown key: a variant is named by its key, and its "
                     "residual settings are given as residual: {weight: ..., level: ...}")
            if "swept" in spec:  # a sweep written out (a study's copy): its point's key
                _require(swept is None and "+" in str(name), f"grid.{name}.swept",
                         "marks a variant written out of a sweep; only a variant "
                         "('<base>+<what varies>') outside a sweep may carry it")
                swept = _sweep_key(spec["swept"], f"grid.{name}.swept")
            if isinstance(spec.get("residual"), Mapping):
                spec = {**spec, "residual": True, "residual_settings": spec["residual"]}
        run = _build(RunSpec, spec, f"grid.{name}")
        base = run.base_name
        if name != base:
            _require(str(name).startswith(base + "+"), f"grid.{name}",
                     f"the run's name must be '{base}' for method {run.method}, scope "
                     f"{run.scope}" + (f", k {run.k}" if run.scope == "last_k" else "")
                     + (", residual" if run.residual else "") + ", or a variant "
                     f"'{base}+<what varies>'; rename the key")
            _require(VARIANT.fullmatch(str(name)[len(base):]) is not None, f"grid.{name}",
                     "a variant's name may hold letters, digits, '.', '_', '-' and '+' "
                     f"(e.g. '{base}+tau0.99'); rename the key")
            spec = {**spec, "variant": name, "swept": swept}
        runs.append(spec)
    return runs


def _check_distinct(params: Params) -> None:
    """Two grid entries that train the same thing under two names would cost twice and
    compare a run with itself: refuse them."""
    seen: dict[str, str] = {}
    for run in params.grid:
        plan = run_params(params, run)
        plan["run"] = {k: v for k, v in plan["run"].items() if k != "name"}
        stamp = params_hash(plan)
        _require(stamp not in seen, f"grid.{run.name}",
                 f"resolves to the same plan as grid.{seen.get(stamp)}: the two would train "
                 "the same run; drop one or change what varies")
        seen[stamp] = run.name


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
    _check_distinct(params)
    # every recipe is checked before any work: each run's, and those no run uses yet
    for run in (*params.grid, *(RunSpec(method) for method in METHODS)):
        _check_views(resolve(params, run), run)
    return params


def _check_views(resolved: Params, run: RunSpec) -> None:
    """Local crops only for a method that uses them, and of a side a ViT can cut into patches."""
    augment, model = resolved.augment, resolved.model
    if augment.local_crops == 0:
        return
    # the methods whose loss takes local crops say so themselves (Method.multi_crop)
    multi_crop = [name for name, cls in METHOD_CLASSES.items() if cls.multi_crop]
    _require(run.method in multi_crop, "augment.local_crops",
             f"{run.method} takes two views, but its runs get {augment.local_crops} local "
             f"crops; set local_crops in recipes.dino.augment only (methods with local crops: "
             f"{', '.join(multi_crop)})")
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
    refuse_sweep_in_pipeline(data, path)
    if isinstance(data, Mapping) and isinstance(data.get("recipes"), str):
        # relative to the folder of the file itself (a link's target's folder)
        data = {**data, "recipes": _recipes_file(path.resolve().parent / data["recipes"], path)}
    try:
        return params_from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def refuse_sweep_in_pipeline(data: Any, path: Path) -> None:
    """A params file beside a dvc.yaml is a pipeline's: DVC's matrix iterates its grid's keys
    as written, so a sweep there would be one stage, not its variants."""
    grid = data.get("grid") if isinstance(data, Mapping) else None
    if not isinstance(grid, Mapping) or not (Path(path).parent / "dvc.yaml").is_file():
        return
    swept = [name for name, spec in grid.items() if isinstance(spec, Mapping) and "sweep" in spec]
    if swept:
        raise ConfigError(f"{path}: grid.{swept[0]}.sweep: DVC's matrix runs this file's grid "
                          "keys as written, so a sweep cannot expand here; put it in a profile "
                          "params/NAME.yaml and run that as a study (python -m momentum_ssl "
                          "study NAME writes its variants out), or write the variants here")


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
