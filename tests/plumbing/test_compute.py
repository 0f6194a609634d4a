"""The compute section: the portable CPU mode (pins set before torch loads, in every stage), the
thread count, CUDA determinism, and the provenance each run records."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, TINY, make_params
from momentum_ssl.plumbing.compute import (PORTABLE_ENV, apply_environment, collect_provenance,
                                  configure, cpu_isa_available, environment, is_x86_64,
                                  render_provenance)
from momentum_ssl.config import ComputeConfig, ConfigError, params_from_dict, to_dict

X86 = pytest.mark.skipif(not is_x86_64(), reason="the portable pins are for x86-64 CPUs")


@X86
def test_the_portable_mode_pins_every_library_and_the_threads():
    env = environment({"portable": True, "threads": 2})
    assert env["ATEN_CPU_CAPABILITY"] == "avx2"
    assert env["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert env["MKL_CBWR"] == "AVX2,STRICT"
    assert env["OPENBLAS_CORETYPE"] == "Haswell"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "2"
    assert "CUBLAS_WORKSPACE_CONFIG" not in env
    native = environment({"portable": False})
    assert not set(PORTABLE_ENV) & set(native)
    assert environment({"portable": False, "deterministic": True}) == {
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


@X86
def test_the_mode_wins_over_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"compute": {"portable": True, "threads": 3}}))
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    set_ = apply_environment(["pretrain", "--params", str(path)])
    assert os.environ["ATEN_CPU_CAPABILITY"] == "avx2" == set_["ATEN_CPU_CAPABILITY"]
    assert os.environ["OMP_NUM_THREADS"] == "3"
    # no params file (or no compute section): the stage reports the file itself; nothing set
    assert apply_environment(["pretrain", "--params", str(tmp_path / "missing.yaml")]) == {}


def test_threads_must_be_positive():
    with pytest.raises(ConfigError, match="threads"):
        ComputeConfig(threads=0)
    data = to_dict(make_params(Path("/tmp")))
    data["compute"] = {"portable": True, "cores": 2}
    with pytest.raises(ConfigError, match="cores"):
        params_from_dict(data)


def test_the_plan_holds_the_compute_section(tmp_path):
    """A change of the mode changes every run's plan, so DVC and Snakemake rerun them."""
    from momentum_ssl.config import run_params

    params = make_params(tmp_path)
    assert run_params(params, params.grid[0])["compute"] == to_dict(params.compute)


def test_deterministic_cuda_flags(monkeypatch):
    """The flags the CUDA setting turns on; set for a CUDA stage only (none on the CPU)."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
              torch.backends.cudnn.deterministic, torch.get_num_threads())
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        configure(ComputeConfig(deterministic=True), "cpu")
        assert not torch.are_deterministic_algorithms_enabled()
        configure(ComputeConfig(deterministic=True, threads=1), "cuda")
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert torch.get_num_threads() == 1
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[1:3]
        torch.set_num_threads(before[3])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (bench/gpu_check.sh)")
def test_two_deterministic_cuda_runs_give_the_same_weights(tmp_path):
    def train() -> dict:
        configure(ComputeConfig(deterministic=True), "cuda")
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.BatchNorm2d(16),
                                  torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                  torch.nn.Flatten(), torch.nn.Linear(16, 10)).cuda()
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        for _ in range(20):
            x = torch.randn(64, 3, 32, 32, device="cuda")
            loss = torch.nn.functional.cross_entropy(net(x), torch.randint(0, 10, (64,),
                                                                           device="cuda"))
            opt.zero_grad()
            loss.backward()
            opt.step()
        return {k: v.cpu() for k, v in net.state_dict().items()}

    try:
        first, second = train(), train()
    finally:
        torch.use_deterministic_algorithms(False)
    assert all(torch.equal(first[k], second[k]) for k in first)


# --- the mode through the real stages, in subprocesses (the pins act before torch loads) ----

@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("portable")
    params = to_dict(make_params(root, **{**TINY, "grid": {
        "simclr-none": {"method": "simclr", "scope": "none"}}}))
    params["pretrain"]["monitor_train"] = params["pretrain"]["monitor_test"] = 0
    params["compute"] = {"portable": True, "threads": 2}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert stage(root, "convert").returncode == 0
    return root


def stage(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "momentum_ssl", *args], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done


def train(root: Path, portable: bool, env: dict | None = None) -> dict:
    """Weights of the tiny run trained in a fresh process with ``env`` set beforehand."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["compute"]["portable"] = portable
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stage(root, "plan", "--run", "simclr-none", env=env)
    stage(root, "pretrain", "--run", "simclr-none", env=env)
    run = root / "results" / "runs" / "simclr-none" / "s0"
    state = torch.load(run / "model.pt", map_location="cpu")["learner"]
    where = json.loads((run / "provenance.json").read_text())
    return {"state": state, "where": where}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ISA variables a user (or a cluster's module system) may have set: the mode must win
FOREIGN = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
           "MKL_CBWR": "COMPATIBLE", "OPENBLAS_CORETYPE": "Prescott"}


