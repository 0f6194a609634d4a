"""A run across nodes: one SLURM task per node, each a ``torchrun`` agent, joined by torchrun's
c10d rendezvous at the job's first node.

A run with more GPUs than a node holds (``gpus`` over ``cluster.gpus_per_node``) trains on
``gpus / gpus_per_node`` nodes. Snakemake's SLURM profile asks for them
(:func:`slurm_resources`: ``--nodes``, ``--ntasks``, ``--ntasks-per-node=1``,
``--gpus-per-node``); inside the job the pretrain stage finds its allocation
(:func:`allocation`: ``scontrol show job`` and ``scontrol show hostnames``, since the
executor plugin's job step keeps only ``SLURM_JOB_ID`` of SLURM's variables) and starts
:func:`command`::

    srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --whole --kill-on-bad-exit=1 \\
        python -m torch.distributed.run --nnodes=2 --nproc-per-node=4 \\
        --rdzv-backend=c10d --rdzv-endpoint=<first node>:<port> --rdzv-id=<job id> \\
        -m momentum_ssl -- pretrain --run R --seed S --params params.yaml

``--whole`` gives each task all that the job holds on its node (CPUs, memory and GPUs: a step
would otherwise get one CPU per task). The rendezvous port is drawn from the job id
(:func:`rendezvous_port`), so two jobs that share a node do not meet in one store, and stays
below Linux's ephemeral range (32768 on), which outgoing connections may hold. The endpoint is
the first node's ``NodeAddr`` (its name, unless slurm.conf gives it an address): the address
SLURM itself reaches it at.

No config here (plumbing is the lowest layer): the callers pass the numbers.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass


class LaunchError(RuntimeError):
    """A run that cannot start across nodes here; the message says why and what to do."""


def nodes_for(gpus: int, gpus_per_node: int | None) -> int:
    """The nodes a run of ``gpus`` GPUs spans: 1 when they fit on one (or no GPUs per node is
    set), else ``gpus / gpus_per_node`` (config checks that it divides)."""
    if not gpus_per_node or gpus <= gpus_per_node:
        return 1
    return gpus // gpus_per_node


def slurm_resources(gpus: int, gpus_per_node: int | None) -> dict:
    """Snakemake resources (snakemake-executor-plugin-slurm) for a run spanning nodes; {} for
    one node, whose job stays as it was (``--gpus=N``, the job step's own ``srun -n1``).

    ``mpi`` takes the plugin's MPI path: the job's command runs in the batch script and starts
    its tasks itself (the plain path wraps it in ``srun -n1``, one task on one node). ``tasks``
    (one per node) becomes ``--ntasks``; ``tasks_per_gpu: 0`` keeps the plugin from reading
    ``tasks`` as ``--ntasks-per-gpu``; the rule's ``gpu`` (all of the run's GPUs) stays
    ``--gpus=N``, and ``slurm_extra`` pins ``--gpus-per-node`` and one task per node."""
    nodes = nodes_for(gpus, gpus_per_node)
    if nodes == 1:
        return {}
    return {"nodes": nodes, "tasks": nodes, "mpi": "srun", "tasks_per_gpu": 0,
            "slurm_extra": f"--ntasks-per-node=1 --gpus-per-node={gpus_per_node}"}


@dataclass(frozen=True)
class Allocation:
    """The SLURM job this process runs in."""

    job_id: str
    hosts: tuple[str, ...]  # its nodes, in SLURM's order
    first_address: str  # the first node's NodeAddr: the rendezvous host


def _scontrol(*args: str) -> str:
    try:
        done = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        raise LaunchError(f"scontrol {' '.join(args)} failed: {err}") from None
    if done.returncode:
        why = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise LaunchError(f"scontrol {' '.join(args)} failed: {why}")
    return done.stdout


def _field(record: str, name: str) -> str | None:
    found = re.search(rf"(?:^|\s){re.escape(name)}=(\S*)", record)
    return found.group(1) if found else None


def allocation(env: dict | None = None) -> Allocation | None:
    """The SLURM job of this process (``SLURM_JOB_ID``), its nodes and the first one's
    address; None outside SLURM."""
    env = os.environ if env is None else env
    job_id = env.get("SLURM_JOB_ID")
    if not job_id:
        return None
    record = _scontrol("show", "job", "--oneliner", job_id)
    nodelist = _field(record, "NodeList")
    if not nodelist or nodelist == "(null)":
        raise LaunchError(f"SLURM job {job_id} has no nodes yet (scontrol show job: "
                          f"NodeList={nodelist})")
    hosts = tuple(_scontrol("show", "hostnames", nodelist).split())
    node = _scontrol("show", "node", "--oneliner", hosts[0])
    address = _field(node, "NodeAddr") or hosts[0]
    return Allocation(job_id, hosts, address)


def rendezvous_port(job_id: str) -> int:
    """The c10d store's port for a job: 20000-29999, from its id."""
    return 20000 + int(re.sub(r"\D", "", job_id) or 0) % 10000


def command(alloc: Allocation, nodes: int, gpus_per_node: int, stage_args: list[str],
            python: str = sys.executable) -> list[str]:
    """``srun`` of one torchrun agent per node of ``alloc``, each starting ``gpus_per_node``
    processes of ``python -m momentum_ssl <stage_args>`` (see the module docstring)."""
    return ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1", "--whole",
            "--kill-on-bad-exit=1",
            python, "-m", "torch.distributed.run", f"--nnodes={nodes}",
            f"--nproc-per-node={gpus_per_node}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={alloc.first_address}:{rendezvous_port(alloc.job_id)}",
            f"--rdzv-id={alloc.job_id}", "-m", "momentum_ssl", "--", *stage_args]


def across_nodes(name: str, gpus: int, gpus_per_node: int, stage_args: list[str],
                 env: dict | None = None) -> list[str]:
    """The command that trains run ``name`` on ``gpus`` GPUs, ``gpus_per_node`` a node, in
    this SLURM job; :class:`LaunchError` outside one, or in one with too few nodes."""
    nodes = nodes_for(gpus, gpus_per_node)
    how = (f"snakemake --profile workflow/profiles/slurm, or inside `salloc --nodes={nodes} "
           f"--ntasks-per-node=1 --gpus-per-node={gpus_per_node}`")
    alloc = allocation(env)
    if alloc is None:
        raise LaunchError(f"{name} trains on {gpus} GPUs, {nodes} nodes of "
                          f"cluster.gpus_per_node {gpus_per_node}: run it in a SLURM job of "
                          f"{nodes} nodes ({how})")
    if len(alloc.hosts) < nodes:
        raise LaunchError(f"{name} trains on {nodes} nodes of cluster.gpus_per_node "
                          f"{gpus_per_node}, but SLURM job {alloc.job_id} holds "
                          f"{len(alloc.hosts)} ({','.join(alloc.hosts)}): submit it with "
                          f"--nodes={nodes} ({how})")
    return command(alloc, nodes, gpus_per_node, stage_args)
