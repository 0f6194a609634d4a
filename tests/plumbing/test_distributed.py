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