@X86
def test_portable_mode_gives_the_same_weights_whatever_the_environment_says(converted):
    plain = train(converted, portable=True)
    foreign = train(converted, portable=True, env=FOREIGN)
    assert same(plain["state"], foreign["state"])
    assert plain["where"]["portable"] and plain["where"]["cpu_isa_used"] == "AVX2"
    assert plain["where"]["threads"] == 2
    # the pins act: the same variables, not overridden, train other weights
    unpinned = train(converted, portable=False, env=FOREIGN)
    assert unpinned["where"]["cpu_isa_used"] == "DEFAULT"
    assert not same(plain["state"], unpinned["state"])


@pytest.mark.skipif(cpu_isa_available() != "AVX512",
                    reason="native kernels are the AVX2 ones on a CPU without AVX-512")
def test_native_kernels_differ_from_the_portable_ones_on_avx512(converted):
    portable = train(converted, portable=True)
    native = train(converted, portable=False)
    assert native["where"]["cpu_isa_used"] == "AVX512"
    assert not same(portable["state"], native["state"])


def test_provenance_is_collected_and_rendered(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, isa in ((a, "AVX2"), (b, "AVX512")):
        folder.mkdir()
        (folder / "provenance.json").write_text(json.dumps(
            {"cpu": "X", "cpu_isa_used": isa, "portable": False, "threads": 2,
             "device": "cpu"}))
    machines = collect_provenance([("r/s0", a), ("r/s1", b), ("r/s2", tmp_path / "none")])
    assert [m["cells"] for m in machines] == [["r/s0"], ["r/s1"], ["r/s2"]]
    assert machines[2]["where"] == {"cpu": "unknown"}
    text = "\n".join(render_provenance(machines))
    assert "3 different machines" in text and "/ AVX512 | off | 2 |" in text


@X86
def test_verify_retrains_a_run_seed_and_compares_its_weights(converted):
    train(converted, portable=True)
    done = stage(converted, "verify", "--run", "simclr-none")
    assert done.stdout.splitlines()[-1] == "simclr-none/s0: identical weights"
    stored = converted / "results" / "runs" / "simclr-none" / "s0" / "model.pt"
    saved = torch.load(stored, map_location="cpu", weights_only=False)
    name = next(iter(saved["learner"]))
    saved["learner"][name] = saved["learner"][name] + 1e-6
    torch.save(saved, stored)
    done = subprocess.run([sys.executable, "-m", "momentum_ssl", "verify", "--run", "simclr-none"],
                          cwd=converted, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    assert "the weights differ in 1 of" in done.stdout


def test_state_digest_sees_one_changed_bit():
    from momentum_ssl.plumbing.compute import state_digest

    a = {"w": torch.ones(3), "b": torch.zeros(2)}
    b = {"b": torch.zeros(2), "w": torch.ones(3)}
    assert state_digest(a) == state_digest(b)
    b["w"] = torch.nextafter(b["w"], torch.tensor(2.0))
    assert state_digest(a) != state_digest(b)


def test_a_cuda_stage_without_determinism_turns_cudnns_kernel_search_on():
    """As the GPU benchmarks do: otherwise their figures overstate the stages'."""
    from types import SimpleNamespace

    from momentum_ssl.data.augment import no_cudnn_search

    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        configure(ComputeConfig(), "cpu")
        assert not torch.backends.cudnn.benchmark
        configure(ComputeConfig(), "cuda")
        assert torch.backends.cudnn.benchmark
        # the blur's grouped convolutions change shape every step: no search for them
        with no_cudnn_search(SimpleNamespace(device=torch.device("cuda"))):
            assert not torch.backends.cudnn.benchmark
        assert torch.backends.cudnn.benchmark
        with no_cudnn_search(torch.zeros(1)):
            assert torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.benchmark = before
