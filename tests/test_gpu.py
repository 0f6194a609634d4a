"""The CUDA path: bf16 autocast, channels_last, the recipe's optimizers, each precision
(bf16, fp16 with its scaler, fp32), two deterministic runs' weights, the seeded augmentations,
the training loop's telemetry and (where ffcv and dvclive are installed) the whole loop on the
device. Skipped without a CUDA device (CI has none); bench/gpu_check.sh runs them on a GPU
machine (tests/test_gpu_check.py checks on the CPU that they collect)."""

import dataclasses
import importlib.util

import pytest
import torch

from conftest import REPO
from momentum_ssl.config import RunSpec, load_params, resolve
from momentum_ssl.core.learner import build_learner
from momentum_ssl.core.optim import build_optimizer, set_learning_rates

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def small(params):
    return dataclasses.replace(params, model=dataclasses.replace(
        params.model, backbone="resnet_tiny", width=16, cifar_stem=True))


@pytest.mark.parametrize("method", ["byol", "simclr", "mocov3", "barlow_twins", "unigrad"])
def test_a_bf16_channels_last_step_on_cuda_matches_the_cpu_in_fp32(method):
    params = small(load_params(REPO / "params/cifar10.yaml"))
    run = RunSpec(method, "full")
    x = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    losses = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        learner = build_learner(params, run).to(device)
        if device == "cuda":
            learner = learner.to(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            loss, _ = learner(x.to(device), x.flip(3).to(device))
        loss.backward()
        assert torch.isfinite(loss)
        losses[device] = loss.item()
        if device == "cuda":  # the recipe's optimizer steps on the device
            cfg = resolve(params, run).pretrain
            optimizer = build_optimizer(learner, cfg, cfg.lr)
            set_learning_rates(optimizer, cfg.lr / 2, cfg.lr)
            optimizer.step()
            learner.update_teacher(0.99)
            assert all(torch.isfinite(p).all() for p in learner.parameters())
    assert losses["cuda"] == pytest.approx(losses["cpu"], rel=0.05, abs=0.02)


@pytest.mark.skipif(importlib.util.find_spec("ffcv") is None or
                    importlib.util.find_spec("dvclive") is None,
                    reason="the training loop needs ffcv and dvclive")
def test_pretrain_runs_on_cuda_through_the_ffcv_loader(tiny, tmp_path):
    from momentum_ssl.stages.pretrain import pretrain

    params = dataclasses.replace(tiny, pretrain=dataclasses.replace(tiny.pretrain,
                                                                   device="cuda"))
    out = pretrain(params, RunSpec("byol", "full"), tmp_path / "run")
    state = torch.load(out / "model.pt", map_location="cpu", weights_only=False)
    assert all(torch.isfinite(v).all() for v in state["learner"].values()
               if v.is_floating_point())


def test_the_seeded_views_on_cuda_are_the_cpus(monkeypatch):
    """The loader's augmentations draw on the CPU and apply on the batch's device (the blur's
    convolutions in fp32: cuDNN would otherwise take TF32, 10-bit mantissas)."""
    from momentum_ssl.config import AugmentConfig
    from momentum_ssl.data.augment import ViewAugment

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)

    x = torch.randint(0, 256, (64, 3, 20, 20), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0))
    cfg = AugmentConfig(size=16, blur_p=(1.0, 0.1))
    for v in (0, 1):
        views = {}
        for device in ("cpu", "cuda"):
            view = ViewAugment(cfg, v, [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]).to(device)
            view.reseed(3, epoch=1)
            views[device] = view(x.to(device))
        assert views["cuda"].is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(views["cuda"].cpu(), views["cpu"], atol=1e-4, rtol=1e-4)


