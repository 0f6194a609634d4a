"""The grid and the whole file: a run (:class:`RunSpec`), the recipes, :class:`Params`, and
how a run's params are resolved (the shared sections, then ``recipes.<method>``, then the grid
entry's own keys), stamped (:func:`params_hash`) and written out (:func:`to_dict`,
:func:`run_params`, :func:`recipe`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from ..core.methods import MethodsConfig
from .base import ConfigError, MethodName, Scope, _build, _require
from .claims import CLAIMS, ClaimConfig
from .data import (LOCAL_CROP_KEYS, OMIT_AT_DEFAULT, AugmentConfig, DataConfig, LoaderConfig,
                   ModelConfig)
from .evaluation import LinearConfig, ProbeConfig, TransferConfig
from .training import (ClusterConfig, ComputeConfig, MomentumConfig, PretrainConfig,
                       ResidualConfig)


@dataclass(frozen=True)
class RunSpec:
    """One cell of the experiment grid: a method trained with one momentum variant."""

    method: MethodName
    scope: Scope = "none"
    k: int = 1  # stages under EMA, used by scope last_k only
    residual: bool = False  # add the residual-momentum loss (needs a teacher)
    gpus: int = 1  # GPUs of this run: more than one trains it under torchrun (DDP)
    # this run's own overrides of the recipe, applied over recipes.<method> (see Recipe)
    pretrain: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    momentum: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    augment: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    method_settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # this run's overrides of the residual section (``residual: {weight: 0.5}`` in the grid)
    residual_settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # a variant's name, ``<base name>+<what varies>`` (``mocov3-full+tau0.99``): the grid
    # entry's key when it is not the base name; None for a plain run
    variant: Optional[str] = None
    # the dotted key a sweep varies in this variant (``momentum.tau``), None outside a sweep
    swept: Optional[str] = None

    def __post_init__(self) -> None:
        _require(self.k >= 1, "k", f"must be >= 1, got {self.k}")
        _require(self.gpus >= 1, "gpus", f"must be >= 1, got {self.gpus}")
        _require(not (self.residual and self.scope == "none"), "residual",
                 "the residual-momentum loss needs a teacher; use a scope other than 'none' "
                 "or set residual: false")
        _require(self.residual or not self.residual_settings, "residual",
                 "residual settings need the residual loss: give them as residual: {weight: "
                 "..., level: ...}, which turns it on")

    @property
    def base_name(self) -> str:
        """``<method>-<scope>[-res]``: what the method, scope and residual loss imply."""
        scope = f"last{self.k}" if self.scope == "last_k" else self.scope
        return f"{self.method}-{scope}" + ("-res" if self.residual else "")

    @property
    def name(self) -> str:
        """The run's name: its stages, folders and rows carry it."""
        return self.variant or self.base_name


# The keys of the sections a recipe overrides (RECIPE_SECTIONS, below) that stay shared by
# every run: evaluation reads augment.size, and every run's features must come from the same
# backbone.
SHARED_KEYS: dict[str, tuple[str, ...]] = {
    "pretrain": ("log_every", "device", "monitor_train", "monitor_test", "eval_every",
                 "collapse_std", "health_every",  # telemetry: every run watched alike
                 "checkpoint_every", "keep_every"),  # and saved alike: the stages' outputs
    "augment": ("size",),
    "model": ("backbone", "width", "cifar_stem", "patch_size", "image_size")}


@dataclass(frozen=True)
class Recipe:
    """``recipes.<method>``: one method's published recipe, as overrides of the shared sections
    ``pretrain`` (optimizer, lr, weight decay, LARS, warm-up, loss scale, parameter groups),
    ``momentum`` (tau0, final tau), ``augment`` (the per-view recipe) and
    ``model.zero_init_residual``, and of the method's own settings ``methods.<method>``
    (``method_settings``: heads, temperature, loss options). ``source`` names the reference it
    follows; docs/RECIPES.md gives every value's source. A grid entry may override any of it
    again, with the same keys (``byol-full: {method: byol, scope: full, pretrain: {lr: 0.5}}``).
    """

    source: str = ""
    pretrain: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    momentum: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    augment: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    method_settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)


