import io

import pytest
import torch

from conftest import REPO, tiny_learner, tiny_method
from momentum_ssl.config import RunSpec, load_params
from momentum_ssl.core.learner import Learner, build_learner
from momentum_ssl.core.methods import METHODS, build_method
from momentum_ssl.core.models.backbones import resnet_tiny

SCOPES = ("none", "projector", "last_k", "full")
def views(seed=0, n=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 16, 16, generator=g), torch.randn(n, 3, 16, 16, generator=g)


def count_calls(learner: Learner) -> dict[str, list[int]]:
    counts = {"student": [0] * len(learner.backbone.blocks), "teacher": []}
    for i, block in enumerate(learner.backbone.blocks):
        block.register_forward_hook(lambda *_, i=i: counts["student"].__setitem__(
            i, counts["student"][i] + 1))
    if learner.teacher is not None:
        counts["teacher"] = [0] * len(learner.teacher.blocks)
        for i, block in enumerate(learner.teacher.blocks):
            block.register_forward_hook(lambda *_, i=i: counts["teacher"].__setitem__(
                i, counts["teacher"][i] + 1))
    learner(*views())
    return counts


def test_forward_calls_per_scope():
    # blocks: stem + 4 stages; each view passes the student once
    full = count_calls(tiny_learner(scope="full"))
    assert full == {"student": [2] * 5, "teacher": [2] * 5}  # the teacher's own forwards
    projector = count_calls(tiny_learner(scope="projector"))
    assert projector == {"student": [2] * 5, "teacher": []}  # no second backbone pass
    last2 = count_calls(tiny_learner(scope="last_k", k=2))
    # stem, stage 1, stage 2 run once per view; stages 3 and 4 also in the teacher
    assert last2 == {"student": [2] * 5, "teacher": [2, 2]}
    assert count_calls(tiny_learner(scope="none")) == {"student": [2] * 5, "teacher": []}


def test_last_k_teacher_continues_from_the_students_activation():
    learner = tiny_learner(scope="last_k", k=2)
    seen = {}
    learner.teacher.blocks[0].register_forward_pre_hook(
        lambda _, args: seen.setdefault("teacher_in", args[0]))
    learner.backbone.blocks[3].register_forward_pre_hook(
        lambda _, args: seen.setdefault("student_in", args[0]))
    learner(*views())
    torch.testing.assert_close(seen["teacher_in"], seen["student_in"].detach())
    assert not seen["teacher_in"].requires_grad


def params_of(module):
    return [p.detach().clone() for p in module.parameters()]


def moved(before, module):
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_and_scope_trains_a_step(name, scope):
    learner = tiny_learner(name, scope, residual_weight=0.0 if scope == "none" else 1.0)
    optimizer = torch.optim.SGD([p for p in learner.parameters() if p.requires_grad], lr=0.1)
    student = params_of(learner.backbone) + params_of(learner.projector)
    teacher = params_of(learner.teacher) if learner.teacher is not None else None
    for step in range(2):
        loss, logs = learner(*views(step))
        assert torch.isfinite(loss) and logs["loss"] == loss.detach()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        learner.update_teacher(0.9)
    assert moved(student, learner.backbone) or moved(student, learner.projector)
    if teacher is not None:
        assert moved(teacher, learner.teacher)
        # the teacher lags the student: it is neither where it was nor where the student is
        pairs = learner.teacher.pairs
        assert any(not torch.equal(s, t) for online, mirror in pairs
                   for s, t in zip(online.parameters(), mirror.parameters()))
        assert logs["gap_projector"] > 0 and "residual" in logs
    else:
        assert not any(k.startswith("gap") for k in logs)


