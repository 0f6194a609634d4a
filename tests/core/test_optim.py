"""The optimiser and its schedules (core/optim.py): values against their formulas, and the
foreach LARS and clipping against the per-parameter loops they replaced, to the bit."""

import pytest
import torch

from conftest import REPO, tiny_learner
from momentum_ssl.config import ParamGroupConfig, PretrainConfig, load_params, resolve
from momentum_ssl.core.optim import (LARS, build_optimizer, clip_gradients, learning_rate,
                                     set_learning_rates, set_weight_decay, weight_decay)


def test_learning_rate_warms_up_then_decays_to_zero():
    assert learning_rate(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert learning_rate(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert learning_rate(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert learning_rate(55, 100, 10, 1.0) == pytest.approx(0.5)
    assert learning_rate(100, 100, 10, 1.0) == pytest.approx(0.0)


def test_the_lr_cosine_ends_at_min_lr_and_a_zero_floor_changes_no_bit():
    # DINO's utils.cosine_scheduler(peak, min_lr, ...) after the warm-up
    assert learning_rate(100, 100, 10, 1.0, 1e-3) == pytest.approx(1e-3)
    assert learning_rate(55, 100, 10, 1.0, 1e-3) == pytest.approx(1e-3 + (1 - 1e-3) / 2)
    assert learning_rate(5, 100, 10, 1.0, 1e-3) == learning_rate(5, 100, 10, 1.0)  # warm-up
    import math
    for step in range(10, 101):  # the formula before the floor existed, to the bit
        old = 0.15 * 0.5 * (1 + math.cos(math.pi * min((step - 10) / 90, 1.0)))
        assert learning_rate(step, 100, 10, 0.15) == old


def test_weight_decay_follows_dinos_cosine_from_start_to_end():
    import numpy as np
    total, start, end = 40, 0.04, 0.4
    reference = end + 0.5 * (start - end) * (1 + np.cos(np.pi * np.arange(total) / total))
    ours = [weight_decay(step, total, start, end) for step in range(total)]
    assert ours == pytest.approx(reference.tolist())
    assert ours[0] == pytest.approx(start) and ours == sorted(ours)


def test_the_weight_decay_schedule_spares_a_group_with_its_own_weight_decay():
    cfg = PretrainConfig(optimizer="adamw", weight_decay=0.04, weight_decay_end=0.4,
                         param_groups=(ParamGroupConfig(select="bias_and_norm",
                                                        weight_decay=0.0),))
    optimizer = build_optimizer(tiny_learner(), cfg, 1e-3)
    set_weight_decay(optimizer, cfg, 0.3)
    by_select = {g["select"]: g["weight_decay"] for g in optimizer.param_groups}
    assert by_select == {"bias_and_norm": 0.0, "rest": 0.3}


def lars_reference(params, grads, bufs, lr, momentum, wd, eta, clip, exclude, eps=1e-8):
    """solo-learn's LARS step (solo/utils/lars.py), written out with plain floats."""
    out = []
    for i, (w, g) in enumerate(zip(params, grads)):
        d = g.clone()
        if w.ndim != 1 or not exclude:
            w_norm, g_norm = w.norm().item(), g.norm().item()
            if w_norm != 0 and g_norm != 0:
                trust = eta * w_norm / (g_norm + w_norm * wd + eps)
                if clip:
                    trust = min(trust / lr, 1.0)
                d = (g + wd * w) * trust
        bufs[i] = d.clone() if bufs[i] is None else bufs[i] * momentum + d
        out.append(w - lr * bufs[i])
    return out


@pytest.mark.parametrize("clip,exclude", [(True, True), (False, True), (True, False),
                                          (False, False)])
def test_lars_matches_its_formula_with_clipping_and_exclusions(clip, exclude):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5),
                                torch.nn.Linear(5, 3))
    params = list(model.parameters())
    expected, bufs = [p.detach().clone() for p in params], [None] * len(params)
    lr, wd, eta = 0.005, 1e-2, 0.02
    opt = LARS(params, lr=lr, momentum=0.9, weight_decay=wd, eta=eta, clip_lr=clip,
               exclude_bias_n_norm=exclude)
    for step in range(3):
        loss = model(torch.randn(8, 6, generator=torch.Generator().manual_seed(step))).pow(2)
        opt.zero_grad()
        loss.mean().backward()
        grads = [p.grad.detach().clone() for p in params]
        expected = lars_reference(expected, grads, bufs, lr, 0.9, wd, eta, clip, exclude)
        opt.step()
        for got, want in zip(params, expected):
            torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-7)
    # the clipping case is exercised: some layer's trust ratio is above lr
    w, g = params[0].detach(), params[0].grad
    assert eta * w.norm() / (g.norm() + wd * w.norm()) > lr


