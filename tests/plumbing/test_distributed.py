"""DDP through torchrun, on the CPU (gloo): two processes train one run together."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import TINY, make_params
from momentum_ssl.config import to_dict


@pytest.mark.parametrize("run", ["simclr-none", "byol-full"])  # gathered negatives; a teacher
def test_torchrun_two_processes_train_one_run(tmp_path, run):
    params = make_params(tmp_path, **TINY)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(to_dict(params), sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    python = sys.executable
    done = subprocess.run([python, "-m", "momentum_ssl", "convert"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    torchrun = Path(python).parent / "torchrun"
    done = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node=2", "-m",
                           "momentum_ssl", "--", "pretrain", "--run", run],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "results" / "runs" / run / "s0"
    metrics = json.loads((out / "dvclive" / "metrics.json").read_text())
    # 160 images, global batch 32 = 16 per process: 5 steps an epoch, logged once (rank 0)
    assert metrics["time"]["steps"] == 10
    loss_rows = (out / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv").read_text()
    assert len(loss_rows.splitlines()) == 1 + 10
    # the kNN monitor on rank 0 only: step 0 (eval_every 100) and each epoch's last step
    knn = (out / "dvclive" / "plots" / "metrics" / "monitor" / "knn_student.tsv").read_text()
    assert [line.split("\t")[0] for line in knn.splitlines()[1:]] == ["0", "4", "9"]
    state = torch.load(out / "model.pt", weights_only=False)["learner"]
    assert any("running_mean" in key for key in state)
    assert not (out / "checkpoint.pt").exists()


def test_close_distributed_leaves_the_process_group_and_a_lone_barrier_returns():
    import torch.distributed as dist

    from momentum_ssl.plumbing.distributed import barrier, close_distributed

    barrier()  # no process group: returns at once
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    assert dist.is_initialized()
    barrier()
    close_distributed()
    assert not dist.is_initialized()
    close_distributed()  # nothing to leave: no error


def _check_on_rank(rank: int, store: str, results) -> None:
    """One rank of test_a_loss_that_is_not_finite_on_one_rank_stops_every_rank: rank 1's loss
    was not finite, rank 0's was."""
    import types

    import torch.distributed as dist

    from momentum_ssl.stages.pretrain import Progress, TrainingDiverged, check_finite

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    t = types.SimpleNamespace(world=2, run=types.SimpleNamespace(name="byol-full"),
                              cfg=types.SimpleNamespace(log_every=4),
                              checkpoint=Path(store).with_name("checkpoint.pt"))
    progress = Progress(step=8, nonfinite=torch.tensor(rank == 1), unchecked_from=5)
    try:
        check_finite(t, progress, 8)
        results.put((rank, "went on"))
    except TrainingDiverged as err:
        results.put((rank, str(err)))
    finally:
        dist.destroy_process_group()


def test_a_loss_that_is_not_finite_on_one_rank_stops_every_rank(tmp_path):
    """The loss check (pretrain.check_finite, read at log steps) reduces the flag over the
    ranks: a rank whose own loss was finite stops too, rather than waiting forever in the
    next collective for the rank that stopped."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_check_on_rank, args=(rank, str(tmp_path / "store"), results))
             for rank in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    got = dict(results.get(timeout=10) for _ in procs)
    for rank in (0, 1):
        assert got[rank].startswith("byol-full: the loss was not finite at a step of 5-8"), got
