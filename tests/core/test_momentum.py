import pytest
import torch
from torch import nn

from momentum_ssl.core.models.backbones import resnet_tiny
from momentum_ssl.core.momentum import Teacher, cosine_tau, ema_update_, teacher_start


def test_cosine_schedule_start_middle_end():
    assert cosine_tau(0, 100, 0.99) == pytest.approx(0.99)
    assert cosine_tau(50, 100, 0.99) == pytest.approx(0.995)
    assert cosine_tau(100, 100, 0.99) == pytest.approx(1.0)
    assert cosine_tau(25, 100, 0.996) == pytest.approx(1 - 0.004 * (2 ** 0.5 / 2 + 1) / 2)
    assert cosine_tau(150, 100, 0.99) == pytest.approx(1.0)  # past the end it stays at 1
    with pytest.raises(ValueError, match="total_steps must be positive"):
        cosine_tau(0, 0, 0.99)


def pair():
    online, teacher = nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():
        online.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        online.bias.copy_(torch.tensor([10.0, -10.0]))
        teacher.weight.zero_()
        teacher.bias.fill_(1.0)
    return online, teacher


def test_ema_update_exact_numbers():
    online, teacher = pair()
    ema_update_([(online, teacher)], 0.9)
    torch.testing.assert_close(teacher.weight, torch.tensor([[0.1, 0.2], [0.3, 0.4]]))
    torch.testing.assert_close(teacher.bias, torch.tensor([1.9, -0.1]))
    ema_update_([(online, teacher)], 0.9)
    ema_update_([(online, teacher)], 0.9)
    # after n updates towards a fixed online: online + tau^n (teacher0 - online)
    torch.testing.assert_close(teacher.weight, online.weight * (1 - 0.9 ** 3))
    torch.testing.assert_close(teacher.bias, online.bias + 0.9 ** 3 * (1 - online.bias))
    assert online.weight.tolist() == [[1.0, 2.0], [3.0, 4.0]]  # the online side is untouched


def test_ema_update_covers_every_pair_and_tau_bounds():
    (a, ta), (b, tb) = pair(), pair()
    ema_update_([(a, ta), (b, tb)], 0.0)  # tau 0 copies the online weights
    torch.testing.assert_close(ta.weight, a.weight)
    torch.testing.assert_close(tb.bias, b.bias)
    before = ta.weight.clone()
    ema_update_([(a, ta)], 1.0)  # tau 1 keeps the teacher
    torch.testing.assert_close(ta.weight, before)
    with pytest.raises(ValueError, match="online but"):
        ema_update_([(nn.Linear(2, 2), nn.Linear(2, 2, bias=False))], 0.9)


def test_teacher_batchnorm_buffers_follow_its_own_forwards_not_the_ema():
    online, teacher = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    online(torch.randn(8, 3) + 5)  # online running_mean moves towards 5
    before = teacher.running_mean.clone()
    ema_update_([(online, teacher)], 0.5)
    torch.testing.assert_close(teacher.running_mean, before)  # buffers are not averaged
    teacher(torch.randn(8, 3) - 5)  # train mode: its own batch statistics update them
    assert (teacher.running_mean < 0).all()


def test_teacher_start_per_scope_and_impossible_scopes():
    backbone = resnet_tiny(8)  # stem + 4 stages
    assert teacher_start("none", 1, backbone) is None
    assert teacher_start("full", 1, backbone) == 0
    assert teacher_start("projector", 1, backbone) == 5
    assert teacher_start("last_k", 1, backbone) == 4
    assert teacher_start("last_k", 3, backbone) == 2
    with pytest.raises(ValueError, match=r"last_k needs 1 <= k <= 3 .* got k=4"):
        teacher_start("last_k", 4, backbone)
    with pytest.raises(ValueError, match="unknown momentum scope 'half'"):
        teacher_start("half", 1, backbone)


def test_teacher_copies_and_pairs_the_trailing_blocks_and_projector():
    backbone, projector = resnet_tiny(8), nn.Linear(64, 8)
    teacher = Teacher(backbone, projector, start=3)
    assert len(teacher.blocks) == 2 and len(teacher.pairs) == 3
    assert teacher.pairs[0][0] is backbone.blocks[3] and teacher.pairs[-1][0] is projector
    assert not any(p.requires_grad for p in teacher.parameters())
    # the online modules are not registered inside the teacher
    assert all(not n.startswith("pairs") for n, _ in teacher.named_parameters())
    h = torch.randn(2, 16, 8, 8)  # what enters stage 3 of a width-8 resnet_tiny at 16x16 input
    y, z = teacher(h)
    assert y.shape == (2, 64) and z.shape == (2, 8)


def test_cosine_schedule_ends_at_the_final_tau():
    assert cosine_tau(0, 100, 0.99, 0.999) == pytest.approx(0.99)
    assert cosine_tau(50, 100, 0.99, 0.999) == pytest.approx(0.9945)
    assert cosine_tau(100, 100, 0.99, 0.999) == pytest.approx(0.999)
    assert cosine_tau(30, 100, 0.99, 1.0) == cosine_tau(30, 100, 0.99)  # BYOL's, by default
