"""The plan stage: the params one run reads at one seed, written for DVC and Snakemake, and the
check that refuses to train from a plan the params no longer give."""

import dataclasses

import pytest
import yaml

from conftest import TINY, make_params
from momentum_ssl.config import ConfigError, run_params, with_seed
from momentum_ssl.stages.plan import check_plan, write_plan


@pytest.fixture
def params(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # results/plan/ in tmp_path
    return make_params(tmp_path, **{**TINY, "seeds": [0, 1]})


def test_the_plan_is_the_runs_params_at_its_seed(params):
    run = params.grid[0]
    path, written = write_plan(params, run, 1)
    assert written and write_plan(params, run, 1) == (path, False)  # same bytes: not rewritten
    assert path.as_posix() == f"results/plan/{run.name}/s1.yaml"
    plan = yaml.safe_load(path.read_text())
    assert plan == yaml.safe_load(yaml.safe_dump(run_params(with_seed(params, 1), run)))
    assert plan["seed"] == 1 and plan["run"]["name"] == run.name


def test_check_plan_passes_a_fresh_or_absent_plan_and_refuses_a_stale_one(params):
    run = params.grid[0]
    check_plan(params, run, 0, "params.yaml")  # no plan yet: nothing to hold the run to
    write_plan(params, run, 0)
    check_plan(params, run, 0, "params.yaml")
    changed = dataclasses.replace(params, pretrain=dataclasses.replace(params.pretrain, lr=0.2))
    with pytest.raises(ConfigError, match=f"rerun python -m momentum_ssl plan --run {run.name} "
                                          "--seed 0 first"):
        check_plan(changed, run, 0, "params.yaml")


def test_settings_added_later_enter_a_plan_only_when_set(params):
    """min_lr, weight_decay_end and drop_path at the values that change nothing stay out of the
    plan, so adding them left every cached plan's bytes (and its DVC stage) as they were."""
    run = params.grid[0]
    plan = run_params(params, run)
    assert not {"min_lr", "weight_decay_end"} & set(plan["pretrain"])
    assert "drop_path" not in plan["model"]
    dino_like = dataclasses.replace(params, pretrain=dataclasses.replace(
        params.pretrain, min_lr=1e-6, weight_decay_end=0.4))
    plan = run_params(dino_like, run)
    assert plan["pretrain"]["min_lr"] == 1e-6 and plan["pretrain"]["weight_decay_end"] == 0.4
