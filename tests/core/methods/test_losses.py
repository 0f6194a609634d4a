"""Each pure loss against its formula, computed independently here (float64 loops), its symmetry
where the formula is symmetric, its argument checks, and its decrease on a toy problem."""

import math

import numpy as np
import pytest
import torch

from momentum_ssl.core import losses as L

N, D = 6, 5


def data(seed=0, n=N, d=D):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(4)]


def arr(x):
    return x.detach().numpy().astype(np.float64) if torch.is_tensor(x) else np.asarray(x)


def unit(x):
    x = arr(x)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def cos(a, b):
    a, b = arr(a), arr(b)
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_nt_xent_formula_and_symmetry():
    z1, z2, _, _ = data()
    t = 0.2
    z = unit(torch.cat([z1, z2]))
    total = 0.0
    for a in range(2 * N):
        positive = (a + N) % (2 * N)
        denominator = sum(math.exp(z[a] @ z[j] / t) for j in range(2 * N) if j != a)
        total += -math.log(math.exp(z[a] @ z[positive] / t) / denominator)
    assert L.nt_xent(z1, z2, t).item() == pytest.approx(total / (2 * N), rel=1e-10)
    assert L.nt_xent(z2, z1, t).item() == pytest.approx(total / (2 * N), rel=1e-10)


def test_info_nce_with_a_queue_and_with_in_batch_negatives():
    q, k, queue, _ = data()
    queue = torch.cat([queue, queue.flip(0)])  # K = 12
    t = 0.2
    qn, kn, un = unit(q), unit(k), unit(queue)
    expected = np.mean([-math.log(math.exp(qn[i] @ kn[i] / t) / (
        math.exp(qn[i] @ kn[i] / t) + sum(math.exp(qn[i] @ u / t) for u in un)))
        for i in range(N)])
    assert L.info_nce(q, k, queue, t).item() == pytest.approx(expected, rel=1e-10)
    in_batch = np.mean([-math.log(math.exp(qn[i] @ kn[i] / t) /
                                  sum(math.exp(qn[i] @ kn[j] / t) for j in range(N)))
                        for i in range(N)])
    assert L.info_nce(q, k, None, t).item() == pytest.approx(in_batch, rel=1e-10)


def test_moco_v3_loss_formula_with_extra_negatives():
    q, k, extra, _ = data()
    t = 0.2
    keys = torch.cat([k, extra])  # other ranks' keys after the local ones
    qn, kn = unit(q), unit(keys)
    expected = np.mean([-math.log(math.exp(qn[i] @ kn[i] / t) /
                                  sum(math.exp(qn[i] @ kn[j] / t) for j in range(2 * N)))
                        for i in range(N)]) * 2 * t
    assert L.moco_v3_loss(q, keys, t).item() == pytest.approx(expected, rel=1e-10)


def test_byol_and_negative_cosine_formulas_and_symmetry():
    p, z, _, _ = data()
    byol = np.mean([2 - 2 * cos(p[i], z[i]) for i in range(N)])
    assert L.byol_loss(p, z).item() == pytest.approx(byol, rel=1e-10)
    assert L.byol_loss(z, p).item() == pytest.approx(byol, rel=1e-10)
    neg = -np.mean([cos(p[i], z[i]) for i in range(N)])
    assert L.negative_cosine(p, z).item() == pytest.approx(neg, rel=1e-10)
    assert L.negative_cosine(z, p).item() == pytest.approx(neg, rel=1e-10)


def test_barlow_twins_formula_and_symmetry():
    z1, z2, _, _ = data()
    lambd = 0.0051
    a, b = arr(z1), arr(z2)
    an = (a - a.mean(0)) / np.sqrt(a.var(0) + 1e-5)  # numpy's var is the biased one
    bn = (b - b.mean(0)) / np.sqrt(b.var(0) + 1e-5)
    expected = 0.0
    for i in range(D):
        for j in range(D):
            c = sum(an[n, i] * bn[n, j] for n in range(N)) / N
            expected += (1 - c) ** 2 if i == j else lambd * c ** 2
    assert L.barlow_twins_loss(z1, z2, lambd).item() == pytest.approx(expected, rel=1e-10)
    assert L.barlow_twins_loss(z2, z1, lambd).item() == pytest.approx(expected, rel=1e-10)


