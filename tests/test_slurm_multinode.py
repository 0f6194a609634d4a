"""A run across nodes on a real SLURM: two slurmd on this machine (slurm_cluster.py,
``nodes=2``), the tiny profile's byol-full with ``gpus: 2`` and ``cluster.gpus_per_node: 1``,
through ``snakemake --profile workflow/profiles/slurm``: the launch path a GPU cluster takes.

What it proves: the rule asks SLURM for two nodes, one task and one GPU each (the executor
plugin's MPI path, so the job step does not wrap the stage in ``srun -n1``); the stage finds its
nodes with ``scontrol``, starts one torchrun agent a node with ``srun``; the agents meet at
the first node's address in a c10d rendezvous named by the job id; the two processes (one a
node, each holding the GRES GPU SLURM gave its node) train the run together over gloo, and rank
0 writes it. What it cannot: both nodes are one machine, so no traffic crosses a network, the
filesystem is trivially shared, the GPUs are /dev/null (the processes train on the CPU) and
NCCL is not used (docs/CLUSTER.md).

Time (2-core machine shared with other work): 3 minutes at a load of 1-5, 5 at 10-14, most of it
the plugin's status polls and the tiny run."""

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from slurm_cluster import running_cluster
from test_slurm import TARGET, Run, git, make_repo


@pytest.fixture(scope="module")
def two_nodes():
    """munged, slurmctld and two slurmd (node1, node2) on localhost; stopped by their PIDs."""
    yield from running_cluster("momentum-ssl-slurm2-", nodes=2)


def test_a_run_with_more_gpus_than_a_node_trains_on_two_nodes(two_nodes, tmp_path):
    repo = make_repo(tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["grid"]["byol-full"]["gpus"] = 2
    params["cluster"] = {"gpus_per_node": 1}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(repo, "commit", "-qam", "byol-full on two nodes of one GPU")
    run = Run(repo, two_nodes, TARGET)
    log = repo / "logs" / "pretrain" / "byol-full" / "s0.log"
    try:
        code = run.wait(timeout=900)  # about 3 minutes; a loaded 2-core machine takes longer
    except subprocess.TimeoutExpired:
        run.proc.kill()
        code = "timed out"
    text = log.read_text() if log.is_file() else "(no log)"
    assert code == 0, f"{code}\n{run.output}\n{text}"
    print(f"two-node run through SLURM: {run.seconds:.0f} s")

    # SLURM gave the pretraining job both nodes; convert and plan ran on one
    jobs = [line.split("|") for line in two_nodes.run(
        "squeue", "-h", "--states=all", "-o", "%i|%j|%k|%T|%D|%N").splitlines()]
    ours = {comment: (job, state, nodes, nodelist)
            for job, name, comment, state, nodes, nodelist in jobs if name == run.uuid()}
    pretrain = next(v for k, v in ours.items() if k.startswith("rule_pretrain"))
    job = pretrain[0]
    assert pretrain[1:] == ("COMPLETED", "2", "node[1-2]"), ours
    # the stage started one torchrun agent a node, meeting at node1's address under the job id
    srun = next(line for line in text.splitlines() if line.startswith("srun "))
    assert srun.startswith("srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --whole"), srun
    port = 20000 + int(job) % 10000
    assert (f"--nnodes=2 --nproc-per-node=1 --rdzv-backend=c10d --rdzv-endpoint=127.0.0.1:"
            f"{port} --rdzv-id={job} -m momentum_ssl -- pretrain --run byol-full --seed 0") \
        in srun
    # each process kept the GPU SLURM's GRES gave its node (index 0 on each)
    assert re.findall(r"^GPUs (\S+) \(kept CUDA_VISIBLE_DEVICES\)$", text, re.M) == ["0", "0"]
    # and each node's slurmd launched one task of the job's step
    for node in ("node1", "node2"):
        slurmd = (two_nodes.root / "log" / f"slurmd-{node}.log").read_text()
        assert f"launch task StepId={job}.0 " in slurmd, (node, slurmd[-2000:])

    out = repo / "results" / "runs" / "byol-full" / "s0"
    metrics = json.loads((out / "dvclive" / "metrics.json").read_text())
    # 160 images, global batch 32 = 16 per process: 5 steps an epoch, 2 epochs, logged once
    assert metrics["time"]["steps"] == 10
    loss = (out / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv").read_text()
    assert len(loss.splitlines()) == 1 + 10
    assert (out / "model.pt").is_file() and not (out / "checkpoint.pt").exists()
    assert yaml.safe_load((out / "params.yaml").read_text())["run"]["gpus"] == 2
