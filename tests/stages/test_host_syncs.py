"""No training step waits for the device (issue 39, item 4). A step runs on a mocked device,
"meta" (shapes without data: a value read back to the host is the only way to learn one),
through the loop's own code (train_one_epoch, the two views' augmentations included), with
every call that reads a device value on the host counted: ``item``, ``bool``, ``int``,
``float``, ``cpu``, ``tolist``, ``numpy``, ``nonzero``, ``torch.equal``. Each such call on a
GPU waits for every kernel queued before it. Two steps must make exactly one, the loss's
finiteness check at the epoch's end; a per-step read (the old per-step ``isfinite``,
``torch.equal`` of the gray test, MoCo's ``int(queue_ptr)``, UniGrad's ``bool(F_ready)``)
would make three or more."""

import contextlib
import traceback

import pytest
import torch

from conftest import TINY, make_params
from momentum_ssl.analysis.health import HealthMonitor
from momentum_ssl.analysis.monitor import KnnMonitor
from momentum_ssl.analysis.telemetry import StabilityMonitor
from momentum_ssl.config import resolve
from momentum_ssl.core.learner import build_learner
from momentum_ssl.core.optim import build_optimizer
from momentum_ssl.data.augment import ViewAugment
from momentum_ssl.plumbing.precision import Precision
from momentum_ssl.stages import pretrain as P

META = torch.device("meta")
# what a read returns on the mocked device, so that the step goes on and every read is counted
READS = {"item": 0.0, "__bool__": False, "__int__": 0, "__float__": 0.0, "cpu": None,
         "tolist": None, "numpy": None, "nonzero": None}


@pytest.fixture
def counted(monkeypatch):
    """Host reads of meta tensors, each with the function that made it; host-to-device copies
    (``to`` from the CPU) with their non_blocking flag."""
    reads, copies = [], []

    def counting(owner, name, fake):
        real = getattr(owner, name)

        def read(*args, **kwargs):
            if any(isinstance(a, torch.Tensor) and a.device.type == "meta" for a in args):
                reads.append(traceback.extract_stack(limit=2)[0].name)
                if fake is not None:
                    return fake
            return real(*args, **kwargs)
        monkeypatch.setattr(owner, name, read)

    for name, fake in READS.items():
        counting(torch.Tensor, name, fake)
    counting(torch, "equal", None)
    counting(torch, "nonzero", None)
    to = torch.Tensor.to

    def copy(self, *args, **kwargs):
        out = to(self, *args, **kwargs)
        if self.device.type == "cpu" and out.device.type == "meta":
            copies.append(kwargs.get("non_blocking", False))
        return out
    monkeypatch.setattr(torch.Tensor, "to", copy)
    # autocast knows no meta device: off there, as it is on the CPU
    autocast, enabled = torch.autocast, torch.is_autocast_enabled
    monkeypatch.setattr(torch, "autocast", lambda device_type, *a, **k: (
        contextlib.nullcontext() if device_type == "meta" else autocast(device_type, *a, **k)))
    monkeypatch.setattr(torch, "is_autocast_enabled",
                        lambda *a: False if a and a[0] == "meta" else enabled(*a))
    return reads, copies


@pytest.mark.parametrize("method", ["mocov2", "mocov3", "unigrad", "simclr"])  # a queue, a
# queue-free contrast, UniGrad's F, SimCLR's labels
def test_a_training_step_reads_nothing_back_from_the_device(tmp_path, counted, method):
    reads, copies = counted
    scope = "none" if method == "simclr" else "full"
    pretrain = {**TINY["pretrain"], "log_every": 100, "clip_grad": 3.0}  # no log step
    params = make_params(tmp_path, **{**TINY, "pretrain": pretrain,
                                      "grid": {f"{method}-{scope}": {"method": method,
                                                                     "scope": scope}}})
    run = params.grid[0]
    params = resolve(params, run)
    learner = build_learner(params, run).to(META)
    views = [ViewAugment(params.augment, v, [0.5] * 3, [0.25] * 3).to(META) for v in (0, 1)]

    class Loader:  # two batches of colour pixels, augmented as the loader does
        def __iter__(self):
            for _ in range(2):
                x = torch.empty(32, 3, 12, 12, dtype=torch.uint8, device=META)
                yield *(view(x) for view in views), torch.empty(32, dtype=torch.long,
                                                                device=META)

    t = P.Training(params, run, tmp_path, "stamp", META, 0, 1, Loader(), learner, learner,
                   build_optimizer(learner, params.pretrain, 0.1),
                   StabilityMonitor.attach(learner), HealthMonitor.attach(learner, 0.01),
                   KnnMonitor.build(params, learner, META, active=False), 0.1, 10, 20, 2,
                   Precision.for_device("fp32", torch.device("cpu")))
    reads.clear()
    copies.clear()
    progress = P.Progress(step=1)
    P.train_one_epoch(t, progress, None)
    assert progress.step == 3
    assert reads == ["check_finite"]  # at the epoch's end (or a log step), not every step
    # each view's random parameters: one non-blocking copy per dtype (three), per step
    assert len(copies) == 2 * 2 * 3 and all(copies)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["mocov2", "unigrad"])
def test_cuda_training_steps_make_no_synchronising_call(tmp_path, method):
    """On a GPU, what the mocked device stands for: after a first step (cuDNN's and the
    allocators' first calls, UniGrad's first F), two steps of the loop, augmentations
    included, under ``torch.cuda.set_sync_debug_mode("error")``, which raises at any call that
    waits for the device (a read, a copy from pageable memory). The epoch's finiteness check
    comes after the debug mode is off again. Run by the GPU check's step 3."""
    device = torch.device("cuda")
    params = make_params(tmp_path, **{**TINY, "pretrain": {**TINY["pretrain"], "log_every": 100,
                                                           "clip_grad": 3.0},
                                      "grid": {f"{method}-full": {"method": method,
                                                                  "scope": "full"}}})
    run = params.grid[0]
    params = resolve(params, run)
    learner = build_learner(params, run).to(device).to(memory_format=torch.channels_last)
    views = [ViewAugment(params.augment, v, [0.5] * 3, [0.25] * 3).to(device) for v in (0, 1)]
    pixels = torch.randint(0, 256, (32, 3, 12, 12), dtype=torch.uint8, device=device)

    class Loader:  # the first batch outside the debug mode, the next two under it
        def __iter__(self):
            for i in range(3):
                if i == 1:
                    torch.cuda.synchronize()
                    torch.cuda.set_sync_debug_mode("error")
                yield *(view(pixels) for view in views), torch.zeros(32, dtype=torch.long,
                                                                     device=device)
            torch.cuda.set_sync_debug_mode("default")

    t = P.Training(params, run, tmp_path, "stamp", device, 0, 1, Loader(), learner, learner,
                   build_optimizer(learner, params.pretrain, 0.1),
                   StabilityMonitor.attach(learner), HealthMonitor.attach(learner, 0.01),
                   KnnMonitor.build(params, learner, device, active=False), 0.1, 10, 30, 3,
                   Precision.for_device("auto", device))
    try:
        P.train_one_epoch(t, P.Progress(step=1), None)
    finally:
        torch.cuda.set_sync_debug_mode("default")
