"""A paper-scale profile as a study, through both drivers: a scaled-down copy of
params/cifar10.yaml (its recipes file, LARS, ResNet-18 with the CIFAR stem, 32 px RGB images of
synthetic data in an image folder, five epochs of one step) becomes studies/cifar10/ with
`python -m momentum_ssl study cifar10`; `snakemake` there runs it and commits that folder's
dvc.yaml, after which `dvc repro` there has nothing to do (the same stages and outputs), and
`dvc exp run -S` and `dvc metrics diff` work there as at the root."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from conftest import REPO

BIN = Path(sys.executable).parent


def synthetic_cifar(root: Path, train: int = 2, test: int = 2) -> None:
    """CIFAR-10's shape: 10 classes of 32x32 RGB images, each class its own mean colour."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for label in range(10):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.normal(25 * label, 40, (32, 32, 3)).clip(0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")


def scaled_down(profile: dict, images: Path) -> dict:
    """The profile with its data swapped for the synthetic set and its run made a few steps
    long; its recipes, optimizer, model and momentum sections as they are."""
    profile = {**profile, "seeds": [0]}
    profile["data"] = {"dataset": "imagefolder", "root": str(images), "out_dir": "data/beton"}
    profile["loader"] = {**profile["loader"], "batch_size": 16, "num_workers": 1}
    # 5 epochs of one step: a recipe of the file warms up for 5 (UniGrad's), checked for all
    profile["pretrain"] = {**profile["pretrain"], "epochs": 5, "warmup_epochs": 0,
                           "device": "cpu", "log_every": 1, "monitor_train": 0,
                           "monitor_test": 0, "eval_every": 0}
    profile["compute"] = {**profile["compute"], "threads": 1}
    profile["probe"] = {**profile["probe"], "knn_k": [5], "logistic_c": [0.1], "max_iter": 20,
                        "val_fraction": 0.5}  # a validation image per class at least
    profile["transfer"] = {"targets": [{"dataset": "digits", "train_per_class": 4,
                                        "test_per_class": 2}]}
    profile["grid"] = {"mocov3-full": {"method": "mocov3", "scope": "full"}}
    return profile


def test_a_scaled_down_cifar10_study_runs_through_snakemake_then_dvc(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "src", repo / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(REPO / "workflow", repo / "workflow")
    shutil.copytree(REPO / "params", repo / "params")
    for name in ("dvc.yaml", "Snakefile", "params.yaml"):
        shutil.copy(REPO / name, repo / name)
    synthetic_cifar(tmp_path / "images")
    profile = yaml.safe_load((REPO / "params" / "cifar10.yaml").read_text())
    (repo / "params" / "cifar10.yaml").write_text(
        yaml.safe_dump(scaled_down(profile, tmp_path / "images"), sort_keys=False))
    # the profile's linear evaluation at its smallest: one epoch of two batches of the 20 train
    # images (no step: step_epochs must lie inside the epochs), so the stage costs little more
    # than its process's start (measured: docs/TESTING.md)
    recipes = repo / "params" / "recipes" / "cifar.yaml"
    data = yaml.safe_load(recipes.read_text())
    data["linear"] = {**data["linear"], "epochs": 1, "batch_size": 10, "step_epochs": []}
    recipes.write_text(yaml.safe_dump(data, sort_keys=False))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
           "PYTHONPATH": str(repo / "src")}

    def run(*args, cwd=repo, ok=True):
        done = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=600)
        assert not ok or done.returncode == 0, " ".join(args) + done.stdout + done.stderr
        return done

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run("git", "init", "-q")
    run(str(BIN / "dvc"), "init", "-q")
    run(str(BIN / "dvc"), "config", "core.analytics", "false")
    run(sys.executable, "-m", "momentum_ssl", "study", "cifar10")
    study = repo / "studies" / "cifar10"
    run(*git, "add", "-A")
    run(*git, "commit", "-qm", "study")
    done = run(str(BIN / "snakemake"), "--cores", "2", cwd=study)
    assert (study / "results" / "report.md").is_file() and (study / "dvc.lock").is_file()
    assert not (repo / "dvc.lock").exists()  # the study's pipeline was committed, not the root's
    assert "up to date" in run(str(BIN / "dvc"), "status", "dvc.yaml", cwd=study).stdout
    repro = run(str(BIN / "dvc"), "repro", cwd=study)
    assert "Running stage" not in repro.stdout, repro.stdout
    report = (study / "results" / "report.md").read_text()
    assert "| mocov3-full |" in report and "| linear (SGD) |" in report
    assert (study / "results" / "linear" / "mocov3-full" / "s0.json").is_file()
    run(*git, "add", "-A")
    run(*git, "commit", "-qm", "ran")
    # an experiment in the study: only the report reads `claims`
    exp = run(str(BIN / "dvc"), "exp", "run", "-S", "claims=[]", cwd=study)
    assert set(re.findall(r"Running stage '([^']+)'", exp.stdout)) == {"report"}, exp.stdout
    diff = run(str(BIN / "dvc"), "metrics", "diff", "--targets", "results/metrics.json",
               "--all", cwd=study)
    assert "mocov3-full.knn.mean" in diff.stdout, diff.stdout
