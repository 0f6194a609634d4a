"""pretrain.precision: what each device may train in, fp16's gradient scaler on the CPU (torch's
CPU autocast runs fp16), the setting's place in the plan and the provenance."""

import dataclasses
import json

import pytest
import torch

from conftest import TINY, make_params, tiny_learner
from momentum_ssl.config import ComputeConfig, RunSpec, run_params
from momentum_ssl.plumbing.compute import provenance
from momentum_ssl.plumbing.precision import Precision, PrecisionUnavailable, resolve_precision

CUDA = torch.device("cuda", 0)  # a device object only: the torch.cuda queries are mocked


def test_the_cpu_trains_in_fp32_and_refuses_bf16_and_fp16():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == resolve_precision("fp32", cpu) == "fp32"
    for choice in ("bf16", "fp16"):
        with pytest.raises(PrecisionUnavailable) as info:
            resolve_precision(choice, cpu)
        message = str(info.value)
        assert message.startswith(f"pretrain.precision: {choice} is for CUDA devices")
        assert "set precision auto or fp32" in message and "\n" not in message


@pytest.mark.parametrize("has_bf16, choice, expected", [
    (True, "auto", "bf16"), (True, "fp16", "fp16"), (True, "fp32", "fp32"),
    (False, "auto", "fp16"), (False, "fp16", "fp16"), (False, "fp32", "fp32")])
def test_auto_is_bf16_on_gpus_that_have_it_else_fp16(monkeypatch, has_bf16, choice, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation: has_bf16)
    assert resolve_precision(choice, CUDA) == expected


def test_bf16_on_a_gpu_without_it_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-16GB")
    with pytest.raises(PrecisionUnavailable, match=r"^pretrain.precision: Tesla V100-SXM2-16GB "
                                                   r"has no bf16 .*: set precision fp16 or fp32$"):
        resolve_precision("bf16", CUDA)


def step(learner, amp, optimizer, x, scale_loss=1.0):
    optimizer.zero_grad(set_to_none=True)
    with amp.autocast():
        loss, _ = learner(x, x.flip(3))
    amp.backward(scale_loss * loss, optimizer)
    amp.step(optimizer)
    return loss


def test_fp16_trains_with_its_gradient_scaler_and_skips_an_overflowing_step():
    """fp16 autocast on the CPU, as on a GPU without bf16: the scaler's steps train, its
    gradients reach the optimizer unscaled, and a step whose gradients overflow is skipped
    with the scale halved."""
    learner = tiny_learner("simclr", "none")
    optimizer = torch.optim.SGD(learner.parameters(), lr=0.05)
    amp = Precision("fp16", "cpu")
    # 2**16 to start, as on a GPU, overflows this small net's fp16 gradients for some steps
    amp.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    first = [p.detach().clone() for p in learner.parameters()]
    for _ in range(3):
        loss = step(learner, amp, optimizer, x)
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert any(not torch.equal(a, p) for a, p in zip(first, learner.parameters()))
    # the gradients the optimizer sees are the true ones: as an unscaled backward's
    optimizer.zero_grad(set_to_none=True)
    with amp.autocast():
        loss, _ = learner(x, x.flip(3))
    amp.backward(loss, optimizer)
    assert amp.grad_scale().item() > 1
    grads = [p.grad.clone() for p in learner.parameters() if p.grad is not None]
    amp.scaler.update()  # (no step: only the scaler's per-step state)
    optimizer.zero_grad(set_to_none=True)
    with amp.autocast():
        loss, _ = learner(x, x.flip(3))
    loss.backward()
    plain = [p.grad for p in learner.parameters() if p.grad is not None]
    for g, h in zip(grads, plain):  # unscaled, fp16's small gradients flush to zero
        assert torch.linalg.vector_norm(g - h) <= 0.05 * torch.linalg.vector_norm(h)
    # overflow: an inf gradient skips the step and halves the scale
    before = [p.detach().clone() for p in learner.parameters()]
    scale_before = amp.scaler.get_scale()
    step(learner, amp, optimizer, x, scale_loss=float("inf"))
    assert all(torch.equal(a, p) for a, p in zip(before, learner.parameters()))
    assert amp.scaler.get_scale() == scale_before / 2
    state = amp.state_dict()  # checkpointed with the run, and resumed from it
    again = Precision("fp16", "cpu")
    again.load_state_dict(state)
    assert again.scaler.get_scale() == amp.scaler.get_scale()


def test_fp32_and_bf16_leave_the_step_as_it_was():
    """fp32 is the loop's old arithmetic, bit for bit; bf16 has no scaler."""
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    states = []
    for amp in (None, Precision("fp32", "cpu")):
        learner = tiny_learner("byol", "full")
        optimizer = torch.optim.SGD(learner.parameters(), lr=0.05)
        for _ in range(2):
            if amp is None:
                loss, _ = learner(x, x.flip(3))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            else:
                step(learner, amp, optimizer, x)
        states.append(learner.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert Precision("bf16", "cpu").scaler is None and Precision("fp32").grad_scale() is None


def test_the_setting_enters_the_plan_only_when_set(tmp_path):
    tiny = make_params(tmp_path, **TINY)
    run = RunSpec("byol", "full")
    assert "precision" not in run_params(tiny, run)["pretrain"]
    fp16 = dataclasses.replace(tiny, pretrain=dataclasses.replace(tiny.pretrain,
                                                                 precision="fp16"))
    assert run_params(fp16, run)["pretrain"]["precision"] == "fp16"


def test_the_provenance_records_a_gpus_precision_and_leaves_the_cpus_as_it_was(monkeypatch):
    compute = ComputeConfig()
    cpu = provenance(compute, torch.device("cpu"), "fp32")
    assert "precision" not in cpu and cpu == provenance(compute, torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "Tesla T4")
    gpu = provenance(compute, CUDA, "fp16")
    assert gpu["device"] == "cuda" and gpu["gpu"] == "Tesla T4" and gpu["precision"] == "fp16"
    json.dumps(gpu)


def test_the_training_loop_runs_fp16s_scaler_path(tiny, tmp_path, monkeypatch):
    """The loop as a GPU without bf16 runs it (its CPU stand-in: fp16 autocast on the CPU),
    through clipping, the telemetry's unscaled norms and the checkpoint."""
    import momentum_ssl.stages.pretrain as train

    made = []

    def fp16(choice, device):
        made.append(Precision("fp16", device.type))
        return made[-1]

    monkeypatch.setattr(train.Precision, "for_device", staticmethod(fp16))
    params = dataclasses.replace(tiny, pretrain=dataclasses.replace(tiny.pretrain,
                                                                   clip_grad=3.0))
    out = train.pretrain(params, RunSpec("byol", "full"), tmp_path / "run")
    assert made and made[0].scaler.get_scale() > 1
    metrics = json.loads((out / "dvclive" / "metrics.json").read_text())
    norms = [s["grad_norm"] for s in metrics["stability"].values()]
    assert all(0 < n < 100 for n in norms), norms  # unscaled: not 65,536 times the gradient
    state = torch.load(out / "model.pt", weights_only=False)["learner"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
