"""The SLURM profile on a real one-node SLURM cluster that these tests start (slurm_cluster.py):
the tiny profile end to end as SLURM jobs, GPUs through GRES, then a DVC remote round trip;
and the faults: a job past its time limit, a rerun that resumes, a cancelled run.

The cluster has no accounting database, so the profile's `squeue` status is what works here
(docs/CLUSTER.md, "SLURM"); the last test adds slurmdbd and runs with `sacct` status. Each
Snakemake starts polling SLURM after 1 s instead of the plugin's 40 s
(`--slurm-init-seconds-before-status-checks`), only to keep the tests short: the plugin still
adds 10 s to the wait after each poll that finds no job finished.

Time (2-core machine shared with other work, load 5 to 8): about 6.5 minutes, 260 CPU seconds
in all (cpuacct), most of it the tiny run; the time-limited run goes on beside it."""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY, repo_params_dict
from slurm_cluster import (ACCOUNTING_BINARIES, ACCOUNTING_PACKAGES, Cluster, Unavailable,
                           install, running_cluster)

BIN = Path(sys.executable).parent
STUDY_FILES = subprocess.run(["git", "ls-files", "studies"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
FAST_POLL = ["--seconds-between-status-checks", "1",
             "--slurm-init-seconds-before-status-checks", "1"]


@pytest.fixture(scope="module")
def cluster():
    """munged, slurmctld and slurmd on localhost; stopped by their PIDs after this module."""
    yield from running_cluster("momentum-ssl-slurm-")


def job_env(cluster: Cluster) -> dict:
    env = cluster.env({**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    env.pop("CUDA_VISIBLE_DEVICES", None)  # SLURM's GRES sets it for the GPU jobs
    # the devices plumbing/devices.py would claim by itself: seeing 7 in a log means it
    # ignored SLURM's
    env["MOMENTUM_SSL_GPUS"] = "7"
    env["PYTHONUNBUFFERED"] = "1"  # a job killed by SLURM still shows what it printed
    return env


def make_repo(path: Path, **changes) -> Path:
    """A Git + DVC repository of the sources with the tiny profile, one grid run (byol-full)
    and pretraining on device `auto` (so the GPU jobs ask plumbing/devices.py for their
    devices)."""
    shutil.copytree(REPO / "src", path / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(REPO / "workflow", path / "workflow")
    shutil.copytree(REPO / "params" / "recipes", path / "params" / "recipes")  # plan's input
    for name in ("Snakefile", "dvc.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(REPO / name, path / name)
    for name in STUDY_FILES:  # a study's pipeline without its outputs, as in a fresh clone
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, path / name)
    params = repo_params_dict()
    for name, values in TINY.items():
        params[name] = ({**params[name], **values} if isinstance(values, dict) and name != "grid"
                        else values)
    params["grid"] = {"byol-full": {"method": "byol", "scope": "full"}}
    params["pretrain"]["device"] = "auto"
    for section, values in changes.items():
        params[section].update(values)
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(path, "init", "-q")
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=path, check=True)
    subprocess.run([str(BIN / "dvc"), "config", "core.analytics", "false"], cwd=path, check=True)
    git(path, "add", "-A")
    git(path, "commit", "-qm", "sources")
    return path


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@localhost",
                           *args], cwd=path, check=True, capture_output=True,
                          text=True).stdout


def dvc(path: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "dvc"), *args], cwd=path, capture_output=True, text=True,
                          timeout=300, env=env)


class Run:
    """`snakemake --profile workflow/profiles/slurm` in the background, its output in a file
    (a pipe would fill up and stall it while a test waits on something else)."""

    def __init__(self, repo: Path, cluster: Cluster, *args: str):
        self.repo = repo
        self.log = repo.parent / f"snakemake-{len(list(repo.parent.glob('snakemake-*')))}.out"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "snakemake"), "--profile", "workflow/profiles/slurm", *FAST_POLL,
                 *args], cwd=repo, env=job_env(cluster), stdout=out,
                stderr=subprocess.STDOUT, text=True,
                # a SIGINT that the test process ignores (as an earlier test may leave it) is
                # ignored by its children too, and Python then installs no KeyboardInterrupt
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.start = time.monotonic()

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def uuid(self) -> str | None:
        found = re.search(r"SLURM run ID: (\S+)", self.output)
        return found and found.group(1)

    def wait(self, timeout: float = 900) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.seconds = time.monotonic() - self.start


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


TARGET = "results/runs/byol-full/s0/model.pt"


