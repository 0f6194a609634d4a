"""Typed configuration: ``params.yaml`` loaded into frozen dataclasses.

``params.yaml`` is the one source of configuration. Every top-level section must be present
(a profile that forgets one fails loudly rather than silently running on code defaults); inside
a section, a key left out takes the default documented on its field. Unknown keys, wrong types
and out-of-range values raise :class:`ConfigError` naming the dotted key and what is allowed,
before any work starts.

One module per group of sections, and this package's names are the ones to import:

    base.py        ConfigError, the checks, the typed building of a section from a mapping
    data.py        data, augment, loader, model
    training.py    pretrain (lars, param_groups), momentum, residual, compute
    evaluation.py  probe, transfer, recipes.linear (LinearConfig)
    claims.py      claims and the papers' claims (claims.yaml beside it)
    runs.py        the grid (RunSpec), recipes, Params; resolve, run_params, recipe, to_dict
    loader.py      the YAML loader: load_params, params_from_dict

Where config sits in the layers (tests/test_layout.py holds it): each method's settings are a
dataclass in its own file (core/methods/), beside the loss they configure, and ``methods`` is
their section, so config imports ``core.methods`` (which imports no config). Everything else
that reads params imports config: the rest of core (learner, momentum), data, analysis and the
stages. The order, top to bottom: stages, analysis, core and data, config, core.methods and
core.models, plumbing.
"""

from .base import DATASETS, METHODS, SCOPES, ConfigError
from .claims import BLOCK_METRICS, CLAIM_METRICS, CLAIMS, CLAIMS_FILE, PAPERS, ClaimConfig
from .data import AugmentConfig, DataConfig, LoaderConfig, ModelConfig
from .evaluation import LinearConfig, ProbeConfig, TransferConfig
from .loader import load_params, params_from_dict
from .runs import (RECIPE_SECTIONS, SHARED_KEYS, MethodsConfig, Params, Recipe, RecipesConfig,
                   RunSpec, params_hash, recipe, resolve, run_params, sweeps, to_dict,
                   with_seed)
from .training import (ClusterConfig, ComputeConfig, LarsConfig, MomentumConfig, ParamGroupConfig,
                       PretrainConfig, ResidualConfig)

__all__ = ["AugmentConfig", "ConfigError", "DataConfig", "LarsConfig", "LoaderConfig",
           "MethodsConfig", "ClaimConfig", "ClusterConfig", "CLAIMS", "CLAIMS_FILE", "CLAIM_METRICS", "BLOCK_METRICS", "ComputeConfig",
           "PAPERS", "ModelConfig",
           "MomentumConfig", "ParamGroupConfig", "Params", "PretrainConfig", "ProbeConfig",
           "Recipe", "RecipesConfig", "RECIPE_SECTIONS", "ResidualConfig", "RunSpec",
           "SHARED_KEYS", "TransferConfig", "params_hash", "recipe", "resolve", "run_params",
           "sweeps", "with_seed", "DATASETS", "METHODS", "SCOPES", "load_params", "params_from_dict",
           "to_dict", "LinearConfig"]
