import dataclasses
import os
import socket
import subprocess
import sys

import pytest
import torch

from conftest import kill_at_step
from momentum_ssl.config import RunSpec
from momentum_ssl.plumbing.checkpoint import (KEYS, load_checkpoint, previous_path,
                                              remove_checkpoints, save_checkpoint)
from momentum_ssl.stages.pretrain import pretrain


def state(epoch, stamp="abc"):
    return {key: epoch for key in KEYS} | {"params_hash": stamp}


def test_the_replaced_checkpoint_is_kept_as_the_previous_one(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(state(1), path)
    assert not previous_path(path).exists()
    save_checkpoint(state(2), path)
    assert previous_path(path).name == "checkpoint.prev.pt"
    assert torch.load(previous_path(path), weights_only=False)["epoch"] == 1
    assert load_checkpoint(path, "abc", "r")["epoch"] == 2
    remove_checkpoints(path)
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_checkpoint_is_set_aside_for_the_previous_one(tmp_path, capsys):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(state(1), path)
    save_checkpoint(state(2), path)
    path.write_bytes(path.read_bytes()[:100])
    assert load_checkpoint(path, "abc", "r")["epoch"] == 1
    out = capsys.readouterr().out.strip()
    aside = [p.name for p in tmp_path.glob("checkpoint.pt.corrupt-*")]
    assert len(aside) == 1 and not path.exists()
    assert out.startswith(f"{path} is truncated or garbled: torch.load failed (")
    assert out.endswith(f"set aside as {tmp_path / aside[0]}; resuming from the previous "
                        "epoch's checkpoint")


def test_with_no_good_checkpoint_the_run_starts_from_scratch(tmp_path, capsys):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(state(1), path)
    save_checkpoint({"epoch": 2}, path)  # a dict, but not a checkpoint of this version
    previous_path(path).write_bytes(b"garbage")
    assert load_checkpoint(path, "abc", "r", set_aside=False) is None  # rank > 0: look only
    assert {p.name for p in tmp_path.iterdir()} == {"checkpoint.pt", "checkpoint.prev.pt"}
    assert load_checkpoint(path, "abc", "r") is None
    lines = capsys.readouterr().out.strip().splitlines()
    assert "lacks 'learner', 'optimizer'" in lines[-2] and lines[-1].endswith("starting r from "
                                                                            "scratch")
    assert len(list(tmp_path.glob("*.corrupt-*"))) == 2 and not any(
        p.exists() for p in (path, previous_path(path)))


# One rank of a gloo process group: rank 0 waits a second before it reads, so that a rank that
# did not wait for it would meet the damaged file first.
RANK_LOADS = """
import sys, time
import torch.distributed as dist
from momentum_ssl.plumbing.checkpoint import load_checkpoint_on_every_rank
dist.init_process_group("gloo")
if dist.get_rank() == 0:
    time.sleep(1.0)
state = load_checkpoint_on_every_rank(__import__("pathlib").Path(sys.argv[1]), "abc", "r")
print("epoch", None if state is None else state["epoch"], flush=True)
dist.destroy_process_group()
"""


def test_under_ddp_rank_0_sets_a_damaged_checkpoint_aside_before_the_others_read(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(state(1), path)
    save_checkpoint(state(2), path)
    path.write_bytes(path.read_bytes()[:100])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
    ranks = [subprocess.Popen([sys.executable, "-c", RANK_LOADS, str(path)],
                              env={**env, "RANK": str(r)}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(2)]
    outs = [r.communicate(timeout=120)[0] for r in ranks]
    assert [r.returncode for r in ranks] == [0, 0], outs
    assert all(out.strip().endswith("epoch 1") for out in outs), outs
    assert "set aside as" in outs[0]
    assert "truncated or garbled" not in outs[1]  # rank 1 never read the damaged file
    assert len(list(tmp_path.glob("checkpoint.pt.corrupt-*"))) == 1


def test_a_checkpoint_of_other_params_is_ignored(tmp_path, capsys):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(state(1, stamp="old"), path)
    assert load_checkpoint(path, "new", "r") is None
    assert "is from other run params; starting r from scratch" in capsys.readouterr().out
    assert path.exists()  # not damaged: left where it is


def test_a_run_resumes_from_the_previous_epoch_when_its_checkpoint_is_damaged(
        tiny, tmp_path, monkeypatch, capsys):
    params = dataclasses.replace(tiny, pretrain=dataclasses.replace(tiny.pretrain, epochs=3))
    run = RunSpec("byol", "full")
    straight = pretrain(params, run, tmp_path / "straight")
    resume = kill_at_step(monkeypatch, 12)  # dies during the third epoch (5 steps each)
    with pytest.raises(KeyboardInterrupt):
        pretrain(params, run, tmp_path / "resumed")
    resume()
    checkpoint = tmp_path / "resumed" / "checkpoint.pt"
    assert torch.load(previous_path(checkpoint), weights_only=False)["epoch"] == 1
    checkpoint.write_bytes(checkpoint.read_bytes()[:-1000])  # a cut copy
    capsys.readouterr()
    resumed = pretrain(params, run, tmp_path / "resumed")
    out = capsys.readouterr().out
    assert "set aside as" in out and "byol-full: resuming after epoch 1 (step 5)" in out
    assert [p.name.split("-")[0] for p in resumed.glob("checkpoint*")] == ["checkpoint.pt.corrupt"]
    a = torch.load(straight / "model.pt", weights_only=False)["learner"]
    b = torch.load(resumed / "model.pt", weights_only=False)["learner"]
    for key in a:  # epochs 2 and 3 replayed: the same weights as the uninterrupted run
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_kept_epochs_and_what_is_due():
    from momentum_ssl.plumbing.checkpoint import is_due, kept_epochs

    assert kept_epochs(None, 10) == []
    assert kept_epochs(4, 10) == [4, 8, 10]  # and the last
    assert kept_epochs(5, 10) == [5, 10]
    assert kept_epochs(20, 10) == [10]
    assert [e for e in range(1, 8) if is_due(e, 3, 7)] == [3, 6, 7]
    assert [e for e in range(1, 4) if is_due(e, 1, 3)] == [1, 2, 3]  # the default: every epoch


def test_kept_weights_are_staged_then_published(tmp_path):
    """Written into epochs.partial/; a fresh start clears it, a resume drops only the epochs
    after its checkpoint; the finished run renames it epochs/, replacing an older one."""
    from momentum_ssl.plumbing.checkpoint import keep_weights, publish_kept, start_kept

    for epoch in (1, 2, 3):
        keep_weights({"epoch": epoch}, tmp_path, epoch)
    start_kept(tmp_path, resumed_epoch=2)
    assert sorted(p.name for p in (tmp_path / "epochs.partial").iterdir()) == ["e0001.pt",
                                                                               "e0002.pt"]
    (tmp_path / "epochs").mkdir()
    (tmp_path / "epochs" / "e0009.pt").write_bytes(b"old")
    publish_kept(tmp_path)
    assert sorted(p.name for p in (tmp_path / "epochs").iterdir()) == ["e0001.pt", "e0002.pt"]
    assert not (tmp_path / "epochs.partial").exists()
    keep_weights({"epoch": 1}, tmp_path, 1)
    start_kept(tmp_path, resumed_epoch=0)
    assert not (tmp_path / "epochs.partial").exists()
