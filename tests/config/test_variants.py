"""Variants: a grid entry named ``<base>+<what varies>`` with its own overrides (residual and
momentum sections included), a sweep that expands one entry over one key's values, and the
refusals: a name stages and folders cannot carry, a name that hides another run, two entries
that train the same thing."""

import copy

import pytest
import yaml

from conftest import repo_params_dict
from momentum_ssl.config import (ConfigError, params_from_dict, resolve, run_params, sweeps,
                                 to_dict)

FULL = {"method": "simclr", "scope": "full"}


def with_grid(**entries) -> dict:
    data = copy.deepcopy(repo_params_dict())
    data["grid"] = {"simclr-full": FULL, **{k.replace("__", "+"): v for k, v in entries.items()}}
    return data


def test_two_variants_of_one_method_and_scope_train_with_their_own_plans():
    params = params_from_dict(with_grid(**{
        "simclr-full__tau0.99": {**FULL, "momentum": {"tau": 0.99}},
        "simclr-full-res__weight0.5": {**FULL, "residual": {"weight": 0.5, "level": "backbone"}},
    }))
    plain, tau, res = params.grid
    assert [r.name for r in params.grid] == ["simclr-full", "simclr-full+tau0.99",
                                            "simclr-full-res+weight0.5"]
    assert (plain.base_name, tau.base_name, res.base_name) == ("simclr-full", "simclr-full",
                                                               "simclr-full-res")
    assert resolve(params, tau).momentum.tau == 0.99 and resolve(params, plain).momentum.tau == 0.96
    plan = run_params(params, res)
    assert plan["residual"] == {"weight": 0.5, "level": "backbone"} and res.residual
    assert plan["run"] == {"name": "simclr-full-res+weight0.5", "method": "simclr",
                           "scope": "full", "k": 1, "residual": True, "gpus": 1}
    assert run_params(params, tau)["run"]["name"] == "simclr-full+tau0.99"
    assert params_from_dict(to_dict(params)) == params  # the grid's keys carry the names


def test_a_sweep_written_out_is_the_sweep(tmp_path):
    """What a study's params.yaml holds (expand_sweeps): the variants, each marked swept;
    a pipeline's own params file refuses the compact form, which DVC's matrix cannot expand."""
    from momentum_ssl.config import load_params
    from momentum_ssl.config.loader import expand_sweeps

    data = with_grid(**{"simclr-projector": {"method": "simclr", "scope": "projector",
                                             "sweep": {"tau": [0.99, 0.996]}}})
    written = {**data, "grid": expand_sweeps(data["grid"])}
    assert written["grid"]["simclr-projector+tau0.99"] == {
        "method": "simclr", "scope": "projector", "momentum": {"tau": 0.99},
        "swept": "momentum.tau"}
    assert params_from_dict(written) == params_from_dict(data)
    assert sweeps(params_from_dict(written)) == sweeps(params_from_dict(data))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    assert load_params(tmp_path / "params.yaml") == params_from_dict(data)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    with pytest.raises(ConfigError, match="grid.simclr-projector.sweep: DVC's matrix runs this "
                                          "file's grid keys as written"):
        load_params(tmp_path / "params.yaml")


