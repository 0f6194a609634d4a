"""A paper-scale profile as a study, through both drivers: a scaled-down copy of
params/cifar10.yaml (its recipes file, LARS, ResNet-18 with the CIFAR stem, 32 px views of
synthetic JPEGs of varying, non-square sizes in an image folder, so that training crops go
through the whole-image crop decoder, five epochs of one step) becomes studies/cifar10/ with
`python -m momentum_ssl study cifar10`; `snakemake` there runs it and commits that folder's
dvc.yaml, after which `dvc repro` there has nothing to do (the same stages and outputs), and
`dvc exp run -S` and `dvc metrics diff` work there as at the root."""

import json
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


SIZES = [(36, 48), (48, 40), (40, 56)]  # (height, width): varying and non-square, as photos


def synthetic_photos(root: Path, train: int = 2, test: int = 2) -> None:
    """CIFAR-10's classes at photos' shapes: 10 classes of RGB JPEGs of the sizes above, each
    class its own mean colour."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for label in range(10):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                shape = (*SIZES[(label + i) % len(SIZES)], 3)
                pixels = rng.normal(25 * label, 40, shape).clip(0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)


def scaled_down(profile: dict, images: Path) -> dict:
    """The profile with its data swapped for the synthetic set and its run made a few steps
    long; its recipes, optimizer, model and momentum sections as they are."""
    profile = {**profile, "seeds": [0]}
    profile["data"] = {"dataset": "imagefolder", "root": str(images), "out_dir": "data/beton",
                       "jpeg_above": 0}  # stored as JPEG: the decoder decodes them
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
    synthetic_photos(tmp_path / "images")
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
    meta, = (json.loads(path.read_text()) for path in repo.rglob("meta.json")
             if path.parent.name == "imagefolder")
    assert meta["splits"]["train"]["image_shape"] is None  # sizes vary: the crop decoder ran
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


def test_kept_checkpoints_run_through_snakemake_then_dvc(tmp_path):
    """pretrain.keep_every on the tiny profile as a study, two seeds: Snakemake trains, keeps
    and scores each kept checkpoint (evaluate-epochs) and the report plots kNN against epochs;
    DVC then finds the study's dvc.yaml up to date (the same stages and outputs), and its own
    rerun of an evaluate-epochs stage writes the same bytes."""
    from conftest import TINY, repo_params_dict

    repo = tmp_path / "repo"
    shutil.copytree(REPO / "src", repo / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(REPO / "workflow", repo / "workflow")
    (repo / "params").mkdir()
    for name in ("dvc.yaml", "Snakefile", "params.yaml"):
        shutil.copy(REPO / name, repo / name)
    profile = repo_params_dict()
    for name, values in TINY.items():
        profile[name] = ({**profile[name], **values} if isinstance(values, dict)
                         and name != "grid" else values)
    profile["pretrain"].update(keep_every=1, monitor_train=0, monitor_test=0, eval_every=0)
    profile["compute"]["threads"] = 1
    profile["seeds"] = [0, 1]
    profile["grid"] = {"byol-full": {"method": "byol", "scope": "full"}}
    (repo / "params" / "kept.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
           "PYTHONPATH": str(repo / "src")}

    def run(*args, cwd=repo):
        done = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, " ".join(args) + done.stdout + done.stderr
        return done

    run("git", "init", "-q")
    run(str(BIN / "dvc"), "init", "-q")
    run(sys.executable, "-m", "momentum_ssl", "study", "kept")
    study = repo / "studies" / "kept"
    assert "evaluate-epochs" in (study / "dvc.yaml").read_text()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run(*git, "add", "-A")
    run(*git, "commit", "-qm", "study")  # DVCLive reads the revision
    run(str(BIN / "snakemake"), "--cores", "2", cwd=study)
    results = study / "results"
    for seed in (0, 1):
        kept = results / "runs" / "byol-full" / f"s{seed}" / "epochs"
        assert sorted(p.name for p in kept.glob("e*.pt")) == ["e0001.pt", "e0002.pt"]
    scores = results / "epochs" / "byol-full" / "s1.json"
    assert [r["epoch"] for r in json.loads(scores.read_text())["epochs"]] == [1, 2]
    report = (results / "report.md").read_text()
    assert "## Accuracy against epochs" in report and "plots/epochs.png" in report
    assert re.search(r"^\| 2 \| \d+\.\d\d ± \d+\.\d\d \|$", report, re.M), report
    assert (results / "plots" / "epochs.png").stat().st_size > 0
    assert "up to date" in run(str(BIN / "dvc"), "status", "dvc.yaml", cwd=study).stdout
    before = scores.read_bytes()
    run(str(BIN / "dvc"), "repro", "--force", "--single-item", "evaluate-epochs@byol-full-1",
        cwd=study)
    assert scores.read_bytes() == before
