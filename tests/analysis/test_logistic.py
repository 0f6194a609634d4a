import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from momentum_ssl.analysis.logistic import fit_logistic


def blobs(n, dim=12, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    y = rng.integers(0, classes, n)
    x = centres[y] + rng.normal(scale=1.5, size=(n, dim))
    return (x * rng.uniform(0.1, 10, dim) + rng.normal(size=dim)).astype(np.float32), y


@pytest.fixture(scope="module")
def data():
    x, y = blobs(900)
    return x[:600], y[:600], x[600:], y[600:]


def converged_reference(x, y, c):
    """scikit-learn's fit run to a tight tolerance in float64 (on float32 input it works in
    float32): the optimum both should reach."""
    x = x.astype(np.float64)
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=c, max_iter=10000, tol=1e-10).fit(scaler.transform(x), y)
    return scaler, model


@pytest.mark.parametrize("c", [0.01, 1.0, 100.0])
def test_fit_reaches_scikit_learns_converged_optimum(data, c):
    train_x, train_y, test_x, test_y = data
    ours = fit_logistic(train_x, train_y, c, tol=1e-7, max_iter=2000)
    scaler, theirs = converged_reference(train_x, train_y, c)
    assert ours.converged and 0 < ours.n_iter < 2000 and ours.grad_norm <= 1e-7
    scale = np.abs(theirs.coef_).max()
    assert np.abs(ours.weight.numpy().T - theirs.coef_).max() <= 1e-4 * scale
    assert np.abs(ours.bias.numpy() - theirs.intercept_).max() <= 1e-4 * max(scale, 1)
    mismatched = (ours.predict(test_x) != theirs.predict(scaler.transform(test_x.astype(np.float64)))).sum()
    assert mismatched <= 1


def test_a_fit_cut_short_says_so(data):
    train_x, train_y, _, _ = data
    model = fit_logistic(train_x, train_y, 1.0, tol=1e-7, max_iter=3)
    assert not model.converged and model.n_iter == 3 and model.grad_norm > 1e-7
    assert model.fit_record() == {"iterations": 3, "grad_norm": model.grad_norm,
                                  "converged": False}


def test_warm_start_reaches_the_same_optimum(data):
    train_x, train_y, _, _ = data
    cold = fit_logistic(train_x, train_y, 1.0, tol=1e-7)
    # a fit on a subset, standardised differently, then the full set from there
    start = fit_logistic(train_x[:300], train_y[:300], 1.0, tol=1e-7)
    warm = fit_logistic(train_x, train_y, 1.0, tol=1e-7, init=start)
    assert warm.converged
    assert np.allclose(warm.weight.numpy(), cold.weight.numpy(), atol=1e-5)
    # starting at the optimum: nothing left to do
    again = fit_logistic(train_x, train_y, 1.0, tol=1e-7, init=warm)
    assert again.n_iter == 0 and again.converged


def test_a_constant_column_gets_no_weight_and_no_error(data):
    train_x, train_y, test_x, _ = data
    x = np.concatenate([train_x, np.full((len(train_x), 1), 3.0, np.float32)], 1)
    model = fit_logistic(x, train_y, 1.0, tol=1e-7)
    assert model.converged and np.all(model.weight[-1].numpy() == 0)
    plain = fit_logistic(train_x, train_y, 1.0, tol=1e-7)
    test = np.concatenate([test_x, np.zeros((len(test_x), 1), np.float32)], 1)
    assert np.array_equal(model.predict(test), plain.predict(test_x))


def test_the_fit_runs_numpy_and_scipys_blas_on_one_thread(data, monkeypatch):
    """L-BFGS-B's vector work on OpenBLAS's second thread spins against torch's pool (5x
    slower on 2 cores): the fit limits every BLAS pool threadpoolctl sees to one thread, and
    gives the pools back their threads afterwards."""
    from threadpoolctl import threadpool_info, threadpool_limits

    import momentum_ssl.analysis.logistic as logistic

    seen = []
    real = logistic.minimize

    def spy(*args, **kwargs):
        seen.append([pool["num_threads"] for pool in threadpool_info()
                     if pool["user_api"] == "blas"])
        return real(*args, **kwargs)

    monkeypatch.setattr(logistic, "minimize", spy)
    train_x, train_y, _, _ = data
    with threadpool_limits(limits=2, user_api="blas"):
        fit_logistic(train_x, train_y, 1.0, tol=1e-4)
        after = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert seen and all(counts and set(counts) == {1} for counts in seen)
    assert set(after) == {2}