def test_residual_weight_adds_the_gap_at_its_level():
    x1, x2 = views()
    base = tiny_learner("byol", "full")
    with_res = tiny_learner("byol", "full", residual_weight=2.0)
    with_res.load_state_dict(base.state_dict())
    # make student and teacher differ so the gap is not zero
    for learner in (base, with_res):
        with torch.no_grad():
            for p in learner.projector.parameters():
                p.add_(0.1)
    loss, logs = base(x1, x2)
    loss_res, logs_res = with_res(x1, x2)
    assert logs_res["gap_projector"] > 0
    torch.testing.assert_close(loss_res, loss + 2.0 * logs_res["gap_projector"])
    backbone_level = Learner(resnet_tiny(8), tiny_method("byol"), "full", residual_weight=1.0,
                             residual_level="backbone")
    _, logs = backbone_level(x1, x2)
    assert "residual" in logs and logs["residual"] == logs["gap_backbone"]


def test_projector_scope_teacher_sees_the_students_features():
    learner = tiny_learner("simclr", "projector")
    _, logs = learner(*views())
    assert logs["gap_backbone"].abs() < 1e-6  # same pooled features: the gap is in the heads


def test_bad_arguments_raise_value_error_naming_the_problem():
    with pytest.raises(ValueError, match="residual-momentum loss needs a teacher"):
        tiny_learner("byol", "none", residual_weight=1.0)
    with pytest.raises(ValueError, match="last_k needs 1 <= k <= 3"):
        tiny_learner("byol", "last_k", k=4)
    with pytest.raises(ValueError, match="at the backbone level is always 0 with scope "
                                         "'projector'"):
        Learner(resnet_tiny(8), tiny_method("byol"), "projector", residual_weight=1.0,
                residual_level="backbone")
    with pytest.raises(ValueError, match="residual level must be one of"):
        Learner(resnet_tiny(8), tiny_method("byol"), "full", residual_level="z")
    with pytest.raises(ValueError, match="unknown method 'swav'"):
        build_method("swav")
    with pytest.raises(ValueError, match="queue_size: must be >= 1"):
        tiny_method("mocov2", queue_size=0)
    with pytest.raises(ValueError, match="temperature: must be > 0"):
        tiny_method("simclr", temperature=0.0)
    learner = tiny_learner("mocov2", "full", queue_size=60)
    with pytest.raises(ValueError, match=r"queue \(60 keys per view\) must be a multiple of "
                                         r"the keys each view enqueues per step \(8 = batch 8"):
        learner(*views())


def roundtrip(learner: Learner, name: str, scope: str) -> Learner:
    buffer = io.BytesIO()
    torch.save(learner.state_dict(), buffer)
    buffer.seek(0)
    fresh = tiny_learner(name, scope)
    fresh.load_state_dict(torch.load(buffer))
    return fresh


@pytest.mark.parametrize("name,state", [("mocov2", ["queue", "queue_ptr"]),
                                        ("xmoco", ["queue", "queue_ptr"]),
                                        ("unigrad", ["F", "F_ready"])])