def test_vicreg_formula_and_symmetry():
    z1, z2, _, _ = data()
    a, b = arr(z1), arr(z2)
    invariance = ((a - b) ** 2).mean()

    def var_term(x):
        return np.mean([max(0.0, 1 - math.sqrt(x[:, d].var(ddof=1) + 1e-4)) for d in range(D)])

    def cov_term(x):
        c = np.cov(x, rowvar=False)  # N - 1 denominator
        return sum(c[i, j] ** 2 for i in range(D) for j in range(D) if i != j) / D

    expected = 25 * invariance + 25 * (var_term(a) + var_term(b)) / 2 + cov_term(a) + cov_term(b)
    assert L.vicreg_loss(z1, z2).item() == pytest.approx(expected, rel=1e-10)
    assert L.vicreg_loss(z2, z1).item() == pytest.approx(expected, rel=1e-10)
    weighted = 2 * invariance + 3 * (var_term(a) + var_term(b)) / 2 + 0.5 * (cov_term(a) +
                                                                            cov_term(b))
    assert L.vicreg_loss(z1, z2, 2.0, 3.0, 0.5).item() == pytest.approx(weighted, rel=1e-10)


def symmetric_f(seed=3):
    a = torch.randn(D, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T / D


def test_unigrad_loss_value():
    u1, u2, _, _ = (torch.nn.functional.normalize(x, dim=1) for x in data())
    f = symmetric_f()
    lambd = 100.0
    a, b, fm = arr(u1), arr(u2), arr(f)
    expected = np.mean([(-b[i] + lambd * fm @ a[i]) @ a[i] for i in range(N)])
    assert L.unigrad_loss(u1, u2, f, lambd).item() == pytest.approx(expected, rel=1e-10)


def test_unigrad_gradient_is_the_unified_gradient():
    u1, u2, _, _ = (torch.nn.functional.normalize(x, dim=1) for x in data())
    u1.requires_grad_(True)
    f = symmetric_f()
    lambd = 100.0
    L.unigrad_loss(u1, u2, f, lambd).backward()
    expected = (-u2 + lambd * u1.detach() @ f) / N
    torch.testing.assert_close(u1.grad, expected, rtol=1e-12, atol=1e-12)


def test_residual_momentum_loss_formula_and_symmetry():
    s, t, _, _ = data()
    expected = np.mean([1 - cos(s[i], t[i]) for i in range(N)])
    assert L.residual_momentum_loss(s, t).item() == pytest.approx(expected, rel=1e-10)
    assert L.residual_momentum_loss(t, s).item() == pytest.approx(expected, rel=1e-10)
    assert L.residual_momentum_loss(s, 3 * s).item() == pytest.approx(0.0, abs=1e-12)


def test_xmoco_cross_consistency_formula_and_symmetry():
    q1, k1, q2, k2 = data()
    t = 0.3
    a1, b1, a2, b2 = (unit(x) for x in (q1, k1, q2, k2))

    def rows(a, b):
        out = []
        for i in range(N):
            logits = np.array([a[i] @ b[j] / t for j in range(N) if j != i])
            p = np.exp(logits - logits.max())
            out.append(p / p.sum())
        return out

    p1, p2 = rows(a1, b1), rows(a2, b2)
    kl = lambda p, q: float(np.sum(p * (np.log(p) - np.log(q))))  # noqa: E731
    expected = np.mean([kl(p1[i], p2[i]) for i in range(N)]) + np.mean(
        [kl(p2[i], p1[i]) for i in range(N)])
    got = L.xmoco_cross_consistency(q1, k1, q2, k2, t).item()
    assert got == pytest.approx(expected, rel=1e-10)
    assert L.xmoco_cross_consistency(q2, k2, q1, k1, t).item() == pytest.approx(expected,
                                                                                rel=1e-10)


def test_xmoco_negative_uniformity_formula():
    logits = data()[0]
    expected = 0.0
    for row in arr(logits):
        p = np.exp(row - row.max())
        p /= p.sum()
        expected += sum((1 / D) * (math.log(1 / D) - math.log(pj)) for pj in p)
    assert L.xmoco_negative_uniformity(logits).item() == pytest.approx(expected / N, rel=1e-10)
    assert L.xmoco_negative_uniformity(torch.zeros(3, 7)).item() == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("call", [
    lambda a, b: L.nt_xent(a, b), lambda a, b: L.byol_loss(a, b),
    lambda a, b: L.negative_cosine(a, b), lambda a, b: L.barlow_twins_loss(a, b),
    lambda a, b: L.vicreg_loss(a, b), lambda a, b: L.info_nce(a, b),
    lambda a, b: L.residual_momentum_loss(a, b),
])
def test_mismatched_shapes_raise_value_error(call):
    with pytest.raises(ValueError, match="must be"):
        call(torch.randn(4, 3), torch.randn(4, 5))


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match=r"queue must be \(K, 3\)"):
        L.info_nce(torch.randn(4, 3), torch.randn(4, 3), torch.randn(10, 5))
    with pytest.raises(ValueError, match="M >= N"):
        L.moco_v3_loss(torch.randn(4, 3), torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"F must be \(3, 3\)"):
        L.unigrad_loss(torch.randn(4, 3), torch.randn(4, 3), torch.eye(4))
    with pytest.raises(ValueError, match="batch of at least 2"):
        L.nt_xent(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="k2 must have q1's shape"):
        L.xmoco_cross_consistency(*[torch.randn(4, 3)] * 3, torch.randn(4, 2), 0.2)