def pretrain_pids(repo: Path) -> list[int]:
    """The `python -m momentum_ssl pretrain` processes working in ``repo`` (a SLURM job's)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            if b"momentum_ssl" in cmd and b"pretrain" in cmd and \
                    Path(os.readlink(proc / "cwd")) == repo.resolve():
                pids.append(int(proc.name))
        except (OSError, ValueError):  # not a process, or one that just ended
            continue
    return pids


@pytest.fixture(scope="module")
def timeout_run(cluster, tmp_path_factory):
    """Pretraining with a one-minute SLURM time limit and more epochs than fit in it, started
    first and left to run beside the tiny run below. Once its first epoch's checkpoint exists,
    the training process is paused (SIGSTOP): it then waits for SLURM's time limit without
    taking a core from the tiny run. SLURM kills it all the same (SIGKILL reaches a stopped
    process), and the time spent waiting for the limit overlaps the tiny run."""
    repo = make_repo(tmp_path_factory.mktemp("timeout") / "repo", pretrain={"epochs": 1000})
    run = Run(repo, cluster, TARGET, "--set-resources", "pretrain:runtime=1")
    checkpoint = (repo / TARGET).with_name("checkpoint.pt")

    def pause_after_the_first_checkpoint():
        while run.proc.poll() is None and not checkpoint.exists():
            time.sleep(0.2)
        for pid in pretrain_pids(repo):
            os.kill(pid, signal.SIGSTOP)

    watcher = threading.Thread(target=pause_after_the_first_checkpoint, daemon=True)
    watcher.start()
    yield run
    if run.proc.poll() is None:
        run.proc.kill()
        run.proc.wait()


@pytest.fixture(scope="module")
def slurm_run(cluster, timeout_run, tmp_path_factory):
    """The tiny profile through `snakemake --profile workflow/profiles/slurm`."""
    run = Run(make_repo(tmp_path_factory.mktemp("slurm") / "repo"), cluster)
    assert run.wait() == 0, run.output
    return run


def test_the_cluster_is_one_idle_node_with_more_than_the_machine_has(cluster):
    node = cluster.run("scontrol", "show", "node", "localhost")
    assert "State=IDLE" in node and "Gres=gpu:4" in node and "CPUTot=64" in node
    # no accounting: sacct fails, the reason the profile asks squeue
    sacct = subprocess.run(["sacct"], env=cluster.env(), capture_output=True, text=True)
    assert sacct.returncode != 0 and "accounting storage is disabled" in sacct.stderr, sacct


def test_the_tiny_profile_runs_as_slurm_jobs_and_leaves_dvc_clean(cluster, slurm_run):
    repo, output = slurm_run.repo, slurm_run.output
    print(f"tiny profile through SLURM: {slurm_run.seconds:.0f} s")
    states = [state for _, name, state in cluster.jobs() if name == slurm_run.uuid()]
    # one SLURM job per Snakemake job: convert, plan, pretrain, 3 x evaluate (the run, raw
    # pixels, the random-init backbone), report; none of them was run locally
    assert len(states) == 7 and set(states) == {"COMPLETED"}, states
    assert "Falling back to 'sacct'" not in output
    assert (repo / "results" / "report.md").is_file()
    assert "up to date" in dvc(repo, "status", "dvc.yaml").stdout
    # the study's pipeline, whose outputs are missing, was left alone
    assert "dvc commit: 7 of 7 stages of dvc.yaml recorded" in output
    for name in STUDY_FILES:
        assert (repo / name).read_bytes() == (REPO / name).read_bytes(), name
    # the GPU jobs got a GRES GPU from SLURM and kept it; raw pixels asked for none
    for log in ("pretrain/byol-full/s0", "evaluate/byol-full/s0", "evaluate/random/s0"):
        text = (repo / "logs" / f"{log}.log").read_text()
        assert re.search(r"^GPUs [0-3] \(kept CUDA_VISIBLE_DEVICES\)$", text, re.M), (log, text)
    assert "GPUs" not in (repo / "logs" / "evaluate" / "raw.log").read_text()


def test_a_dvc_remote_round_trip_needs_no_rerun(slurm_run, tmp_path):
    """`dvc push` to a shared folder; a fresh clone pulls and has nothing to reproduce."""
    repo = slurm_run.repo
    remote = tmp_path / "shared-cache"
    # docs/CLUSTER.md's one command (with a local folder standing for a shared filesystem)
    assert dvc(repo, "remote", "add", "--default", "shared", str(remote)).returncode == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "results of the SLURM run")
    pushed = dvc(repo, "push", "dvc.yaml")  # the root pipeline's outputs (a study has its own)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    pulled = dvc(clone, "pull", "dvc.yaml")
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert "up to date" in dvc(clone, "status", "dvc.yaml").stdout
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    repro = dvc(clone, "repro", env=env)
    assert repro.returncode == 0 and "Running stage" not in repro.stdout, repro.stdout
    report = (clone / "results" / "report.md").read_bytes()
    assert report == (repo / "results" / "report.md").read_bytes()


def test_time_limit_kill_then_a_rerun_resumes_and_sigint_cancels_it(cluster, timeout_run):
    """SLURM kills the pretraining job at its time limit (TIMEOUT) and the run fails naming the
    job and its logs. A rerun resumes from the epoch checkpoint; SIGINT to that Snakemake
    cancels its SLURM job (scancel) and leaves no output that looks complete."""
    repo = timeout_run.repo
    assert timeout_run.wait(timeout=300) != 0
    print(f"time-limited run: {timeout_run.seconds:.0f} s")
    output = timeout_run.output
    job = re.search(r"SLURM-job '(\d+)' failed, SLURM status is: 'TIMEOUT'", output)
    assert job, output
    error = output[output.index("Error in rule pretrain:"):]
    assert "log: logs/pretrain/byol-full/s0.log, " in error
    assert f"/.snakemake/slurm_logs/rule_pretrain/byol-full_0/{job.group(1)}.log" in error
    model = repo / TARGET
    assert model.with_name("checkpoint.pt").is_file() and not model.exists()

    log = repo / "logs" / "pretrain" / "byol-full" / "s0.log"
    rerun = Run(repo, cluster, TARGET)
    wait_for(lambda: log.is_file() and "resuming after epoch" in log.read_text(), 180,
             "the rerun to resume from the checkpoint")
    assert "from scratch" not in log.read_text()
    job = next(i for i, name, _ in cluster.jobs() if name == rerun.uuid())
    # SIGINT, as Ctrl-C; again if Snakemake has not stopped within a minute (a first SIGINT that
    # lands outside its scheduling loop was seen to be lost on a quiet machine, as a user's
    # first Ctrl-C can be)
    for _ in range(3):
        rerun.proc.send_signal(signal.SIGINT)
        try:
            code = rerun.proc.wait(timeout=60)
            break
        except subprocess.TimeoutExpired:
            continue
    else:
        rerun.proc.kill()
        raise AssertionError("Snakemake did not stop after three SIGINTs:\n" + rerun.output)
    assert code != 0
    wait_for(lambda: dict((i, s) for i, _, s in cluster.jobs())[job] == "CANCELLED", 30,
             f"SLURM job {job} to be cancelled")
    assert not model.exists()
    # Snakemake marked the cancelled job's outputs incomplete: the next run redoes the job
    dry = subprocess.run([str(BIN / "snakemake"), "-n", "--rerun-incomplete", TARGET],
                         cwd=repo, env=job_env(cluster), capture_output=True, text=True)
    assert "rule pretrain:" in dry.stdout, dry.stdout + dry.stderr


def test_with_accounting_the_profile_runs_on_sacct_status(cluster, tmp_path):
    """The same cluster with slurmdbd (restarted with accounting; last, so the tests above see
    a cluster without it): `--slurm-status-command sacct` over the profile, on one stage (the
    whole DAG through SLURM is the squeue test above; only the status query differs)."""
    started = time.monotonic()
    try:
        install(ACCOUNTING_PACKAGES, ACCOUNTING_BINARIES)
    except Unavailable as e:
        pytest.skip(str(e))
    installed = time.monotonic()
    setup = cluster.enable_accounting()
    print(f"accounting: install {installed - started:.0f} s, set-up {setup:.0f} s")
    repo = make_repo(tmp_path / "repo")
    run = Run(repo, cluster, "--slurm-status-command", "sacct",
              "results/plan/byol-full/s0.yaml")
    assert run.wait(timeout=300) == 0, run.output
    # the Snakefile's onsuccess records the one stage that ran (the others have no outputs yet)
    assert "dvc commit: 1 of 7 stages of dvc.yaml recorded" in run.output
    assert "'sacct' unavailable" not in run.output and "Falling back" not in run.output
    assert (repo / "results" / "plan" / "byol-full" / "s0.yaml").is_file()
    jobs = cluster.run("sacct", "-X", "-n", "-P", "-o", "JobName,State", "--name", run.uuid())
    assert jobs.split() == [f"{run.uuid()}|COMPLETED"], jobs