def test_checkpoint_round_trip_restores_method_state_and_teacher(name, state):
    learner = tiny_learner(name, "full")
    optimizer = torch.optim.SGD([p for p in learner.parameters() if p.requires_grad], lr=0.1)
    for step in range(3):
        loss, _ = learner(*views(step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        learner.update_teacher(0.9)
    fresh = roundtrip(learner, name, "full")
    for key in state:
        torch.testing.assert_close(getattr(fresh.method, key), getattr(learner.method, key))
    assert int(getattr(learner.method, state[1])) != 0  # the state really moved
    for a, b in zip(learner.teacher.parameters(), fresh.teacher.parameters()):
        torch.testing.assert_close(a, b)
    # the restored teacher is still paired with the restored student
    assert fresh.teacher.pairs[-1][0] is fresh.projector
    torch.testing.assert_close(fresh(*views(9))[0], learner(*views(9))[0])


def test_unigrad_first_batch_sets_F_then_it_averages():
    learner = tiny_learner("unigrad", "full", rho=0.5)
    assert not learner.method.F_ready
    learner(*views(0))
    first = learner.method.F.clone()
    assert learner.method.F_ready and torch.allclose(first, first.T)
    # trace of the mean correlation of unit vectors is 1
    assert torch.trace(first).item() == pytest.approx(1.0, abs=1e-5)
    learner(*views(1))
    assert not torch.equal(learner.method.F, first)


def test_build_learner_from_params():
    params = load_params(REPO / "params.yaml")
    learner = build_learner(params, RunSpec("byol", "full", residual=True))
    assert learner.residual_weight == params.residual.weight and learner.scope == "full"
    assert learner.backbone.dim == 8 * params.model.width
    assert learner.projector[0].out_features == params.methods.byol.proj_hidden
    assert build_learner(params, RunSpec("simclr", "none")).teacher is None


def test_moco_v3_resnet_head_is_two_layers_and_the_vit_head_three():
    from torch import nn

    from momentum_ssl.core.methods.mocov3 import MoCoV3Config

    def layers(head):
        return [type(m).__name__ for m in head]

    resnet = build_method("mocov3", MoCoV3Config(proj_hidden=32, proj_out=16, pred_hidden=32))
    head = resnet.projector(64)
    assert layers(head) == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    linears = [m for m in head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 32), (32, 16)]
    assert all(m.bias is None for m in linears) and not head[-1].affine
    assert layers(resnet.predictor()) == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    vit = build_method("mocov3", MoCoV3Config(proj_hidden=32, proj_out=16, pred_hidden=32,
                                              proj_layers=3))
    assert sum(isinstance(m, nn.Linear) for m in vit.projector(64)) == 3


@pytest.mark.parametrize("name", ["mocov2", "xmoco"])
def test_moco_v2_view_reduction_halves_the_symmetric_loss(name):
    x1, x2 = views()
    losses = {}
    for reduction in ("mean", "sum"):
        extra = {"cc_weight": 0.0} if name == "xmoco" else {}  # a single symmetric KL
        learner = tiny_learner(name, "full", view_reduction=reduction, **extra)
        losses[reduction] = learner(x1, x2)[0]
    torch.testing.assert_close(losses["mean"], losses["sum"] / 2)


def test_loss_scale_multiplies_the_methods_loss_not_the_residual_term():
    x1, x2 = views()
    base = tiny_learner("barlow_twins", "full", residual_weight=1.0)
    scaled = tiny_learner("barlow_twins", "full", residual_weight=1.0)
    scaled.loss_scale = 0.1
    loss, logs = base(x1, x2)
    loss_scaled, logs_scaled = scaled(x1, x2)
    method = loss - logs["residual"]
    torch.testing.assert_close(loss_scaled, 0.1 * method + logs_scaled["residual"])
    torch.testing.assert_close(logs["residual"], logs_scaled["residual"])


@pytest.mark.parametrize("method", ["barlow_twins", "vicreg", "unigrad", "dino", "byol"])
def test_under_autocast_the_loss_is_computed_in_fp32(method, monkeypatch):
    """The heads run in bf16 under autocast, the method's loss and the gap in fp32 (bf16's
    8-bit mantissa: Barlow Twins' and VICReg's correlations, UniGrad's u @ F, DINO's logits)."""
    learner = tiny_learner(method, "full", residual_weight=0.5)
    seen = []
    loss_fn = learner.method.loss

    def recording(*branches, **kwargs):
        seen.extend(t for b in branches if b is not None for t in (b.y, b.z, b.p)
                    if t is not None)
        seen.append(torch.ones(1) * torch.is_autocast_enabled("cpu"))  # 1.0: autocast on
        return loss_fn(*branches, **kwargs)

    monkeypatch.setattr(learner.method, "loss", recording)
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = learner.projector(learner.backbone(x))
        loss, logs = learner(x, x.flip(3))
    assert z.dtype == torch.bfloat16  # the heads in bf16
    assert seen[-1].item() == 0.0 and all(t.dtype == torch.float32 for t in seen[:-1])
    assert loss.dtype == torch.float32 and logs["gap_projector"].dtype == torch.float32
