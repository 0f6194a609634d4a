"""Every input is declared: each stage of dvc.yaml runs on the tiny profile under a file-access
trace (tests/trace_inputs.py, an audit hook on ``open``), and every project file it reads must
be one of its declared dependencies (or inside a declared folder), its own output, or the params
file it declares params of. A cache that misses an input is the one defect a reproducible
workflow must not have."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY, repo_params_dict

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
TRACER = Path(__file__).with_name("trace_inputs.py")


def tiny_repo(root: Path) -> Path:
    """The repository's pipeline on the tiny profile, its recipes in a file of params/recipes/
    (as the paper-scale profiles have them), two seeds of two runs."""
    shutil.copytree(REPO / "src", root / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    params = repo_params_dict()
    for name, values in TINY.items():
        params[name] = ({**params[name], **values} if isinstance(values, dict) and name != "grid"
                        else values)
    params["grid"] = {"byol-full-res": {"method": "byol", "scope": "full", "residual": True},
                      "simclr-none": {"method": "simclr", "scope": "none"}}
    params["recipes"] = "params/recipes/tiny.yaml"
    (root / "params" / "recipes").mkdir(parents=True)
    (root / "params" / "recipes" / "tiny.yaml").write_text(
        "simclr: {source: test, pretrain: {lr: 0.2}}\n")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=root, env=ENV, check=True)
    return root


def declared(root: Path) -> list[dict]:
    """The stages of ``root``'s dvc.yaml in the order DVC runs them: command, dependency paths,
    params files, output paths (absolute)."""
    import networkx as nx
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        order = reversed(list(nx.topological_sort(repo.index.graph)))
        return [{"name": stage.name, "cmd": stage.cmd,
                 "deps": {Path(d.fs_path) for d in stage.deps
                          if not isinstance(d, ParamsDependency)},
                 "params": {Path(d.fs_path): set(d.params) for d in stage.deps
                            if isinstance(d, ParamsDependency)},
                 "outs": {Path(o.fs_path) for o in stage.outs}}
                for stage in order]


def inside(path: Path, folders) -> bool:
    return any(path == f or f in path.parents for f in folders)


# Read by every stage's load_params, which validates the whole params file: a stage depends
# on their values through its declared params, or through its plan (pretrain checks that the plan
# still matches: stages/plan.py check_plan). A stage that declares the param naming a file must
# declare the file itself (test below): DVC's params see the `recipes` key's path, not the file.
LOADER_FILES = ("params.yaml", "params/recipes/tiny.yaml", "src/momentum_ssl/config/claims.yaml")
NAMED_FILES = {"recipes": "params/recipes/tiny.yaml",
               "claims": "src/momentum_ssl/config/claims.yaml"}


def undeclared(root: Path, stage: dict, read: list[Path]) -> list[str]:
    """The project files ``stage`` read that it does not declare (code aside: a stage's code
    deps list the modules that compute its outputs, not every import)."""
    allowed = stage["deps"] | stage["outs"] | set(stage["params"])
    keys = set().union(*stage["params"].values()) if stage["params"] else set()
    loader = {root / f for f in LOADER_FILES} - {root / f for k, f in NAMED_FILES.items()
                                                 if k in keys}
    found = []
    for path in read:
        if root not in path.parents or inside(path, {root / ".dvc", root / ".dvcignore"}):
            continue  # outside the project, or DVC's own
        if path.suffix == ".py" or path.is_dir() or not path.exists():
            continue
        if inside(path, allowed) or path in loader:
            continue
        found.append(str(path.relative_to(root)))
    return sorted(set(found))


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """Each stage of the tiny repository run in DVC's order under the trace: {stage: reads}."""
    root = tiny_repo(tmp_path_factory.mktemp("repo"))
    env = {**ENV, "PYTHONPATH": str(root / "src")}  # the copy's code and package data
    stages, reads = declared(root), {}
    for stage in stages:
        log = root.parent / "read.log"
        args = stage["cmd"].split()
        assert args[:3] == ["python", "-m", "momentum_ssl"], stage["cmd"]
        done = subprocess.run([sys.executable, str(TRACER), str(log), *args[3:]], cwd=root,
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, stage["name"] + done.stdout + done.stderr
        reads[stage["name"]] = [Path(line) for line in log.read_text().splitlines()]
    return root, stages, reads


def test_every_file_a_stage_reads_is_declared(traced):
    root, stages, reads = traced
    problems = {stage["name"]: undeclared(root, stage, reads[stage["name"]])
                for stage in stages}
    assert any(root / "params/recipes/tiny.yaml" in r for r in reads.values())  # traced at all
    assert not any(problems.values()), "\n".join(f"{k}: {v}" for k, v in problems.items() if v)


def test_a_recipe_edit_reruns_exactly_the_plans_it_changes(traced):
    """DVC: every plan reruns (the folder changed), and only the plan whose bytes changed
    makes what follows it stale (`dvc status` after the plans ran). Snakemake: only that plan's params change (the plan rule's
    recipes input is ancient), so only it reruns."""
    from momentum_ssl.workflow import Grid

    root, _, _ = traced
    recipes = root / "params" / "recipes" / "tiny.yaml"

    def grid():
        return Grid.from_config(yaml.safe_load((root / "params.yaml").read_text()),
                                root / "params.yaml")

    before = grid()
    env = {**ENV, "PYTHONPATH": str(root / "src")}
    commit = subprocess.run([str(BIN / "dvc"), "commit", "-f", "-q"], cwd=root, env=env,
                            capture_output=True, text=True)
    assert commit.returncode == 0, commit.stdout + commit.stderr
    recipes.write_text("simclr: {source: test, pretrain: {lr: 0.25}}\n")
    after = grid()
    assert after.plan_hash("simclr-none", 0) != before.plan_hash("simclr-none", 0)
    assert after.plan_hash("byol-full-res", 0) == before.plan_hash("byol-full-res", 0)
    plans = ["plan@simclr-none-0", "plan@byol-full-res-0"]
    status = subprocess.run([str(BIN / "dvc"), "status"], cwd=root, env=env,
                            capture_output=True, text=True)
    changed = set(re.findall(r"^(\S+):$", status.stdout, re.M))
    assert changed == set(plans), status.stdout  # both: the folder they depend on changed
    done = subprocess.run([str(BIN / "dvc"), "repro", *plans], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    status = subprocess.run([str(BIN / "dvc"), "status"], cwd=root, env=env,
                            capture_output=True, text=True)
    changed = set(re.findall(r"^(\S+):$", status.stdout, re.M))
    assert changed == {"pretrain@simclr-none-0", "evaluate@simclr-none-0"}, status.stdout


def test_the_plan_stage_refuses_a_recipes_file_no_pipeline_tracks(tmp_path, monkeypatch, capsys):
    from momentum_ssl.cli import main

    params = repo_params_dict()
    params["recipes"] = "mine.yaml"
    (tmp_path / "mine.yaml").write_text("simclr: {source: mine}\n")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "--run", "simclr-full", "--seed", "0"]) == 2
    err = capsys.readouterr().err
    assert "is outside params/recipes/" in err and "move it into params/recipes/" in err