def test_lars_leaves_excluded_vectors_without_decay_or_adaptation():
    w = torch.nn.Parameter(torch.full((2, 2), 2.0))
    b = torch.nn.Parameter(torch.ones(2))
    w.grad, b.grad = torch.full((2, 2), 0.5), torch.full((2,), 0.5)
    LARS([w, b], lr=1.0, momentum=0.0, weight_decay=0.1, eta=0.01, clip_lr=False).step()
    trust = 0.01 * 4.0 / (1.0 + 0.1 * 4.0 + 1e-8)  # ||w|| = 4, ||g|| = 1
    torch.testing.assert_close(w.detach(), torch.full((2, 2), 2.0) - trust * (0.5 + 0.1 * 2.0))
    torch.testing.assert_close(b.detach(), torch.full((2,), 0.5))  # plain SGD, no decay


def test_a_constant_parameter_group_keeps_its_lr_through_the_schedule():
    params = load_params(REPO / "params/cifar10.yaml")
    run = next(r for r in params.grid if r.name == "simsiam-none")
    cfg = resolve(params, run).pretrain
    learner = tiny_learner("simsiam", "none")
    optimizer = build_optimizer(learner, cfg, peak=0.5)
    groups = {g["select"]: g for g in optimizer.param_groups}
    assert set(groups) == {"predictor", "rest"}
    assert {id(p) for p in groups["predictor"]["params"]} == {
        id(p) for p in learner.predictor.parameters()}
    total, warmup = 100, 10
    for step in (0, 5, 10, 50, 99):
        lr = learning_rate(step, total, warmup, 0.5)
        set_learning_rates(optimizer, lr, 0.5)
        assert groups["predictor"]["lr"] == 0.5  # never warmed up nor decayed
        assert groups["rest"]["lr"] == pytest.approx(lr)
    assert groups["rest"]["lr"] < 0.01  # the rest decayed


def test_param_groups_scale_the_lr_and_take_their_own_weight_decay():
    cfg = PretrainConfig(weight_decay=1e-4, param_groups=(
        ParamGroupConfig("bias_and_norm", lr_scale=0.024, weight_decay=0.0),))
    learner = tiny_learner("byol", "none")
    optimizer = build_optimizer(learner, cfg, peak=1.0)
    norm, rest = optimizer.param_groups
    assert all(p.ndim == 1 for p in norm["params"]) and all(p.ndim > 1 for p in rest["params"])
    assert norm["weight_decay"] == 0.0 and rest["weight_decay"] == 1e-4
    set_learning_rates(optimizer, 0.5, 1.0)
    assert norm["lr"] == pytest.approx(0.012) and rest["lr"] == 0.5


def test_adamw_takes_the_groups_and_their_weight_decay():
    cfg = PretrainConfig(optimizer="adamw", weight_decay=0.04, param_groups=(
        ParamGroupConfig("bias_and_norm", weight_decay=0.0),))
    optimizer = build_optimizer(tiny_learner("byol", "none"), cfg, peak=5e-4)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0, 0.04]
    assert all(g["lr"] == 5e-4 for g in optimizer.param_groups)


