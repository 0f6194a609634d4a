"""DINO: the loss against the formula (centering, sharpening, the pairs), the centre's EMA,
the teacher-temperature schedule, the head, the frozen last layer and multi-crop in the
learner."""

import math

import numpy as np
import pytest
import torch

from momentum_ssl.core import losses as L
from momentum_ssl.core.learner import Learner
from momentum_ssl.core.methods import build_method
from momentum_ssl.core.methods.byol import BYOLConfig
from momentum_ssl.core.methods.dino import DINOConfig, WeightNormLinear, teacher_temperature
from momentum_ssl.core.models.backbones import resnet_tiny

SMALL = DINOConfig(proj_hidden=16, proj_bottleneck=8, proj_out=10)


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def test_dino_loss_by_hand_on_one_image():
    # K = 3, N = 1, two global views and one local crop; every number written out
    s = [torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([[0.0, 2.0, 0.0]]),
         torch.tensor([[0.5, 0.5, 0.0]])]
    t = [torch.tensor([[0.2, 0.1, 0.0]]), torch.tensor([[0.0, 0.0, 0.3]])]
    center = torch.tensor([0.1, 0.0, 0.0])
    ts, tt = 0.5, 0.1
    # teacher 0, centred: (0.1, 0.1, 0.0), sharpened /0.1: (1, 1, 0)
    q0 = np.array([math.e, math.e, 1.0]) / (2 * math.e + 1)
    # teacher 1, centred: (-0.1, 0, 0.3), /0.1: (-1, 0, 3)
    q1 = np.array([math.exp(-1), 1.0, math.exp(3)]) / (math.exp(-1) + 1 + math.exp(3))

    def log_p(v):  # student view v at temperature 0.5
        x = s[v].numpy()[0] / ts
        return x - math.log(np.exp(x).sum())

    # pairs: (t0, s1), (t0, s2), (t1, s0), (t1, s2); never a teacher with its own view
    pairs = [(q0, 1), (q0, 2), (q1, 0), (q1, 2)]
    expected = np.mean([-(q * log_p(v)).sum() for q, v in pairs])
    assert L.dino_loss(s, t, center, ts, tt).item() == pytest.approx(expected, rel=1e-6)


def test_dino_loss_matches_the_formula_on_a_batch_in_float64():
    g = torch.Generator().manual_seed(0)
    n, k, local = 5, 7, 3
    s = [torch.randn(n, k, generator=g, dtype=torch.float64) for _ in range(2 + local)]
    t = [torch.randn(n, k, generator=g, dtype=torch.float64) for _ in range(2)]
    center = torch.randn(k, generator=g, dtype=torch.float64)
    ts, tt = 0.1, 0.04
    total, terms = 0.0, 0
    for i in range(2):
        for v in range(2 + local):
            if v == i:
                continue
            rows = []
            for r in range(n):
                q = softmax((t[i][r].numpy() - center.numpy()) / tt)
                lp = np.log(softmax(s[v][r].numpy() / ts))
                rows.append(-(q * lp).sum())
            total += np.mean(rows)
            terms += 1
    assert terms == 2 * (2 + local) - 2
    # computed in fp32 inside: the inputs' float64 is cast down
    assert L.dino_loss(s, t, center, ts, tt).item() == pytest.approx(total / terms, rel=1e-5)
    # the centre and the sharpening matter: without them the loss is another number
    assert L.dino_loss(s, t, torch.zeros(k), ts, tt).item() != pytest.approx(total / terms,
                                                                               rel=1e-3)
    assert L.dino_loss(s, t, center, ts, 1.0).item() != pytest.approx(total / terms, rel=1e-3)


def test_dino_loss_gradient_flows_to_the_student_only_and_shapes_are_checked():
    s = [torch.randn(4, 6, requires_grad=True) for _ in range(3)]
    t = [torch.randn(4, 6, requires_grad=True) for _ in range(2)]
    L.dino_loss(s, [x.detach() for x in t], torch.zeros(6)).backward()
    assert all(x.grad is not None for x in s) and all(x.grad is None for x in t)
    with pytest.raises(ValueError, match="views must be"):
        L.dino_loss(s, [torch.randn(4, 5), torch.randn(4, 5)], torch.zeros(6))
    with pytest.raises(ValueError, match="at least one teacher view"):
        L.dino_loss(s[:1], t[:1], torch.zeros(6))


def test_the_centre_is_an_ema_of_the_teachers_batch_mean():
    center = torch.tensor([[1.0, 2.0]])
    t = [torch.tensor([[0.0, 0.0], [2.0, 4.0]]), torch.tensor([[4.0, 8.0], [2.0, 0.0]])]
    # batch mean over the 4 teacher rows: (2, 3); 0.9 * (1, 2) + 0.1 * (2, 3) = (1.1, 2.1)
    torch.testing.assert_close(L.dino_center(center, t, 0.9), torch.tensor([[1.1, 2.1]]))


