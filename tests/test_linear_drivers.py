"""The linear evaluation's stage in both drivers (workflow.py, study.py, the Snakefile): absent
from the embedded default's pipeline, which stays as it was; present per run and seed, with the
same inputs and output under `snakemake -n` and DVC, in a study whose profile turns it on; and
refused at the root, whose dvc.yaml has no such stage."""

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, repo_params_dict
from momentum_ssl.config import ConfigError
from momentum_ssl.study import study_text, write_study
from momentum_ssl.workflow import Grid
from test_workflow import dvc_stages, snakemake_jobs

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}


def test_the_default_pipeline_has_no_linear_stage_and_the_studies_are_unchanged():
    root = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert "linear" not in root["stages"]
    assert "results/linear" not in root["stages"]["report"]["deps"]
    for name in ("claims", "momentum_sweep"):  # off in their profiles: the same text
        assert study_text(name, REPO) == (REPO / "studies" / name / "dvc.yaml").read_text()
    assert "linear" not in (REPO / "Snakefile").read_text().split("rule all")[1]


def test_the_root_pipeline_refuses_it_in_one_line(tmp_path):
    params = {**repo_params_dict(), "linear": True}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match="has no linear stage; set it in a profile"):
        Grid.from_config(params, tmp_path / "params.yaml")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A study of the embedded default with linear on, its recipe in a recipes file."""
    repo = tmp_path_factory.mktemp("repo")
    for name in ("Snakefile", "dvc.yaml", "params.yaml"):  # the root pipeline, off
        shutil.copy(REPO / name, repo / name)
    shutil.copytree(REPO / "workflow", repo / "workflow")
    (repo / "src").symlink_to(REPO / "src")
    (repo / "params" / "recipes").mkdir(parents=True)
    (repo / "params" / "recipes" / "lin.yaml").write_text(
        "linear: {source: test, epochs: 3, batch_size: 64, schedule: cosine}\n")
    profile = copy.deepcopy(repo_params_dict())
    profile.update(recipes="recipes/lin.yaml", linear=True)
    (repo / "params" / "lin.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=repo, env=ENV, check=True)
    return write_study("lin", repo)


def test_a_study_that_turns_it_on_gets_the_stage_in_both_drivers(study):
    jobs, stages = snakemake_jobs(study), dvc_stages(study)
    assert set(jobs) == set(stages)  # the same commands, one job per stage
    params = repo_params_dict()
    cells = [(run, seed) for run in params["grid"] for seed in params["seeds"]]
    linear = {c: j for c, j in jobs.items() if j["rule"] == "linear"}
    assert set(linear) == {f"python -m momentum_ssl linear --run {r} --seed {s}"
                           for r, s in cells}
    for command, job in linear.items():
        stage = stages[command]
        assert stage["name"].split(":")[-1].startswith("linear@")
        assert job["inputs"] == stage["inputs"] and job["outputs"] == stage["outputs"]
        assert "../../params/recipes/lin.yaml" in job["inputs"]  # recipes.linear's values
        assert any(p.endswith("/model.pt") for p in job["inputs"])
    assert {out for j in linear.values() for out in j["outputs"]} == {
        f"results/linear/{r}/s{s}.json" for r, s in cells}
    report = next(j for j in jobs.values() if j["rule"] == "report")
    assert {f"results/linear/{r}/s{s}.json" for r, s in cells} <= report["inputs"]
    assert "results/linear" in stages["python -m momentum_ssl report"]["inputs"]
    pipeline = yaml.safe_load((study / "dvc.yaml").read_text())
    assert pipeline["stages"]["linear"]["params"] == ["linear", "recipes"]
