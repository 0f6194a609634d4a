"""The DVC pipeline on the tiny profile: a full `dvc repro`, then a params change reruns exactly
the stages that read it, and a new seed runs only that seed's stages."""

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY, repo_params_dict


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=900)


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    shutil.copytree(REPO / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__",
                                                                             "*.egg-info"))
    shutil.copytree(REPO / "workflow", repo / "workflow")
    shutil.copytree(REPO / "params" / "recipes", repo / "params" / "recipes")  # plan's input
    for name in ("dvc.yaml", "Snakefile"):
        shutil.copy(REPO / name, repo / name)
    params = copy.deepcopy(repo_params_dict())
    for name, values in TINY.items():
        if isinstance(values, dict) and name != "grid":
            params[name].update(values)
        else:
            params[name] = values
    params["grid"] = {"byol-full": {"method": "byol", "scope": "full"},
                      "byol-full-res": {"method": "byol", "scope": "full", "residual": True}}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert dvc(repo, "init", "--no-scm").returncode == 0
    dvc(repo, "config", "core.analytics", "false")
    done = dvc(repo, "repro")
    assert done.returncode == 0, done.stdout + done.stderr
    return repo, done.stdout


def test_repro_runs_every_stage_and_ends_with_the_report(repo):
    root, output = repo
    assert ran(output) == {
        "convert", "plan@byol-full-0", "plan@byol-full-res-0", "pretrain@byol-full-0",
        "pretrain@byol-full-res-0", "evaluate@byol-full-0", "evaluate@byol-full-res-0",
        "evaluate-raw", "evaluate-random@0", "report"}
    assert (root / "results" / "report.md").is_file()
    assert "up to date" in dvc(root, "status").stdout