# The sections a method's recipe (and a grid entry: RunSpec has a field of each name) may
# override, Recipe's fields but its source. ``method_settings`` overrides methods.<method>.
RECIPE_SECTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Recipe)
                                         if f.name != "source")


@dataclass(frozen=True)
class RecipesConfig:
    """Section ``recipes`` (optional): a recipe per method; a method left out trains with the
    shared sections as they are. ``linear``: the linear evaluation's recipe."""

    mocov2: Recipe = Recipe()
    mocov3: Recipe = Recipe()
    byol: Recipe = Recipe()
    simclr: Recipe = Recipe()
    simsiam: Recipe = Recipe()
    barlow_twins: Recipe = Recipe()
    vicreg: Recipe = Recipe()
    unigrad: Recipe = Recipe()
    xmoco: Recipe = Recipe()
    dino: Recipe = Recipe()
    # the linear evaluation's recipe at this scale (not a method's): read when ``linear`` is on
    linear: LinearConfig = LinearConfig()


@dataclass(frozen=True)
class Params:
    """The whole of ``params.yaml``."""

    seed: int
    data: DataConfig
    augment: AugmentConfig
    loader: LoaderConfig
    model: ModelConfig
    pretrain: PretrainConfig
    momentum: MomentumConfig
    residual: ResidualConfig
    methods: MethodsConfig
    probe: ProbeConfig
    transfer: TransferConfig
    grid: tuple[RunSpec, ...]
    recipes: RecipesConfig = RecipesConfig()
    compute: ComputeConfig = ComputeConfig()
    # The papers' linear evaluation (SGD on the frozen backbone, recipes.linear) as a stage of
    # its own per run and seed (stages/linear.py). Off: no stage, no plan or output changes.
    linear: bool = False
    # Training seeds, a grid dimension: every grid run (and the random-init baseline) trains
    # once per seed, each in its own folder (<run>/s<seed>); ``seed`` above stays the seed of
    # the data (subsets, conversion). Paired differences over these seeds judge the claims.
    seeds: tuple[int, ...] = (0,)
    # the claims the report judges (stats.py, claims.py); left out: the papers' (CLAIMS above)
    claims: tuple[ClaimConfig, ...] = dataclasses.field(default_factory=lambda: CLAIMS)
    # the machines runs train on (a run with more GPUs than a node holds spans nodes); in no
    # plan, and left out of to_dict while unset
    cluster: ClusterConfig = dataclasses.field(default=ClusterConfig(), metadata=OMIT_AT_DEFAULT)

    def __post_init__(self) -> None:
        _require(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        _require(len(self.seeds) >= 1 and min(self.seeds) >= 0, "seeds",
                 f"must list seeds >= 0, got {list(self.seeds)}")
        _require(len(set(self.seeds)) == len(self.seeds), "seeds",
                 f"lists a seed twice: {list(self.seeds)}")
        _require(len(self.grid) >= 1, "grid", "must list at least one run")
        if self.model.backbone.startswith("vit_"):
            side = self.model.image_size or self.augment.size
            _require(side % self.model.patch_size == 0,
                     "model.image_size" if self.model.image_size else "model.patch_size",
                     f"a ViT's image side ({side}, model.image_size or augment.size) must be a "
                     f"multiple of model.patch_size ({self.model.patch_size}); change either")
        lin = self.recipes.linear
        _require(not self.linear or self.model.backbone.startswith("vit_")
                 or (lin.vit_last_blocks == 1 and not lin.vit_avgpool), "recipes.linear",
                 f"vit_last_blocks {lin.vit_last_blocks} / vit_avgpool "
                 f"{str(lin.vit_avgpool).lower()} are for a ViT's features; model.backbone is "
                 f"{self.model.backbone}: set vit_last_blocks 1 and vit_avgpool false")
        per_node = self.cluster.gpus_per_node
        for run in self.grid:  # a run spanning nodes fills each of them
            _require(not per_node or run.gpus <= per_node or run.gpus % per_node == 0,
                     f"grid.{run.name}.gpus",
                     f"{run.gpus} GPUs do not divide into nodes of cluster.gpus_per_node "
                     f"({per_node}): ask for a multiple of {per_node} to span nodes, or at most "
                     f"{per_node} for one node")
        names = [run.name for run in self.grid]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        _require(not duplicates, "grid", f"lists the same run twice: {', '.join(duplicates)}")
        # a projector-scope teacher owns no backbone: its backbone output is the student's, so
        # the residual loss at that level would be 0 all run long
        flat = [run.name for run in self.grid if run.residual and run.scope == "projector"
                and run.residual_settings.get("level", self.residual.level) == "backbone"]
        _require(not flat, "residual.level",
                 f"'backbone' with scope projector (grid.{flat[0] if flat else ''}) is always "
                 "0: that teacher has no backbone of its own; set residual.level: projector, "
                 "or give the run scope full or last_k")


def with_seed(params: Params, seed: int | None) -> Params:
    """``params`` for one training seed of the grid (None: as they are): the seed every
    per-run stage draws from (initialisation, augmentations, data order, probe splits)."""
    return params if seed is None else dataclasses.replace(params, seed=seed)


def run_params(params: Params, run: RunSpec) -> dict:
    """The resolved params one grid run depends on, as plain data: every section that shapes its
    training, with only its own method's settings and the residual section only when the run
    uses the residual loss. ``dvc.yaml`` tracks this (``results/plan/<run>.yaml``) instead of
    params.yaml, so a change reruns exactly the runs it touches."""
    resolved = resolve(params, run)
    out = {name: _without_unset(name, to_dict(getattr(resolved, name)))
           for name in ("seed", "data", "augment", "loader", "model", "pretrain", "momentum",
                        "compute")}
    if run.residual:
        out["residual"] = to_dict(resolved.residual)
    out["method"] = to_dict(getattr(resolved.methods, run.method))
    out["run"] = {"name": run.name, **{f.name: to_dict(getattr(run, f.name))
                                       for f in dataclasses.fields(run)
                                       if f.name not in (*RECIPE_SECTIONS, *_GRID_ONLY)}}
    return out


# RunSpec fields that reach a plan through its sections (residual) or its name (variant)
_GRID_ONLY = ("residual_settings", "variant", "swept")


def sweeps(params: Params) -> dict[str, tuple[str, list[tuple[Any, str]]]]:
    """{the sweep's entry: (its dotted key, [(value, variant name)] in the grid's order)}
    for each ``sweep`` of the grid; the values as each variant resolves them."""
    out: dict[str, tuple[str, list[tuple[Any, str]]]] = {}
    for run in params.grid:
        if run.swept is None:
            continue
        section, field = run.swept.split(".")
        resolved = resolve(params, run)
        node = (getattr(resolved.methods, run.method) if section == "method_settings"
                else getattr(resolved, section))
        entry = run.name.rsplit("+", 1)[0]
        out.setdefault(entry, (run.swept, []))[1].append((getattr(node, field), run.name))
    return out


# Settings added after runs were cached, each with the value that leaves a run as it was: a
# plan holds one only when it is set otherwise, so that adding it changed no existing plan
# (and reran no cached stage). recipe() leaves them out alike.
UNSET: dict[str, dict[str, Any]] = {"pretrain": {"min_lr": 0.0, "weight_decay_end": None,
                                                 "precision": "auto"},
                                    "model": {"drop_path": 0.0, "heads": None,
                                              "pos_embed": "learned"}}


def _without_unset(section: str, values: Any) -> Any:
    unset = UNSET.get(section, {})
    if not isinstance(values, dict):
        return values
    return {k: v for k, v in values.items() if not (k in unset and v == unset[k])}


def recipe(params: Params, run: RunSpec) -> dict:
    """The recipe ``run`` trains with, as plain data: every setting a published recipe fixes
    (optimizer, lr, weight decay, LARS, warm-up, epochs, batch, loss scale, parameter groups,
    tau0 and final tau, the augmentations of each view, zero_init_residual, the method's own
    settings) after :func:`resolve`, and the ``source`` its method's recipe names.
    ``python -m momentum_ssl params`` prints it; docs/RECIPES.md is held to it."""
    resolved = resolve(params, run)

    def section(name: str) -> dict:
        skip = SHARED_KEYS.get(name, ())
        if name == "pretrain" and resolved.pretrain.optimizer != "lars":
            skip = (*skip, "lars")  # not read by SGD
        if name == "pretrain" and resolved.pretrain.optimizer == "adamw":
            skip = (*skip, "momentum")  # AdamW has betas, not this momentum
        if name == "augment" and resolved.augment.local_crops == 0:
            skip = (*skip, *LOCAL_CROP_KEYS)  # two views: the local crops' recipe is unread
        values = _without_unset(name, to_dict(getattr(resolved, name)))
        return {k: v for k, v in values.items() if k not in skip}

    return {"source": getattr(params.recipes, run.method).source,
            "loader": {"batch_size": resolved.loader.batch_size},
            "pretrain": section("pretrain"), "momentum": section("momentum"),
            "augment": section("augment"),
            "model": ({"zero_init_residual": resolved.model.zero_init_residual}
                      if not resolved.model.backbone.startswith("vit_") else
                      {"freeze_patch_embed": resolved.model.freeze_patch_embed,
                       "drop_path": resolved.model.drop_path,
                       **_without_unset("model", {"heads": resolved.model.heads,
                                                  "pos_embed": resolved.model.pos_embed})}),
            "method": to_dict(getattr(resolved.methods, run.method))}


def _merge(base: dict, over: Mapping) -> dict:
    """``over`` on ``base``; nested mappings (``pretrain.lars``) merge key by key, anything
    else (lists such as ``param_groups``) is replaced whole."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve(params: Params, run: RunSpec) -> Params:
    """``params`` as ``run`` trains with them: the shared sections, then the recipe of its
    method (``recipes.<method>``), then the grid entry's own overrides. Raises
    :class:`ConfigError` naming the key and where it was set."""
    from ..core.methods import validate_config

    recipe = getattr(params.recipes, run.method)
    sections = {}
    for name in RECIPE_SECTIONS:
        base = (getattr(params.methods, run.method) if name == "method_settings"
                else getattr(params, name))
        cls, data = type(base), to_dict(base)
        layers = [(f"recipes.{run.method}.{name}", getattr(recipe, name)),
                  (f"grid.{run.name}.{name}", getattr(run, name))]
        if not any(over for _, over in layers):
            continue
        for where, over in layers:
            for key in over:
                _require(key not in SHARED_KEYS.get(name, ()), f"{where}.{key}",
                         f"is shared by every run; set it in the {name} section instead")
            data = _merge(data, over)
            built = _build(cls, data, where)  # names the key, and the layer that set it
            if name == "method_settings":
                try:
                    validate_config(built)
                except ValueError as err:
                    raise ConfigError(f"{where}.{err}") from None
        sections[name] = built
    if "method_settings" in sections:
        sections["methods"] = dataclasses.replace(
            params.methods, **{run.method: sections.pop("method_settings")})
    if run.residual_settings:  # a grid entry's own residual section (no recipe sets it)
        sections["residual"] = _build(ResidualConfig,
                                      _merge(to_dict(params.residual), run.residual_settings),
                                      f"grid.{run.name}.residual")
    return dataclasses.replace(params, **sections) if sections else params


def params_hash(data: Any) -> str:
    """sha256 of plain data in canonical JSON: the version stamp of features and metrics."""
    import hashlib
    import json

    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def to_dict(obj: Any) -> Any:
    """Plain-data form of a config (tuples as lists), for resolved-params files and hashing."""
    if isinstance(obj, Params):
        out = {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
               if not (f.metadata.get("omit_at_default") and getattr(obj, f.name) == f.default)}
        out["grid"] = {run.name: to_dict(run) for run in obj.grid}
        return out
    if isinstance(obj, RunSpec):  # a grid entry: its own overrides only when it has some
        out = {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
               if f.name not in _GRID_ONLY  # the grid's key names a variant
               and not (f.name in RECIPE_SECTIONS and not getattr(obj, f.name))}
        if obj.residual_settings:  # as the grid writes it: residual: {weight: ...}
            out["residual"] = to_dict(obj.residual_settings)
        if obj.swept:
            out["swept"] = obj.swept
        return out
    if dataclasses.is_dataclass(obj):  # a setting added later is left out at its default
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.metadata.get("omit_at_default") and getattr(obj, f.name) == f.default)}
    if isinstance(obj, Mapping):
        return {key: to_dict(value) for key, value in obj.items()}
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    return obj
