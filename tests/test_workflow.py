"""Snakemake and DVC as one graph: the same stages, commands, inputs and outputs, read from
`snakemake --forceall -n -p` and from DVC's own stage list; lint; the SLURM profile."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}


def snakemake(*args, cwd=REPO, timeout=300):
    return subprocess.run([str(BIN / "snakemake"), *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def snakemake_jobs(cwd=REPO) -> dict[str, dict]:
    """{command without its log redirect: {rule, inputs, outputs}} from a forced dry run."""
    done = snakemake("--forceall", "-n", "-p", cwd=cwd)
    assert done.returncode == 0, done.stderr
    jobs = {}
    for block in re.split(r"\n\[[^\]]+\]\n", done.stdout)[1:]:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        if rule in ("all", "study"):  # the targets (a study's Snakefile has its own)
            continue
        fields = dict(re.findall(r"^    (input|output): (.*)$", block, re.M))
        command = re.search(r"^Shell command: (.*)$", block, re.M).group(1)
        command = re.sub(r" > \S+ 2>&1$", "", command)
        jobs[command] = {"rule": rule,
                         "inputs": set(fields.get("input", "").split(", ")) - {""},
                         "outputs": set(fields["output"].split(", "))}
    return jobs


def dvc_stages(cwd=REPO) -> dict[str, dict]:
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(cwd)) as repo:
        return {stage.cmd: {"name": stage.addressing,
                            "inputs": {str(d.def_path) for d in stage.deps
                                       if not isinstance(d, ParamsDependency)},
                            "outputs": {str(o.def_path) for o in stage.outs}}
                for stage in repo.index.stages  # studies/ hold pipelines of their own
                if Path(stage.path).resolve().parent == Path(cwd).resolve()}


def same_jobs_in_both_drivers(folder):
    """DVC (initialised in ``folder``) and Snakemake plan the same jobs there, with the same
    outputs and, but for the report's (folders against files: as for the root), inputs."""
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=folder, env=ENV,
                   check=True)
    jobs, stages = snakemake_jobs(folder), dvc_stages(folder)
    assert set(jobs) == set(stages)
    for command, stage in stages.items():
        assert jobs[command]["outputs"] == stage["outputs"], command
        if jobs[command]["rule"] != "report":
            assert jobs[command]["inputs"] == stage["inputs"], command
    return jobs, stages


@pytest.mark.parametrize("where", [".", "studies/claims", "studies/momentum_sweep"])
def test_snakemake_and_dvc_run_the_same_stages_on_the_same_files(where):
    """At the root, and in a study: `snakemake` and `dvc repro` run from its folder."""
    cwd = REPO / where
    src = "src/" if where == "." else "../../src/"
    jobs, stages = snakemake_jobs(cwd), dvc_stages(cwd)
    assert set(jobs) == set(stages)  # the same commands, one job per stage
    for command, stage in stages.items():
        job = jobs[command]
        assert job["outputs"] == stage["outputs"], command
        if job["rule"] == "report":  # DVC depends on the folders, Snakemake on their files
            code = {p for p in job["inputs"] if p.startswith(src)}
            assert code == {p for p in stage["inputs"] if p.startswith(src)}
            folders = stage["inputs"] - code
            assert all(any(p.startswith(f + "/") for f in folders) for p in job["inputs"] - code)
            assert all(any(p.startswith(f + "/") for p in job["inputs"]) for f in folders)
        else:
            assert job["inputs"] == stage["inputs"], command
    assert {"convert", "plan", "pretrain", "evaluate", "evaluate_raw", "evaluate_random",
            "report"} == {job["rule"] for job in jobs.values()}