def test_a_sweep_expands_into_named_variants_and_says_what_it_varies():
    data = with_grid(**{"simclr-full-res": {**FULL, "residual": True,
                                            "sweep": {"weight": [0.5, 1.0, 2.0]}},
                        "simclr-projector": {"method": "simclr", "scope": "projector",
                                             "sweep": {"tau0": [0.99, 0.996]}},
                        "simclr-none": {"method": "simclr", "scope": "none",
                                        "sweep": {"pretrain.lr": [0.1, 0.6]}}})
    params = params_from_dict(data)
    assert [r.name for r in params.grid] == [
        "simclr-full", "simclr-full-res+weight0.5", "simclr-full-res+weight1",
        "simclr-full-res+weight2", "simclr-projector+tau0.99", "simclr-projector+tau0.996",
        "simclr-none+lr0.1", "simclr-none+lr0.6"]
    assert sweeps(params) == {
        "simclr-full-res": ("residual.weight", [(0.5, "simclr-full-res+weight0.5"),
                                                (1.0, "simclr-full-res+weight1"),
                                                (2.0, "simclr-full-res+weight2")]),
        "simclr-projector": ("momentum.tau", [(0.99, "simclr-projector+tau0.99"),
                                              (0.996, "simclr-projector+tau0.996")]),
        "simclr-none": ("pretrain.lr", [(0.1, "simclr-none+lr0.1"), (0.6, "simclr-none+lr0.6")])}
    # residual.weight 1.0 is the shared section's value: that variant's plan is the plain
    # residual run's, under its own name
    assert run_params(params, params.grid[2])["residual"] == {"weight": 1.0,
                                                              "level": "projector"}


def test_a_grid_without_variants_plans_as_before():
    """A plain run's plan and the grid's plain data hold no key of the variants' machinery, so
    no cached plan changes."""
    params = params_from_dict(repo_params_dict())
    for run in params.grid:
        assert run.variant is None and run.swept is None and not run.residual_settings
        assert list(run_params(params, run)["run"]) == ["name", "method", "scope", "k",
                                                       "residual", "gpus"]
        assert set(to_dict(params)["grid"][run.name]) <= {"method", "scope", "k", "residual",
                                                          "gpus"}


@pytest.mark.parametrize("entries, message", [
    ({"simclr-full__t@u": FULL},
     "grid.simclr-full+t@u: a variant's name may hold letters, digits, '.', '_', '-' and '+'"),
    ({"simclr-full__": FULL}, "a variant's name may hold"),
    ({"simclr-none__fast": FULL},
     "the run's name must be 'simclr-full' for method simclr, scope full, or a variant "
     "'simclr-full+<what varies>'"),
    ({"simclr-full__tau0.96": {**FULL, "momentum": {"tau": 0.96}}},
     "grid.simclr-full+tau0.96: resolves to the same plan as grid.simclr-full"),
    ({"simclr-full__x": {**FULL, "residual": {"weight": 0.5}}},
     "the run's name must be 'simclr-full-res'"),
    ({"simclr-full-res__x": {**FULL, "residual": {"wieght": 0.5}}},
     "unknown key 'grid.simclr-full-res+x.residual.wieght'"),
    ({"simclr-full__x": {**FULL, "variant": "y"}}, "a variant is named by its key"),
    ({"simclr-full__x": {**FULL, "swept": "foo.bar"}}, "grid.simclr-full+x.swept: 'foo.bar'"),
    ({"simclr-projector": {"method": "simclr", "scope": "projector", "swept": "momentum.tau"}},
     "grid.simclr-projector.swept: marks a variant written out of a sweep"),
    ({"simclr-projector": {"method": "simclr", "scope": "projector", "sweep": {"foo": [1, 2]}}},
     "grid.simclr-projector.sweep: 'foo' is not a key to sweep"),
    ({"simclr-projector": {"method": "simclr", "scope": "projector", "sweep": {"tau": [0.9]}}},
     "grid.simclr-projector.sweep.tau: expected a list of at least two different values"),
    ({"simclr-projector": {"method": "simclr", "scope": "projector",
                           "sweep": {"tau": [0.9], "lr": [0.1]}}},
     "grid.simclr-projector.sweep: expected one key and its values"),
    ({"simclr-full": {**FULL, "sweep": {"tau": [0.9, 0.99]}},
      "simclr-full__tau0.9": {**FULL, "momentum": {"tau": 0.9}}},
     "grid.simclr-full+tau0.9: is listed twice"),
])
def test_a_bad_variant_or_sweep_is_refused_in_one_line(entries, message):
    with pytest.raises(ConfigError) as err:
        params_from_dict(with_grid(**entries))
    assert message in str(err.value) and "\n" not in str(err.value)
