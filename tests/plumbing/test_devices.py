"""GPU slots: processes competing for fake devices each get their own, and a killed holder
frees its device."""

import os
import signal
import subprocess
import sys

import pytest

from momentum_ssl.plumbing import devices

HOLDER = """
import os, sys, time
from momentum_ssl.plumbing.devices import claim
got = claim(int(sys.argv[1]), wait_s=float(sys.argv[2]), poll_s=0.05)
print(os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
time.sleep(float(sys.argv[3]))
"""


@pytest.fixture
def fake(tmp_path, monkeypatch):
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(MOMENTUM_SSL_GPUS="0,1,2,3", MOMENTUM_SSL_GPU_LOCKS=str(tmp_path / "locks"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for key in ("MOMENTUM_SSL_GPUS", "MOMENTUM_SSL_GPU_LOCKS"):
        monkeypatch.setenv(key, env[key])
    return env


def holder(env, count=1, wait_s=5.0, hold_s=30.0):
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(count), str(wait_s), str(hold_s)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_four_jobs_get_four_different_gpus_and_a_fifth_waits(fake):
    jobs = [holder(fake) for _ in range(4)]
    try:
        claimed = [job.stdout.readline().strip() for job in jobs]
        assert sorted(claimed) == ["0", "1", "2", "3"]
        fifth = holder(fake, wait_s=0.5, hold_s=0)
        assert fifth.wait(timeout=60) != 0
        assert "no 1 free GPU(s) among 0, 1, 2, 3" in fifth.stderr.read()
        # SIGKILL one holder: the kernel drops its lock, and a waiting job takes that GPU
        victim = claimed.index("2")
        jobs[victim].send_signal(signal.SIGKILL)
        jobs[victim].wait(timeout=30)
        waiting = holder(fake, wait_s=20, hold_s=0)
        assert waiting.stdout.readline().strip() == "2"
        assert waiting.wait(timeout=60) == 0
    finally:
        for job in jobs:
            job.kill()
            job.wait()


def test_a_multi_gpu_claim_is_all_or_nothing(fake):
    first = holder(fake, count=3)
    try:
        taken = first.stdout.readline().strip().split(",")
        assert len(taken) == 3
        pair = holder(fake, count=2, wait_s=0.5, hold_s=0)
        assert pair.wait(timeout=60) != 0  # one free GPU is not enough, and is not kept
        single = holder(fake, count=1, wait_s=5, hold_s=0)
        assert single.stdout.readline().strip() not in taken
        assert single.wait(timeout=60) == 0
    finally:
        first.kill()
        first.wait()


def test_no_gpu_means_cpu_and_a_preset_assignment_is_kept(fake, monkeypatch):
    monkeypatch.setenv("MOMENTUM_SSL_GPUS", "")
    assert devices.claim() is None and "CUDA_VISIBLE_DEVICES" not in os.environ
    monkeypatch.setenv("MOMENTUM_SSL_GPUS", "0,1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # e.g. SLURM's --gpus
    assert devices.claim() == ["1"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(RuntimeError, match="asks for 3 GPUs but this machine has 2"):
        devices.claim(3)


def test_a_stale_lock_file_is_not_a_claim(fake, tmp_path):
    locks = tmp_path / "locks"
    locks.mkdir()
    for i in range(4):
        (locks / f"gpu{i}.lock").write_text("12345\n")  # left by a job killed long ago
    job = holder(fake, count=4, wait_s=1, hold_s=0)
    assert job.stdout.readline().strip() == "0,1,2,3"
    assert job.wait(timeout=60) == 0


def test_a_run_asking_for_gpus_trains_on_the_cpu_where_there_are_none(tmp_path, monkeypatch,
                                                                       capsys):
    import yaml

    from conftest import TINY, make_params
    from momentum_ssl.cli import main
    from momentum_ssl.config import to_dict

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MOMENTUM_SSL_GPUS", "")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    tiny = {**TINY, "pretrain": {**TINY["pretrain"], "device": "auto", "epochs": 1},
            "grid": {"simclr-none": {"method": "simclr", "scope": "none", "gpus": 2}}}
    params = make_params(tmp_path, **tiny)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(to_dict(params), sort_keys=False))
    assert main(["convert"]) == 0
    assert main(["pretrain", "--run", "simclr-none"]) == 0
    out = capsys.readouterr().out
    assert "simclr-none asks for 2 GPUs and this machine has none" in out
    assert (tmp_path / "results" / "runs" / "simclr-none" / "s0" / "model.pt").is_file()


def forget_after_test(monkeypatch, *names):
    """Unset ``names`` now and again after the test (claim() sets them in os.environ)."""
    for name in names:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_a_claim_counts_devices_in_nvidia_smis_pci_bus_order(fake, monkeypatch):
    forget_after_test(monkeypatch, "CUDA_DEVICE_ORDER", "CUDA_VISIBLE_DEVICES")
    assert devices.claim() == ["0"]
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # CUDA's default: fastest first


def test_a_gpu_that_cuda_cannot_use_is_an_error_not_a_run_on_the_cpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "nvidia_smi_devices", lambda: ["0", "1"])
    problem = devices.cuda_problem("auto", ["1"])
    assert "GPUs 1 were claimed but torch" in problem and "pretrain.device: cpu" in problem
    assert "\n" not in problem
    assert "pretrain.device is cuda but no CUDA device is usable" in devices.cuda_problem(
        "cuda", None)
    assert devices.cuda_problem("cpu", None) is None
    # stand-ins named by MOMENTUM_SSL_GPUS on a machine without nvidia-smi's GPUs: the CPU
    monkeypatch.setattr(devices, "nvidia_smi_devices", lambda: [])
    assert devices.cuda_problem("auto", ["7"]) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.cuda_problem("cuda", ["0"]) is None


@pytest.mark.parametrize("stage", ["pretrain", "evaluate"])
def test_a_stage_claims_its_gpu_before_anything_starts_cuda(stage, fake, tmp_path, monkeypatch,
                                                           capsys):
    """CUDA reads CUDA_VISIBLE_DEVICES once, at its first device query: a stage that asked
    torch.cuda.is_available() before claiming would run on GPU 0 whatever it locked. Every
    torch.cuda query is recorded; the stage's own work is left out."""
    import torch
    import yaml

    from conftest import TINY, make_params
    from momentum_ssl import cli
    from momentum_ssl.config import to_dict
    from momentum_ssl.stages import features, pretrain

    forget_after_test(monkeypatch, "CUDA_DEVICE_ORDER", "CUDA_VISIBLE_DEVICES")
    monkeypatch.chdir(tmp_path)
    params = make_params(tmp_path, **{**TINY, "pretrain": {**TINY["pretrain"],
                                                           "device": "auto"}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(to_dict(params), sort_keys=False))
    events = []
    claim = devices.claim
    monkeypatch.setattr(devices, "claim", lambda *a, **k: events.append("claim") or claim(*a, **k))
    for name in ("is_available", "device_count", "is_bf16_supported", "init", "set_device",
                 "current_device"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, n=name, **k: events.append(n) or 0)
    monkeypatch.setattr(pretrain, "pretrain", lambda *a, **k: events.append("stage") or tmp_path)
    monkeypatch.setattr(features, "extract", lambda *a, **k: events.append("stage") or tmp_path)
    monkeypatch.setattr(cli, "_print_probe", lambda out: None)
    if stage == "evaluate":
        from momentum_ssl.stages import probes, transfer
        monkeypatch.setattr(probes, "probe", lambda *a, **k: tmp_path)
        monkeypatch.setattr(transfer, "transfer", lambda *a, **k: tmp_path)
        monkeypatch.setattr(cli, "_print_transfer", lambda out: None)
    run = params.grid[0].name
    assert cli.main([stage, "--run", run]) == 0, capsys.readouterr().err
    assert events[0] == "claim" and "is_available" in events, events
    assert events.index("stage") > events.index("is_available")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    assert "GPUs 0 (claimed)" in capsys.readouterr().out