def test_variants_and_a_sweep_get_the_same_stages_under_both_drivers(tmp_path):
    """Variant names hold '+' and '.': DVC's matrix stage names and Snakemake's wildcards
    (escaped in its constraint) take them alike. A sweep is written out (as a study's
    params.yaml has it); in the compact form it stops both drivers in one line."""
    import shutil

    import yaml

    from momentum_ssl.config.loader import expand_sweeps

    for name in ("Snakefile", "dvc.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "workflow", tmp_path / "workflow")
    for name in ("src", "params"):  # inputs that must exist for a dry run
        (tmp_path / name).symlink_to(REPO / name)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["grid"] = {**expand_sweeps({"simclr-full": {"method": "simclr", "scope": "full",
                                                      "sweep": {"tau": [0.99, 0.996]}}}),
                      "simclr-full-res+w0.5": {"method": "simclr", "scope": "full",
                                               "residual": {"weight": 0.5}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    jobs, stages = same_jobs_in_both_drivers(tmp_path)
    names = {stage["name"].rsplit(":", 1)[-1] for stage in stages.values()}
    assert {"pretrain@simclr-full+tau0.99-0", "pretrain@simclr-full+tau0.996-2",
            "plan@simclr-full-res+w0.5-1"} <= names
    assert "results/runs/simclr-full+tau0.996/s2/model.pt" in {
        out for job in jobs.values() for out in job["outputs"]}
    params["grid"] = {"simclr-full": {"method": "simclr", "scope": "full",
                                      "sweep": {"tau": [0.99, 0.996]}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = snakemake("-n", cwd=tmp_path)
    assert done.returncode != 0 and "a sweep cannot expand here" in done.stdout + done.stderr


@pytest.mark.parametrize("where", [".", "studies/claims"])
def test_lint_is_clean(where):
    done = snakemake("--lint", cwd=REPO / where)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "good condition" in output and "Lints for" not in output, \
        output


def test_slurm_profile_dry_run_maps_gpu_jobs():
    done = snakemake("-n", "--forceall", "--profile", "workflow/profiles/slurm")
    assert done.returncode == 0, done.stdout + done.stderr
    pretrain = re.search(r"rule pretrain:.*?resources: (.*?)\n", done.stdout, re.S).group(1)
    assert "gpu=1" in pretrain and "slurm_partition=gpu" in pretrain and "runtime=1440" in pretrain
    # a run on one node asks for none of a run across nodes' resources (plumbing/launch.py)
    assert "nodes=" not in pretrain and "mpi=" not in pretrain and "tasks" not in pretrain


@pytest.mark.parametrize("change, message", [
    ("grid: {swav-full: {method: swav, scope: full}}",
     "grid.swav-full.method: 'swav' is not allowed"),
    ("grid: {byol-sideways: {method: byol, scope: sideways}}",
     "grid.byol-sideways.scope: 'sideways' is not allowed"),
])
def test_a_bad_grid_cell_stops_snakemake_with_the_key(tmp_path, change, message):
    import shutil

    import yaml

    for name in ("Snakefile", "dvc.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "workflow", tmp_path / "workflow")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params.update(yaml.safe_load(change))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = snakemake("-n", cwd=tmp_path)
    assert done.returncode != 0
    assert message in done.stdout + done.stderr


def test_config_overrides_are_refused_since_the_stages_read_params_yaml():
    done = snakemake("-n", "--config", "seed=3")
    assert done.returncode != 0
    assert "differs from params.yaml in seed" in done.stdout + done.stderr


def test_a_snakemake_run_leaves_dvc_with_nothing_to_do(tmp_path):
    """The tiny grid through Snakemake (2 jobs at once); its onsuccess `dvc commit` records the
    outputs, so `dvc status` is clean and `dvc repro` runs nothing. A second Snakemake started
    on the same folder meanwhile is refused by Snakemake's lock."""
    import shutil
    import time

    import yaml

    from conftest import TINY, repo_params_dict

    shutil.copytree(REPO / "src", tmp_path / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(REPO / "workflow", tmp_path / "workflow")
    shutil.copytree(REPO / "params" / "recipes", tmp_path / "params" / "recipes")  # plan's input
    for name in ("Snakefile", "dvc.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    params = repo_params_dict()
    for name, values in TINY.items():
        params[name] = ({**params[name], **values} if isinstance(values, dict) and name != "grid"
                        else values)
    params["grid"] = {"byol-full": {"method": "byol", "scope": "full"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc = [str(BIN / "dvc")]
    subprocess.run(dvc + ["init", "--no-scm", "-q"], cwd=tmp_path, check=True, env=ENV)
    first = subprocess.Popen([str(BIN / "snakemake"), "--cores", "2"], cwd=tmp_path, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(15)  # the first run holds the lock by now (it runs for a minute or more)
    # --rerun-incomplete (as in the profiles) gets past the "incomplete files" check, which
    # the first run's running job trips, to the lock itself
    second = snakemake("--cores", "1", "--rerun-incomplete", cwd=tmp_path)
    assert second.returncode != 0 and "cannot be locked" in second.stdout + second.stderr
    output, _ = first.communicate(timeout=900)
    assert first.returncode == 0, output
    assert (tmp_path / "results" / "report.md").is_file()
    status = subprocess.run(dvc + ["status"], cwd=tmp_path, env=ENV, capture_output=True,
                            text=True)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    repro = subprocess.run(dvc + ["repro"], cwd=tmp_path, env=ENV, capture_output=True,
                           text=True)
    assert repro.returncode == 0 and "Running stage" not in repro.stdout, repro.stdout
    # Snakemake's HTML report carries the report stage's table and plots
    html = snakemake("--report", "report.html", cwd=tmp_path)
    assert html.returncode == 0, html.stdout + html.stderr
    text = (tmp_path / "report.html").read_text()
    assert "report.md" in text and "accuracy.png" in text and "stability.png" in text


def test_kept_checkpoints_add_the_same_stages_under_both_drivers(tmp_path):
    """pretrain.keep_every: pretrain's epochs/ folder, evaluate-epochs per run and seed, and
    the report reading its files, in the Snakefile and in the dvc.yaml a study generates
    (workflow.with_kept_checkpoints); the root's graph (keep_every off) has none of them."""
    import shutil

    import yaml

    from momentum_ssl.workflow import with_kept_checkpoints

    shutil.copy(REPO / "Snakefile", tmp_path / "Snakefile")
    shutil.copytree(REPO / "workflow", tmp_path / "workflow")
    for name in ("src", "params"):  # inputs that must exist for a dry run
        (tmp_path / name).symlink_to(REPO / name)
    root = yaml.safe_load((REPO / "dvc.yaml").read_text())
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(with_kept_checkpoints(root),
                                                      sort_keys=False))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["pretrain"]["keep_every"] = 1
    params["grid"] = {"simclr-full": {"method": "simclr", "scope": "full"}}
    params["seeds"] = [0, 1]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    jobs, stages = same_jobs_in_both_drivers(tmp_path)
    kept = {c: j for c, j in jobs.items() if j["rule"] == "evaluate_epochs"}
    assert set(kept) == {f"python -m momentum_ssl evaluate-epochs --run simclr-full --seed {s}"
                         for s in (0, 1)}
    assert "results/runs/simclr-full/s1/epochs" in kept[
        "python -m momentum_ssl evaluate-epochs --run simclr-full --seed 1"]["inputs"]
    report = next(j for j in jobs.values() if j["rule"] == "report")
    assert {"results/epochs/simclr-full/s0.json", "results/epochs/simclr-full/s1.json"} <= \
        report["inputs"]
    assert "results/epochs" in next(s for c, s in stages.items()
                                    if c == "python -m momentum_ssl report")["inputs"]