def test_evaluate_epochs_declares_every_file_it_reads(tmp_path):
    """The kept checkpoints' stage of a study's dvc.yaml (workflow.with_kept_checkpoints),
    traced on the tiny repository after its run trained with keep_every."""
    from momentum_ssl.workflow import with_kept_checkpoints

    root = tiny_repo(tmp_path / "repo")
    pipeline = with_kept_checkpoints(yaml.safe_load((root / "dvc.yaml").read_text()))
    (root / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["pretrain"]["keep_every"] = 1
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**ENV, "PYTHONPATH": str(root / "src")}
    stage = next(s for s in declared(root) if s["name"] == "evaluate-epochs@simclr-none-0")
    for args in (["convert"], ["plan", "--run", "simclr-none", "--seed", "0"],
                 ["pretrain", "--run", "simclr-none", "--seed", "0"]):
        done = subprocess.run([sys.executable, "-m", "momentum_ssl", *args], cwd=root, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    log = tmp_path / "read.log"
    done = subprocess.run([sys.executable, str(TRACER), str(log),
                           *stage["cmd"].split()[3:]], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    read = [Path(line) for line in log.read_text().splitlines()]
    assert any(p.name == "e0002.pt" for p in read)  # traced at all
    assert undeclared(root, stage, read) == []
