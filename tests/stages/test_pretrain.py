import dataclasses
import json

import pytest
import torch
import yaml

from conftest import REPO, tiny_learner
from momentum_ssl.config import ParamGroupConfig, PretrainConfig, RunSpec, load_params, resolve
from momentum_ssl.stages.pretrain import (LARS, TrainingDiverged, build_optimizer, learning_rate,
                                          pretrain, set_learning_rates, set_weight_decay,
                                          weight_decay)

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
    from momentum_ssl.stages.pretrain import clip_gradients

    module = torch.nn.Linear(2, 2)
    module.weight.grad = torch.tensor([[3.0, 4.0], [0.0, 0.0]])  # norm 5
    module.bias.grad = torch.tensor([0.6, 0.8])  # norm 1: left alone
    clip_gradients(module, 2.0)
    torch.testing.assert_close(module.weight.grad,
                               torch.tensor([[3.0, 4.0], [0.0, 0.0]]) * 2 / (5 + 1e-6))
    torch.testing.assert_close(module.bias.grad, torch.tensor([0.6, 0.8]))


def tsv_steps(path):
    return [int(line.split("\t")[0]) for line in path.read_text().splitlines()[1:]]


def test_pretrain_writes_model_logs_stability_and_params(tiny, tmp_path):
    out = pretrain(tiny, RunSpec("byol", "full", residual=True), tmp_path / "run")
    assert {p.name for p in out.iterdir()} == {"model.pt", "params.yaml", "dvclive",
                                               "provenance.json"}
    assert torch.load(out / "model.pt", weights_only=False)["epochs"] == 2
    metrics = json.loads((out / "dvclive" / "metrics.json").read_text())
    assert {"loss", "lr", "tau", "gap_projector", "residual"} <= set(metrics["train"])
    assert set(metrics["stability"]) == {"stem", "stage1", "stage2", "stage3", "stage4",
                                         "projector"}
    for stats in metrics["stability"].values():
        assert stats["grad_norm"] > 0 and stats["cv"] > 0 and stats["rel_change"] > 0
    assert metrics["time"]["steps"] == 2 * 5  # 160 images / 32, two epochs
    assert metrics["time"]["pretrain_s"] > 0
    plots = out / "dvclive" / "plots" / "metrics"
    assert tsv_steps(plots / "train" / "loss.tsv") == list(range(10))  # log_every 1
    assert tsv_steps(plots / "grad_norm" / "stage4.tsv") == list(range(10))
    saved = yaml.safe_load((out / "params.yaml").read_text())
    assert saved["run"]["name"] == "byol-full-res" and saved["residual"]["weight"] == 1.0
    assert set(saved["method"]) == {"proj_hidden", "proj_out", "pred_hidden"}


def test_a_checkpoint_of_other_run_params_is_not_resumed(tiny, tmp_path, monkeypatch):
    import momentum_ssl.stages.pretrain as train

    real = train.cosine_tau

    def dying(step, total, *tau):
        if step == 7:
            raise KeyboardInterrupt
        return real(step, total, *tau)

    monkeypatch.setattr(train, "cosine_tau", dying)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny, RunSpec("byol", "full"), tmp_path / "run")
    monkeypatch.setattr(train, "cosine_tau", real)
    changed = dataclasses.replace(tiny, momentum=dataclasses.replace(tiny.momentum, tau=0.9))
    out = pretrain(changed, RunSpec("byol", "full"), tmp_path / "run")
    metrics = json.loads((out / "dvclive" / "metrics.json").read_text())
    assert tsv_steps(out / "dvclive" / "plots" / "metrics" / "train" / "tau.tsv") == \
        list(range(10))
    assert metrics["time"]["steps"] == 10


def test_resume_after_a_kill_gives_the_same_weights(tiny, tmp_path, monkeypatch):
    run = RunSpec("mocov2", "full")
    straight = pretrain(tiny, run, tmp_path / "straight")

    import momentum_ssl.stages.pretrain as train

    real = train.cosine_tau

    def dying(step, total, *tau):  # the process dies during the second epoch
        if step == 7:
            raise KeyboardInterrupt
        return real(step, total, *tau)

    monkeypatch.setattr(train, "cosine_tau", dying)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny, run, tmp_path / "resumed")
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["epoch"] == 1
    assert not (tmp_path / "resumed" / "model.pt").exists()
    monkeypatch.setattr(train, "cosine_tau", real)
    resumed = pretrain(tiny, run, tmp_path / "resumed")
    assert not (resumed / "checkpoint.pt").exists()  # finished: a rerun starts afresh

    # the logs read as one run: no step logged twice, the same stability summary
    plots = resumed / "dvclive" / "plots" / "metrics"
    assert tsv_steps(plots / "train" / "loss.tsv") == list(range(10))
    summary = [json.loads((out / "dvclive" / "metrics.json").read_text())["stability"]
               for out in (straight, resumed)]
    assert summary[0] == summary[1]

    a = torch.load(straight / "model.pt", weights_only=False)["learner"]
    b = torch.load(resumed / "model.pt", weights_only=False)["learner"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_a_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tiny, tmp_path,
                                                                      monkeypatch):
    import momentum_ssl.stages.pretrain as train

    real = train.build_learner

    def poisoned(params, run):
        learner = real(params, run)
        forward = learner.forward
        calls = {"n": 0}

        def nan_after_six(*views, epoch=0):
            loss, logs = forward(*views, epoch=epoch)
            calls["n"] += 1
            return (loss * float("nan") if calls["n"] > 6 else loss), logs

        learner.forward = nan_after_six
        return learner

    monkeypatch.setattr(train, "build_learner", poisoned)
    with pytest.raises(TrainingDiverged) as info:
        pretrain(tiny, RunSpec("byol", "none"), tmp_path / "run")
    msg = str(info.value)
    assert "the loss is nan at step 6 (epoch 2)" in msg and "last finite values" in msg
    assert "'step': 5" in msg and "checkpoint.pt" in msg
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 1  # the last good checkpoint is kept