def test_the_training_loops_telemetry_runs_on_cuda_under_bf16():
    """Gradient stability and the health statistics (svdvals) of a bf16 step on the device."""
    import math

    from momentum_ssl.analysis.health import HealthMonitor
    from momentum_ssl.analysis.telemetry import StabilityMonitor

    params = small(load_params(REPO / "params/cifar10.yaml"))
    learner = build_learner(params, RunSpec("byol", "full")).to(
        "cuda", memory_format=torch.channels_last)
    monitor = StabilityMonitor.attach(learner)
    health = HealthMonitor.attach(learner, 0.1)
    x = torch.rand(64, 3, 32, 32, device="cuda")
    for _ in range(2):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, logs = learner(x, x.flip(3))
        loss.backward()
        monitor.step()
    norms = monitor.latest()
    assert set(norms) == set(monitor.names) and all(math.isfinite(v) and v > 0
                                                    for v in norms.values())
    stats = health.measure()
    assert 0 < stats["z_std"] <= 1 / math.sqrt(health.dim) + 1e-6
    assert 1 <= stats["erank_y"] <= 64 and 1 <= stats["erank_z"] <= 64
    assert all(math.isfinite(float(v)) for v in logs.values())


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_each_precision_trains_a_recipe_on_cuda_with_its_losses_in_fp32(precision):
    from momentum_ssl.plumbing.precision import Precision, resolve_precision

    if precision == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip(f"{torch.cuda.get_device_name()} has no bf16")
    assert resolve_precision("auto", torch.device("cuda")) in ("bf16", "fp16")
    params = small(load_params(REPO / "params/cifar10.yaml"))
    run = RunSpec("barlow_twins", "full")  # a correlation matrix: the loss bf16 hurt most
    torch.manual_seed(0)
    learner = build_learner(params, run).to("cuda", memory_format=torch.channels_last)
    cfg = resolve(params, run).pretrain
    optimizer = build_optimizer(learner, cfg, cfg.lr)
    amp = Precision(precision, "cuda")
    x = torch.rand(64, 3, 32, 32, device="cuda")
    for _ in range(3):
        optimizer.zero_grad(set_to_none=True)
        with amp.autocast():
            loss, _ = learner(x, x.flip(3))
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        amp.backward(loss, optimizer)
        amp.step(optimizer)
        learner.update_teacher(0.99)
    assert all(torch.isfinite(p).all() for p in learner.parameters())
    print(f"{precision}: loss {loss.item():.4f} after 3 steps on {torch.cuda.get_device_name()}")


def test_two_deterministic_runs_of_the_training_step_give_the_same_weights():
    """compute.deterministic on the device: the seeded views (blur included), a ResNet step
    under bf16 and the EMA, twice from the same seed, to the bit."""
    from momentum_ssl.config import AugmentConfig, ComputeConfig
    from momentum_ssl.data.augment import ViewAugment
    from momentum_ssl.plumbing.compute import configure, state_digest
    from momentum_ssl.plumbing.precision import Precision

    params = small(load_params(REPO / "params/cifar10.yaml"))
    run = RunSpec("byol", "full")
    pixels = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0)).cuda()
    views = [ViewAugment(AugmentConfig(size=32, blur_p=(1.0, 0.1)), v, [0.5] * 3,
                         [0.25] * 3).cuda() for v in (0, 1)]

    def train() -> str:
        for view in views:
            view.reseed(0)
        torch.manual_seed(0)
        learner = build_learner(params, run).to("cuda", memory_format=torch.channels_last)
        cfg = resolve(params, run).pretrain
        optimizer = build_optimizer(learner, cfg, cfg.lr)
        amp = Precision("bf16" if torch.cuda.is_bf16_supported() else "fp16", "cuda")
        for _ in range(5):
            optimizer.zero_grad(set_to_none=True)
            with amp.autocast():
                loss, _ = learner(views[0](pixels), views[1](pixels))
            amp.backward(loss, optimizer)
            amp.step(optimizer)
            learner.update_teacher(0.99)
        return state_digest(learner.state_dict())

    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
              torch.backends.cudnn.deterministic)
    try:
        configure(ComputeConfig(deterministic=True), "cuda")
        assert train() == train()
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[1:]