# (a, b): the encoder's two views; c: a fixed target for the losses that regress one
TOY = {
    "nt_xent": lambda a, b, c: L.nt_xent(a, b),
    "info_nce": lambda a, b, c: L.info_nce(a, b.detach()),
    "moco_v3_loss": lambda a, b, c: L.moco_v3_loss(a, b.detach()),
    "byol_loss": lambda a, b, c: L.byol_loss(a, c),
    "negative_cosine": lambda a, b, c: L.negative_cosine(a, c),
    "barlow_twins_loss": lambda a, b, c: L.barlow_twins_loss(a, b),
    "vicreg_loss": lambda a, b, c: L.vicreg_loss(a, b),
    "residual_momentum_loss": lambda a, b, c: L.residual_momentum_loss(a, c),
    "xmoco_cross_consistency": lambda a, b, c: L.xmoco_cross_consistency(a, b, b, a, 0.2),
    "xmoco_negative_uniformity": lambda a, b, c: L.xmoco_negative_uniformity(a @ b.T),
}


@pytest.mark.parametrize("name", sorted(TOY))
def test_each_loss_decreases_under_a_few_gradient_steps(name):
    # a linear encoder of 32 points, two noisy views of each
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 8, generator=g)
    x1, x2 = x + 0.1 * torch.randn(32, 8, generator=g), x + 0.1 * torch.randn(32, 8, generator=g)
    fixed = torch.randn(32, 6, generator=g)
    encoder = torch.nn.Linear(8, 6)
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.05)
    values = []
    for _ in range(20):
        loss = TOY[name](encoder(x1), encoder(x2), fixed)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        values.append(loss.item())
    assert values[-1] < values[0], values


def test_unigrad_surrogate_descends_its_objective():
    # the surrogate's gradient is that of -u2_t.u1 + (lambd/2) u1^T F u1: following it lowers that
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(16, 4, generator=g, requires_grad=True)
    target = torch.nn.functional.normalize(torch.randn(16, 4, generator=g), dim=1)
    f = torch.eye(4) / 4
    lambd = 2.0

    def objective(u):
        return (-(target * u).sum(1) + lambd / 2 * ((u @ f) * u).sum(1)).mean()

    optimizer = torch.optim.SGD([raw], lr=0.5)
    before = objective(torch.nn.functional.normalize(raw, dim=1)).item()
    for _ in range(20):
        loss = L.unigrad_loss(torch.nn.functional.normalize(raw, dim=1), target, f, lambd)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert objective(torch.nn.functional.normalize(raw, dim=1)).item() < before
