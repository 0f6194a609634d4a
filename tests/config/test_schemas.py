"""The schema split over config/'s modules: every section's dataclass is found where
config/__init__.py says, its type hints resolve in its own module (the loader reads them to
coerce values, and ``from __future__ import annotations`` leaves them as strings until then),
and the package's names are the modules' own objects."""

import dataclasses
import typing

import pytest

import momentum_ssl.config as config
from momentum_ssl.core.methods import MethodsConfig

WHERE = {
    "base": ["ConfigError"],
    "data": ["DataConfig", "AugmentConfig", "LoaderConfig", "ModelConfig"],
    "training": ["PretrainConfig", "LarsConfig", "ParamGroupConfig", "MomentumConfig",
                 "ResidualConfig"],
    "evaluation": ["ProbeConfig", "TransferConfig", "LinearConfig"],
    "claims": ["ClaimConfig"],
    "runs": ["RunSpec", "Recipe", "RecipesConfig", "Params", "resolve", "run_params", "recipe",
             "to_dict", "params_hash", "with_seed"],
    "loader": ["load_params", "params_from_dict"],
}


@pytest.mark.parametrize("module, names", WHERE.items())
def test_each_name_lives_in_the_module_of_its_group(module, names):
    for name in names:
        assert getattr(config, name).__module__ == f"momentum_ssl.config.{module}", name


def schemas(cls, seen=None):
    """``cls`` and every dataclass its fields hold, however nested (tuples, Optional)."""
    seen = set() if seen is None else seen
    if cls in seen:
        return seen
    seen.add(cls)
    for hint in typing.get_type_hints(cls).values():
        stack = [hint]
        while stack:
            tp = stack.pop()
            if dataclasses.is_dataclass(tp):
                schemas(tp, seen)
            stack.extend(typing.get_args(tp))
    return seen


def test_every_schema_reachable_from_params_resolves_its_type_hints():
    found = schemas(config.Params)
    # every group module's classes and the methods' settings are reached
    assert {c.__module__.rsplit(".", 1)[-1] for c in found} >= {
        "data", "training", "evaluation", "claims", "runs"}
    assert MethodsConfig in found
    assert {config.LarsConfig, config.ParamGroupConfig, config.Recipe} <= found
    for cls in found:
        hints = typing.get_type_hints(cls)
        assert set(hints) >= {f.name for f in dataclasses.fields(cls)}, cls


def test_the_package_exports_what_its_all_lists():
    for name in config.__all__:
        assert hasattr(config, name), name
