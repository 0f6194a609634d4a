import math

import numpy as np
import pytest
import torch

from conftest import TINY, make_params
from momentum_ssl.analysis.health import (HealthMonitor, collapse_threshold, collapsed_epochs,
                                          effective_rank, output_std, stayed_below)
from momentum_ssl.core.learner import build_learner


def np_output_std(z: np.ndarray) -> float:
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    return float(unit.std(axis=0).mean())  # numpy's std is the population std (ddof 0)


def np_effective_rank(x: np.ndarray) -> float:
    s = np.linalg.svd(x.astype(np.float64), compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


@pytest.mark.parametrize("shape", [(64, 16), (32, 128), (7, 3)])
def test_statistics_match_numpy_on_fixed_inputs(shape):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32) + 0.3
    assert output_std(torch.from_numpy(x)).item() == pytest.approx(np_output_std(x), rel=1e-5)
    assert effective_rank(torch.from_numpy(x)).item() == pytest.approx(np_effective_rank(x),
                                                                        rel=1e-4)


def test_a_collapsed_batch_has_zero_std_and_rank_one():
    row = np.random.default_rng(1).normal(size=(1, 32)).astype(np.float32)
    constant = torch.from_numpy(np.repeat(row, 50, axis=0))
    assert output_std(constant).item() == pytest.approx(0.0, abs=1e-6)
    assert effective_rank(constant).item() == pytest.approx(1.0, abs=1e-3)
    assert effective_rank(torch.zeros(8, 4)).item() == pytest.approx(1.0)  # 0 log 0 = 0


def test_orthonormal_rows_reach_the_healthy_values():
    d = 64
    eye = torch.eye(d) * 3.0  # each row its own direction, equal energy
    assert effective_rank(eye).item() == pytest.approx(d, rel=1e-5)
    # one 1 and d - 1 zeros per dimension: std sqrt(d - 1) / d, just under 1/sqrt(d)
    assert output_std(eye).item() == pytest.approx(math.sqrt(d - 1) / d, rel=1e-5)
    assert output_std(eye).item() <= 1 / math.sqrt(d)
    with pytest.raises(ValueError, match=r"must be \(N, P\)"):
        output_std(torch.ones(3))


def test_collapse_finding_on_a_constructed_log():
    threshold = collapse_threshold(0.1, 100)
    assert threshold == pytest.approx(0.01)
    steps = list(range(0, 30, 2))  # 10 steps an epoch, logged every 2: 5 values an epoch
    values = ([0.08] * 5  # epoch 1: healthy
              + [0.005, 0.001, 0.0, 0.009, 0.002]  # epoch 2: below at every logged step
              + [0.001, 0.001, 0.02, 0.001, 0.001])  # epoch 3: one logged step above
    assert collapsed_epochs(steps, values, 10, threshold) == [2]
    assert collapsed_epochs(steps, [0.0] * 15, 10, threshold) == [1, 2, 3]
    assert collapsed_epochs(steps, values, 10, 0.0) == []  # collapse_std 0: never
    assert collapsed_epochs([], [], 10, threshold) == []  # no logged step: nothing judged
    assert not stayed_below([], threshold)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        collapsed_epochs(steps, values, 0, threshold)


def test_the_monitor_sees_the_students_views_and_reports_a_collapsed_epoch(tmp_path, capsys):
    params = make_params(tmp_path, **TINY)
    torch.manual_seed(0)
    run = next(run for run in params.grid if run.name == "byol-full")  # a teacher projector too
    learner = build_learner(params, run)
    health = HealthMonitor.attach(learner, collapse_std=0.1)
    assert health.measure() == {}
    x1, x2 = torch.randn(16, 3, 8, 8), torch.randn(16, 3, 8, 8)
    learner(x1, x2)
    stats = health.measure()
    with torch.no_grad():  # the student's own y and z of each view, in train mode as above
        ys = [learner.backbone(x) for x in (x1, x2)]
        zs = [learner.projector(y) for y in ys]
    expected = {"z_std": np.mean([np_output_std(z.numpy()) for z in zs]),
                "erank_y": np.mean([np_effective_rank(y.numpy()) for y in ys]),
                "erank_z": np.mean([np_effective_rank(z.numpy()) for z in zs])}
    assert stats == pytest.approx(expected, rel=1e-4)
    assert health.dim == 8 and health.threshold == pytest.approx(0.1 / math.sqrt(8))
    assert health.end_epoch("byol-full", 1) is None  # a random init is not collapsed

    same = x1[:1].expand(16, -1, -1, -1)  # one image repeated: every output the same
    learner.eval()  # (batch statistics of identical images would be degenerate)
    with torch.no_grad():
        for _ in range(3):  # three logged steps of two views each
            for _ in range(2):
                learner.projector(learner.backbone(same))
            assert health.measure()["z_std"] < 1e-6
    line = health.end_epoch("byol-full", 2)
    assert line.startswith("byol-full: collapse in epoch 2: the std of the L2-normalised "
                           "projector output stayed below 0.03536")
    assert "at all 3 logged steps" in line and line in capsys.readouterr().out
    assert health.end_epoch("byol-full", 3) is None  # each epoch judged on its own steps
    health.remove()
    learner(x1, x2)
    assert health.measure() == {}


def test_a_wide_matrix_takes_its_singular_values_from_the_gram_matrix(monkeypatch):
    """DINO's N x 65,536 logits: no SVD of the wide matrix (svdvals would raise here), the
    same effective rank up to rounding; up to GRAM_ABOVE columns, torch's SVD as before."""
    from momentum_ssl.analysis import health

    x = torch.randn(64, health.GRAM_ABOVE + 1, generator=torch.Generator().manual_seed(0))
    x[:, :40] *= 10  # an uneven spectrum
    s = torch.linalg.svdvals(x)  # before it is forbidden
    p = s / s.sum()
    expected = math.exp(-(p * p.log()).sum().item())
    monkeypatch.setattr(torch.linalg, "svdvals", lambda *a, **k: pytest.fail("an SVD ran"))
    torch.testing.assert_close(health.singular_values(x), s, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(health.singular_values(x.T), s, rtol=1e-5, atol=1e-3)
    assert effective_rank(x).item() == pytest.approx(expected, rel=1e-6)