def flatten(data: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[prefix + key] = value
    return out


def test_the_declared_metrics_are_the_headline_numbers_only(repo):
    """`dvc metrics show` (and so `dvc metrics diff`) reads results/metrics.json alone: per run
    and baseline the student's kNN, logistic and transfer, per tested claim its effect; the
    per-seed values, hashes and flags stay in outputs that are not metrics."""
    from momentum_ssl.analysis.headline import headline

    root, _ = repo
    shown = json.loads(dvc(root, "metrics", "show", "--json").stdout)
    files = next(iter(shown.values()))["data"]
    assert set(files) == {"results/metrics.json"}
    values = flatten(files["results/metrics.json"]["data"])
    summary = json.loads((root / "results" / "summary.json").read_text())
    assert values == flatten(headline(summary))
    numbers = {k: v for k, v in values.items() if not k.startswith("where.")}
    runs = {key.split(".")[0] for key in numbers if not key.startswith("claims.")}
    assert runs == {"byol-full", "byol-full-res", "raw", "random"}
    # one seed: a mean and no interval; 3 headline metrics a run (and a grid run's gain over
    # random-init) and a few claims' effects
    assert all(key.endswith(".mean") for key in numbers)
    assert 3 * len(runs) <= len([k for k in numbers if not k.startswith("claims.")]) <= 4 * len(
        runs)
    # where the runs ran, so that a diff between two machines shows it
    assert values["where.portable"] is True and values["where.machines"] == 1
    # one seed: no claim row is tested (3 seeds at least), so none has an effect to compare
    assert not [k for k in values if k.startswith("claims.")]
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    cached = {out["path"] for stage in ("report", "pretrain@byol-full-0")
              for out in lock[stage]["outs"]}
    assert {"results/summary.json", "results/runs/byol-full/s0/dvclive/metrics.json"} <= cached


def test_a_residual_weight_change_reruns_only_the_residual_run(repo):
    root, _ = repo
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["residual"]["weight"] = 0.5
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    done = dvc(root, "repro")
    assert done.returncode == 0, done.stdout + done.stderr
    # both plans read params.yaml, but only the residual run's plan changes
    assert ran(done.stdout) == {"plan@byol-full-0", "plan@byol-full-res-0",
                                "pretrain@byol-full-res-0", "evaluate@byol-full-res-0",
                                "report"}
    assert "up to date" in dvc(root, "status").stdout


def test_snakemake_reuses_what_dvc_ran(repo):
    """After `dvc repro` and a params change that DVC reran (the plan stages of every run ran,
    only one plan's bytes changed), Snakemake finds nothing to do: its rules read the plans as
    ancient() inputs, whose mtime (new: DVC relinks them from its cache) is not compared."""
    root, _ = repo
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-n", "--cores", "2"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Nothing to be done" in done.stdout + done.stderr, done.stdout


def test_adding_a_seed_runs_only_that_seeds_stages(repo):
    root, _ = repo
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["seeds"] = [0, 1]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    done = dvc(root, "repro")
    assert done.returncode == 0, done.stdout + done.stderr
    new = {f"{stage}@{run}-1" for stage in ("plan", "pretrain", "evaluate")
           for run in ("byol-full", "byol-full-res")}
    new |= {"evaluate-random@1"}
    assert ran(done.stdout) == new | {"report"}
    summary = json.loads((root / "results" / "summary.json").read_text())
    assert summary["runs"]["byol-full"]["knn_student"]["n"] == 2
    over_random = summary["learning"]["byol-full-res"]["knn_over_random"]
    assert set(over_random["seeds"]) == {"0", "1"}  # the new seed joins the learning guard
    residual = next(c for c in summary["claims"] if c["a"] == "byol-full-res"
                    and c["metric"] == "logistic_student")
    assert residual["b"] == "byol-full"
    if residual["status"] != "not testable":  # both runs learned: judged on both seeds
        assert set(residual["difference"]["seeds"]) == {"0", "1"}
    assert "up to date" in dvc(root, "status").stdout


def test_a_tiny_dino_vit_run_with_local_crops_goes_through_the_dag(tmp_path):
    """DINO on a ViT-Tiny (4 px patches of the digits at 16 px), two 8 px local crops, full EMA
    with residual momentum: convert, plan, pretrain, evaluate (features of student and teacher,
    probes, transfer) and the report, under `dvc repro`."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__",
                                                                             "*.egg-info"))
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    shutil.copytree(REPO / "params" / "recipes", repo / "params" / "recipes")  # plan's input
    params = copy.deepcopy(repo_params_dict())
    for name, values in TINY.items():
        if isinstance(values, dict) and name != "grid":
            params[name].update(values)
        else:
            params[name] = values
    params["augment"]["size"] = 16  # 4x4 patches of 4 px; the 8 px local crops have 2x2
    params["model"].update({"backbone": "vit_tiny", "patch_size": 4})
    params["pretrain"].update({"epochs": 1, "optimizer": "adamw", "lr": 0.001, "min_lr": 1e-6,
                               "weight_decay": 0.04, "weight_decay_end": 0.4,
                               "clip_grad": 3.0})
    params["model"]["drop_path"] = 0.1  # DINO's stochastic depth
    params["methods"]["dino"] = {"proj_hidden": 16, "proj_bottleneck": 8, "proj_out": 32}
    params["recipes"] = {"dino": {"source": "test", "augment": {"local_crops": 2,
                                                                 "local_size": 8}}}
    params["grid"] = {"dino-full-res": {"method": "dino", "scope": "full", "residual": True}}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert dvc(repo, "init", "--no-scm").returncode == 0
    dvc(repo, "config", "core.analytics", "false")
    done = dvc(repo, "repro")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {"pretrain@dino-full-res-0", "evaluate@dino-full-res-0", "report"} <= ran(done.stdout)
    run = repo / "results" / "runs" / "dino-full-res" / "s0"
    metrics = json.loads((run / "dvclive" / "metrics.json").read_text())
    assert {"loss", "teacher_temperature", "gap_projector", "residual",
            "weight_decay"} <= set(metrics["train"])
    assert 0.04 <= metrics["train"]["weight_decay"] <= 0.4  # on its cosine, logged
    assert set(metrics["stability"]) == {"stem", *(f"stage{i}" for i in range(1, 13)),
                                         "projector"}
    saved = yaml.safe_load((run / "params.yaml").read_text())
    assert saved["augment"]["local_crops"] == 2 and saved["model"]["backbone"] == "vit_tiny"
    assert saved["model"]["drop_path"] == 0.1 and saved["pretrain"]["weight_decay_end"] == 0.4
    summary = json.loads((repo / "results" / "summary.json").read_text())
    assert "dino-full-res" in summary["runs"]
    assert "dino-full-res" in (repo / "results" / "report.md").read_text()
