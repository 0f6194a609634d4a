"""A run across nodes, without a cluster: the node count, the SLURM request, the srun/torchrun
command from a job's allocation (a stand-in ``scontrol`` answers as SLURM 22.05 does), the
pretrain stage's hand-over to it, and the refusals. tests/test_slurm_multinode.py runs it on
a real two-node SLURM."""

import os
import stat
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TINY, make_params, repo_params_dict
from momentum_ssl.config import ConfigError, params_from_dict, run_params, to_dict
from momentum_ssl.plumbing import launch

JOB = ("JobId=4711 JobName=x UserId=me(1) ReqNodeList=(null) ExcNodeList=(null) "
       "NodeList=gpu[07-08] BatchHost=gpu07 NumNodes=2 "
       "NumCPUs=16 NumTasks=2 CPUs/Task=8 TresPerNode=gres:gpu:4")
NODE = ("NodeName=gpu07 Arch=x86_64 CoresPerSocket=8 Gres=gpu:4 NodeAddr=10.1.0.7 "
        "NodeHostName=gpu07 Port=6818 State=ALLOCATED")


def fake_scontrol(folder: Path, job: str = JOB, hosts: str = "gpu07\ngpu08") -> Path:
    """An ``scontrol`` that answers ``show job``, ``show hostnames`` and ``show node`` and
    records its calls in ``calls.txt``."""
    folder.mkdir(exist_ok=True)
    script = folder / "scontrol"
    script.write_text(f"""#!/bin/sh
echo "$@" >> {folder}/calls.txt
case "$2" in
  job) echo '{job}' ;;
  hostnames) printf '{hosts}\\n' ;;
  node) echo '{NODE}' ;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


@pytest.mark.parametrize("gpus, per_node, nodes", [(1, None, 1), (8, None, 1), (4, 4, 1),
                                                   (2, 4, 1), (8, 4, 2), (16, 4, 4), (2, 1, 2)])
def test_a_run_spans_its_gpus_over_gpus_per_node_nodes(gpus, per_node, nodes):
    assert launch.nodes_for(gpus, per_node) == nodes


def test_the_slurm_request_of_a_run_across_nodes_and_none_for_one_node():
    assert launch.slurm_resources(4, 4) == {} and launch.slurm_resources(8, None) == {}
    assert launch.slurm_resources(8, 4) == {
        "nodes": 2, "tasks": 2, "mpi": "srun", "tasks_per_gpu": 0,
        "slurm_extra": "--ntasks-per-node=1 --gpus-per-node=4"}


def test_the_command_is_one_torchrun_agent_a_node_meeting_at_the_first_node(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("PATH", f"{fake_scontrol(tmp_path / 'bin')}:{os.environ['PATH']}")
    alloc = launch.allocation({"SLURM_JOB_ID": "4711"})
    assert alloc == launch.Allocation("4711", ("gpu07", "gpu08"), "10.1.0.7")
    calls = (tmp_path / "bin" / "calls.txt").read_text().splitlines()
    assert calls == ["show job --oneliner 4711", "show hostnames gpu[07-08]",
                     "show node --oneliner gpu07"]
    cmd = launch.across_nodes("byol-full", 8, 4, ["pretrain", "--run", "byol-full"],
                              {"SLURM_JOB_ID": "4711"})
    assert cmd == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--whole",
                   "--kill-on-bad-exit=1", sys.executable, "-m", "torch.distributed.run",
                   "--nnodes=2", "--nproc-per-node=4", "--rdzv-backend=c10d",
                   "--rdzv-endpoint=10.1.0.7:24711", "--rdzv-id=4711", "-m", "momentum_ssl",
                   "--", "pretrain", "--run", "byol-full"]


def test_the_rendezvous_port_follows_the_job_and_stays_below_the_ephemeral_range():
    ports = [launch.rendezvous_port(str(job)) for job in (0, 4711, 9999, 10000, 123456789)]
    assert ports == [20000, 24711, 29999, 20000, 26789]
    assert launch.rendezvous_port("4711_3") == launch.rendezvous_port("47113")  # array jobs


def test_outside_slurm_or_on_too_few_nodes_the_launch_says_how_to_run_it(tmp_path,
                                                                        monkeypatch):
    with pytest.raises(launch.LaunchError, match=r"^byol-full trains on 8 GPUs, 2 nodes of "
                       r"cluster.gpus_per_node 4: run it in a SLURM job of 2 nodes "
                       r"\(snakemake --profile workflow/profiles/slurm, or inside `salloc "
                       r"--nodes=2 --ntasks-per-node=1 --gpus-per-node=4`\)$"):
        launch.across_nodes("byol-full", 8, 4, ["pretrain"], {})
    bin_ = fake_scontrol(tmp_path / "bin", job=JOB.replace("gpu[07-08]", "gpu07"),
                         hosts="gpu07")
    monkeypatch.setenv("PATH", f"{bin_}:{os.environ['PATH']}")
    with pytest.raises(launch.LaunchError, match="but SLURM job 4711 holds 1 \\(gpu07\\): "
                       "submit it with --nodes=2"):
        launch.across_nodes("byol-full", 8, 4, ["pretrain"], {"SLURM_JOB_ID": "4711"})


def test_cluster_gpus_per_node_is_checked_and_enters_no_plan(tmp_path):
    data = repo_params_dict()
    run = next(iter(data["grid"]))
    data["grid"][run]["gpus"] = 6
    data["cluster"] = {"gpus_per_node": 4}
    with pytest.raises(ConfigError, match=rf"^grid\.{run}\.gpus: 6 GPUs do not divide into "
                       r"nodes of cluster.gpus_per_node \(4\): ask for a multiple of 4 to "
                       r"span nodes, or at most 4 for one node$"):
        params_from_dict(data)
    data["cluster"] = {"gpus_per_node": 0}
    with pytest.raises(ConfigError, match=r"^cluster.gpus_per_node: must be null or >= 1"):
        params_from_dict(data)
    data["grid"][run]["gpus"] = 8
    spanning = params_from_dict({**data, "cluster": {"gpus_per_node": 4}})
    one_node = params_from_dict({k: v for k, v in data.items() if k != "cluster"})
    assert run_params(spanning, spanning.grid[0]) == run_params(one_node, one_node.grid[0])
    assert "cluster" not in to_dict(one_node)  # unset: params files and hashes as they were
    assert to_dict(spanning)["cluster"] == {"gpus_per_node": 4}


def test_the_pretrain_stage_hands_a_run_across_nodes_to_srun(tmp_path, monkeypatch, capsys):
    """cli._across_nodes: srun's command printed and run (a stand-in srun records it) for a
    run across nodes; nothing for one on a node; one error line outside SLURM."""
    from momentum_ssl import cli

    bin_ = fake_scontrol(tmp_path / "bin")
    srun = bin_ / "srun"
    srun.write_text(f'#!/bin/sh\necho "$@" > {bin_}/srun.txt\n')
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}:{os.environ['PATH']}")
    grid = {"byol-full": {"method": "byol", "scope": "full", "gpus": 8},
            "simclr-none": {"method": "simclr", "scope": "none", "gpus": 4}}
    data = to_dict(make_params(tmp_path, **{**TINY, "grid": grid}))
    params = params_from_dict({**data, "cluster": {"gpus_per_node": 4}})
    across, one = params.grid
    monkeypatch.setenv("SLURM_JOB_ID", "4711")
    assert not cli._across_nodes(params, one, 0, "params.yaml")
    assert not (bin_ / "srun.txt").exists()
    assert cli._across_nodes(params, across, 0, "params.yaml")
    args = (bin_ / "srun.txt").read_text().split()
    assert args[:3] == ["--nodes=2", "--ntasks=2", "--ntasks-per-node=1"]
    assert args[-8:] == ["--", "pretrain", "--run", "byol-full", "--seed", "0", "--params",
                         "params.yaml"]
    assert capsys.readouterr().out.startswith("srun --nodes=2 ")
    monkeypatch.delenv("SLURM_JOB_ID")
    with pytest.raises(ConfigError, match="byol-full trains on 8 GPUs, 2 nodes"):
        cli._across_nodes(params, across, 0, "params.yaml")


def test_the_snakefile_asks_slurm_for_the_nodes_of_a_run_across_nodes(tmp_path):
    from momentum_ssl.workflow import Grid

    data = repo_params_dict()
    data["cluster"] = {"gpus_per_node": 2}
    data["grid"] = {"byol-full": {"method": "byol", "scope": "full", "gpus": 4},
                    "simclr-none": {"method": "simclr", "scope": "none", "gpus": 2}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    grid = Grid.from_config(data, tmp_path / "params.yaml")
    keys = ("nodes", "tasks", "mpi", "tasks_per_gpu", "slurm_extra")
    assert {k: grid.across_nodes("byol-full", k) for k in keys} == {
        "nodes": 2, "tasks": 2, "mpi": "srun", "tasks_per_gpu": 0,
        "slurm_extra": "--ntasks-per-node=1 --gpus-per-node=2"}
    # a run on one node: every key None, which Snakemake leaves out of the job's resources
    assert [grid.across_nodes("simclr-none", k) for k in keys] == [None] * 5
