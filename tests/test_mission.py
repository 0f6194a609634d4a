"""The mission's four commands as the README gives them, in a full copy of the repository (every
tracked file, the claims study's pipeline included) with the tiny profile as params.yaml:
`snakemake --cores all --resources gpu=4`, `dvc repro`, `dvc exp run -S residual.weight=1.0`,
`dvc metrics diff`, then `snakemake -n` again. The claims study's stages are there without their
outputs, except one plan that its own `dvc repro` made: the root commands must neither fail on
the study nor touch it."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO, TINY, repo_params_dict

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
STUDY = Path("studies/claims")


def run(repo: Path, *command: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / command[0]), *command[1:]], cwd=repo, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args],
                   cwd=repo, check=True, capture_output=True)


def full_copy(dest: Path) -> Path:
    """Every file Git tracks, as the working tree has it, in a new Git repository; not the root
    dvc.lock, which a user who followed the README (`make run`, then `git commit dvc.lock`) has
    committed for their own params: this copy gets the tiny ones, and its lock is its own."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if name == "dvc.lock":
            continue
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    params = repo_params_dict()
    for name, values in TINY.items():
        params[name] = ({**params[name], **values} if isinstance(values, dict) and name != "grid"
                        else values)
    params["grid"] = {"simclr-full": {"method": "simclr", "scope": "full"},
                      "simclr-full-res": {"method": "simclr", "scope": "full",
                                          "residual": True}}
    params["residual"]["weight"] = 0.5
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "a clone")
    run(dest, "dvc", "config", "core.analytics", "false")
    return dest


def test_the_four_commands_in_a_full_clone(tmp_path):
    repo = full_copy(tmp_path / "repo")
    study_plan = run(repo / STUDY, "dvc", "repro", "--single-item", "plan@simclr-none-0")
    assert study_plan.returncode == 0, study_plan.stdout + study_plan.stderr
    study_lock = (repo / STUDY / "dvc.lock").read_bytes()

    # 1. snakemake: every job, then its stages recorded in the root dvc.lock only
    done = run(repo, "snakemake", "--cores", "all", "--resources", "gpu=4")
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert "stages of dvc.yaml recorded in dvc.lock" in done.stdout + done.stderr
    status = run(repo, "dvc", "status", "dvc.yaml")
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    again = run(repo, "snakemake", "-n", "--cores", "all", "--resources", "gpu=4")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, \
        again.stdout

    # 2. dvc repro: nothing to run
    repro = run(repo, "dvc", "repro")
    assert repro.returncode == 0 and "Running stage" not in repro.stdout, repro.stdout
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "results")

    # 3. dvc exp run -S: the plans rerun, only the residual run retrains
    exp = run(repo, "dvc", "exp", "run", "-S", "residual.weight=1.0")
    assert exp.returncode == 0, exp.stdout + exp.stderr
    ran = {line.split("'")[1] for line in exp.stdout.splitlines()
           if line.startswith("Running stage")}
    assert {"pretrain@simclr-full-res-0", "evaluate@simclr-full-res-0", "report"} <= ran
    assert not {"pretrain@simclr-full-0", "evaluate@simclr-full-0", "convert"} & ran, ran

    # 4. dvc metrics diff: the residual run's rows changed, the other run's did not
    diff = run(repo, "dvc", "metrics", "diff")
    assert diff.returncode == 0, diff.stderr
    rows = [line.split()[1] for line in diff.stdout.splitlines()
            if line.startswith("results/metrics.json")]
    assert any(r.startswith("simclr-full-res.knn.") for r in rows), diff.stdout
    assert not any(r.startswith("simclr-full.") for r in rows), diff.stdout

    # 5. snakemake takes over what DVC computed: nothing trains or evaluates again. Only the
    # changed cell's plan job is listed (Snakemake's own record of its params predates DVC's
    # experiment; the job rewrites nothing, the plan already has those bytes:
    # docs/REPRODUCIBILITY.md, "The two drivers trust each other")
    last = run(repo, "snakemake", "-n", "--cores", "all", "--resources", "gpu=4")
    assert last.returncode == 0, last.stdout + last.stderr
    jobs = re.search(r"Job stats:\n(.*?)\n\n", last.stdout, re.S)
    planned = {} if jobs is None else dict(
        line.split() for line in jobs.group(1).splitlines()[2:])
    assert set(planned) <= {"plan", "total"} and planned.get("plan", "0") in ("0", "1"), \
        last.stdout
    replanned = run(repo, "snakemake", "--cores", "all", "--resources", "gpu=4")
    assert replanned.returncode == 0, replanned.stdout + replanned.stderr[-4000:]
    final = run(repo, "snakemake", "-n", "--cores", "all", "--resources", "gpu=4")
    assert "Nothing to be done" in final.stdout + final.stderr, final.stdout
    status = run(repo, "dvc", "status", "dvc.yaml")
    assert "Data and pipelines are up to date" in status.stdout, status.stdout

    # the study was left alone: its lock and its one output as they were
    assert (repo / STUDY / "dvc.lock").read_bytes() == study_lock
    # nothing trained there (`dvc exp run` checks out every pipeline's outputs that the cache
    # holds: a study's provenance.json whose bytes a root run also wrote comes back, as its
    # lock records it)
    assert (repo / STUDY / "results" / "plan" / "simclr-none" / "s0.yaml").is_file()
    assert not list((repo / STUDY / "results").rglob("model.pt"))
    assert not (repo / STUDY / "logs").exists()


def test_a_run_of_one_target_records_what_it_made(tmp_path):
    """`snakemake <one plan>`: onsuccess records that stage, names the ones not run, exits 0."""
    repo = full_copy(tmp_path / "repo")
    done = run(repo, "snakemake", "--cores", "1", "results/plan/simclr-full/s0.yaml")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "dvc commit: 1 of 10 stages of dvc.yaml recorded in dvc.lock (9 not run yet" in output
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert list(lock["stages"]) == ["plan@simclr-full-0"]