def test_teacher_temperature_warms_up_as_np_linspace_then_stays():
    expected = np.linspace(0.04, 0.07, 30)
    for epoch in (0, 1, 15, 29):
        assert teacher_temperature(epoch, 30, 0.04, 0.07) == pytest.approx(expected[epoch])
    assert teacher_temperature(30, 30, 0.04, 0.07) == 0.07
    assert teacher_temperature(0, 0, 0.04, 0.07) == 0.07  # no warm-up
    assert teacher_temperature(0, 1, 0.04, 0.07) == 0.04  # linspace(a, b, 1) == [a]


def test_weight_normalised_last_layer_has_rows_of_norm_g():
    layer = WeightNormLinear(8, 5)
    assert not layer.weight_g.requires_grad
    x = torch.randn(3, 8)
    w = layer.weight_v / layer.weight_v.norm(dim=1, keepdim=True)
    torch.testing.assert_close(layer(x), x @ w.T)
    assert WeightNormLinear(8, 5, fixed_norm=False).weight_g.requires_grad


def dino_learner(scope="full", cfg=SMALL):
    torch.manual_seed(0)
    return Learner(resnet_tiny(8), build_method("dino", cfg), scope)


def test_the_method_updates_its_centre_after_the_loss_and_checkpoints_it():
    learner = dino_learner()
    assert "method.center" in learner.state_dict()
    x1, x2 = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    loss, logs = learner(x1, x2)
    # the loss used the centre before the update (zeros); the centre moved by 0.1 of the mean
    # of the teacher's outputs of both views
    with torch.no_grad():
        t = [learner.teacher(x)[1] for x in (x1, x2)]
        s = [learner.projector(learner.backbone(x)) for x in (x1, x2)]
    torch.testing.assert_close(loss, L.dino_loss(s, t, torch.zeros(10), 0.1, 0.07))
    torch.testing.assert_close(learner.method.center, 0.1 * torch.cat(t).mean(0, keepdim=True))
    assert float(logs["teacher_temperature"]) == pytest.approx(0.07)


def test_the_last_layer_gets_no_gradient_in_the_first_epoch_only():
    learner = dino_learner()
    for epoch, frozen in ((0, True), (1, False)):
        learner.zero_grad(set_to_none=True)
        loss, _ = learner(torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16), epoch=epoch)
        loss.backward()
        learner.method.cancel_gradients(learner.projector, epoch)
        assert (learner.projector.last_layer.weight_v.grad is None) == frozen
        assert learner.projector.mlp[0].weight.grad is not None
        assert learner.projector.last_layer.weight_g.grad is None  # its norm stays 1


def test_local_crops_reach_the_student_only():
    cfg = DINOConfig(proj_hidden=16, proj_bottleneck=8, proj_out=10, warmup_teacher_epochs=3)
    learner = dino_learner(cfg=cfg)
    teacher_calls, student_calls = [], []
    learner.teacher.blocks[0].register_forward_hook(lambda m, i, o: teacher_calls.append(i[0]))
    learner.backbone.blocks[0].register_forward_hook(lambda m, i, o: student_calls.append(i[0]))
    x1, x2 = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    local = [torch.randn(4, 3, 8, 8) for _ in range(3)]
    loss, logs = learner(x1, x2, *local, epoch=1)
    assert [x.shape[-1] for x in teacher_calls] == [16, 16]
    assert sorted(x.shape[-1] for x in student_calls) == [8, 8, 8, 16, 16]
    assert float(logs["teacher_temperature"]) == pytest.approx(0.055)  # linspace(.04, .07, 3)
    learner.method.center.zero_()
    with torch.no_grad():
        s = [learner.projector(learner.backbone(x)) for x in (x1, x2, *local)]
        t = [learner.teacher(x)[1] for x in (x1, x2)]
    torch.testing.assert_close(loss, L.dino_loss(s, t, torch.zeros(10), 0.1, 0.055))


def test_a_two_view_method_refuses_local_crops():
    method = build_method("byol", BYOLConfig(proj_hidden=16, proj_out=8, pred_hidden=16))
    learner = Learner(resnet_tiny(8), method, "full")
    with pytest.raises(ValueError, match="byol takes two views, got 3: local crops"):
        learner(torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16), torch.randn(4, 3, 8, 8))


def test_config_ranges():
    with pytest.raises(ValueError, match="center_momentum: must be in"):
        DINOConfig(center_momentum=1.0)
    with pytest.raises(ValueError, match="teacher_temperature: must be > 0"):
        build_method("dino", DINOConfig(teacher_temperature=0.0))