def test_clip_gradients_scales_each_parameter_to_the_clip_on_its_own():
    module = torch.nn.Linear(2, 2)
    module.weight.grad = torch.tensor([[3.0, 4.0], [0.0, 0.0]])  # norm 5
    module.bias.grad = torch.tensor([0.6, 0.8])  # norm 1: left alone
    clip_gradients(module, 2.0)
    torch.testing.assert_close(module.weight.grad,
                               torch.tensor([[3.0, 4.0], [0.0, 0.0]]) * 2 / (5 + 1e-6))
    torch.testing.assert_close(module.bias.grad, torch.tensor([0.6, 0.8]))


# The per-parameter loops that LARS.step and clip_gradients ran before they took foreach
# operations, kept verbatim: on the CPU the foreach versions must give the same bits.
@torch.no_grad()
def lars_loop_step(optimizer: LARS) -> None:
    for group in optimizer.param_groups:
        lr, wd = group["lr"], group["weight_decay"]
        for p in group["params"]:
            if p.grad is None:
                continue
            d = p.grad
            if p.ndim > 1 or not group["exclude_bias_n_norm"]:
                w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
                trust = group["eta"] * w_norm / (g_norm + wd * w_norm + group["eps"])
                if group["clip_lr"] and lr > 0:
                    trust = torch.clamp(trust / lr, max=1.0)
                d = torch.where((w_norm > 0) & (g_norm > 0), d.add(p, alpha=wd) * trust, d)
            buf = optimizer.state[p].get("momentum_buffer")
            if buf is None:
                buf = optimizer.state[p]["momentum_buffer"] = d.clone()
            else:
                buf.mul_(group["momentum"]).add_(d)
            p.add_(buf, alpha=-lr)


@torch.no_grad()
def clip_loop(module: torch.nn.Module, clip: float) -> None:
    for p in module.parameters():
        if p.grad is not None:
            factor = clip / (torch.linalg.vector_norm(p.grad) + 1e-6)
            p.grad.mul_(factor.clamp(max=1.0))


def toy_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8),
                                torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 5))
    with torch.no_grad():
        model[3].bias.zero_()  # a zero weight norm: the trust ratio's guard takes the gradient
    return model


@pytest.mark.parametrize("clip_lr,exclude,wd,clip", [(True, True, 1e-2, 0.5),
                                                     (False, False, 1e-5, 0.05),
                                                     (True, False, 0.0, 0.0)])
def test_foreach_lars_and_clipping_give_the_loops_bits_on_the_cpu(clip_lr, exclude, wd, clip):
    models = [toy_model(0), toy_model(0)]
    groups = [[{"params": list(m[:2].parameters()), "weight_decay": 0.0},
               {"params": list(m[2:].parameters())}] for m in models]
    opts = [LARS(g, lr=0.3, momentum=0.9, weight_decay=wd, eta=0.02, clip_lr=clip_lr,
                 exclude_bias_n_norm=exclude) for g in groups]
    for step in range(4):
        x = torch.randn(16, 3, 6, 6, generator=torch.Generator().manual_seed(step))
        for model, opt in zip(models, opts):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            if step == 2:
                model[0].bias.grad = None  # a parameter without a gradient is skipped
        if clip:
            clip_gradients(models[0], clip)
            clip_loop(models[1], clip)
            for a, b in zip(models[0].parameters(), models[1].parameters()):
                if a.grad is not None:
                    assert torch.equal(a.grad, b.grad)
        opts[0].step()
        lars_loop_step(opts[1])
        for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values()):
            assert torch.equal(a, b)  # to the bit
    clipped = [p.grad.norm() for p in models[0].parameters() if p.grad is not None]
    assert not clip or min(clipped) <= clip + 1e-6  # the clipping case is exercised
