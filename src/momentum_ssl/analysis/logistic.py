"""Multinomial logistic regression in torch, full batch, for the logistic probe.

    model = fit_logistic(x, y, c=0.1, tol=1e-6, max_iter=1000)
    model.predict(test_x); model.n_iter, model.grad_norm, model.converged
    model = fit_logistic(x, y, c=1.0, init=model)   # warm start (next C, or all of train)

The objective is scikit-learn's ``LogisticRegression`` (lbfgs, multinomial, l2) on
``StandardScaler``-standardised features, as scikit-learn 1.9 writes it
(``sklearn/linear_model/_linear_loss.py``): the mean cross-entropy over the n samples plus
``||W||^2 / (2 C n)``, the intercept unpenalised. It is minimised with full-batch L-BFGS-B
(scipy's ``minimize``, the optimiser scikit-learn's lbfgs solver calls, with its settings),
first on the objective in float32 and then on from there in float64, preconditioned by a
change of variables with the Cholesky factor of the regularised feature covariance (Nocedal &
Wright, "Numerical Optimization", 2006, sec. 7.2). It stops when the largest absolute entry of
the objective's gradient is at most ``tol``: scikit-learn's lbfgs criterion (its ``tol`` is
scipy's ``gtol``), tested at every iteration, and in float64 before the fit is called
converged. The loss and gradient are computed in torch and written out by hand (softmax minus
one-hot), not taken through autograd: half the work per evaluation.

The fit runs with numpy's and scipy's OpenBLAS on one thread (``threadpoolctl``): L-BFGS-B's
own vector work calls it on vectors of a few thousand entries between torch's parallel
products, and its second thread then spins against torch's OpenMP pool for the same two
cores. One thread gives the same iterations and the same bits, 5x faster (a 20,000 x 128
probe: 2.5 s -> 0.5 s on 2 cores). Torch's own MKL and OpenMP pools keep their threads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits


@dataclass
class LogisticModel:
    """Standardisation (mean, scale), weights (d, K), intercept (K,) and how the fit ended."""

    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    n_iter: int
    grad_norm: float  # max |gradient| of the objective at the end
    converged: bool

    def decision(self, x: np.ndarray) -> torch.Tensor:
        z = (torch.from_numpy(np.array(x, dtype=np.float64)) - self.mean) / self.scale
        return z @ self.weight + self.bias

    def predict(self, x: np.ndarray) -> np.ndarray:
        # ties go to the lowest class, as numpy's argmax in scikit-learn's predict
        return self.decision(x).argmax(1).numpy()

    def fit_record(self) -> dict:
        return {"iterations": self.n_iter, "grad_norm": self.grad_norm,
                "converged": self.converged}


def standardise(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(standardised x, mean, scale) in float64, as ``StandardScaler``: population std, and a
    scale of 1 for columns constant in ``x`` (their weights stay 0 under the L2 penalty)."""
    x = torch.from_numpy(np.array(x, dtype=np.float64))  # a copy: x may be read-only
    mean = x.mean(0)
    scale = x.std(0, unbiased=False)
    scale = torch.where(scale > 10 * torch.finfo(torch.float64).eps * mean.abs().clamp(min=1),
                        scale, torch.ones_like(scale))
    return (x - mean) / scale, mean, scale


def loss_and_grad(params: torch.Tensor, x: torch.Tensor, onehot: torch.Tensor, c: float,
                  x_t: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Objective and gradient at ``params`` = [W; b] of shape (d + 1, K). ``x_t``: ``x.T``
    made contiguous once by the caller (the gradient's product then takes half the time)."""
    n = len(x)
    w, b = params[:-1], params[-1]
    z = torch.addmm(b, x, w)
    lse = torch.logsumexp(z, 1)
    loss = (lse.sum() - (z * onehot).sum()) / n + (w * w).sum() / (2 * c * n)
    residual = torch.exp(z - lse[:, None]) - onehot  # softmax - one-hot, (n, K)
    grad = torch.empty_like(params)
    torch.mm(x.T if x_t is None else x_t, residual, out=grad[:-1])
    grad[:-1] += w / c
    grad[-1] = residual.sum(0)
    return loss, grad / n


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float, tol: float = 1e-6,
                 max_iter: int = 1000, num_classes: int | None = None,
                 init: LogisticModel | None = None) -> LogisticModel:
    """Fit on ``x`` (standardised here), labels ``y`` in [0, num_classes); ``init`` warm-starts
    from another fit's weights (mapped to this fit's standardisation)."""
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit(x, y, c, tol, max_iter, num_classes, init)


def _fit(x: np.ndarray, y: np.ndarray, c: float, tol: float, max_iter: int,
         num_classes: int | None, init: LogisticModel | None) -> LogisticModel:
    xs, mean, scale = standardise(x)
    k = num_classes or int(np.max(y)) + 1
    onehot = torch.nn.functional.one_hot(torch.from_numpy(np.array(y, dtype=np.int64)),
                                         k).to(torch.float64)
    params = torch.zeros(xs.shape[1] + 1, k, dtype=torch.float64)
    if init is not None:
        # the same linear function of the raw features under this fit's standardisation
        w = init.weight * (scale / init.scale)[:, None]
        params[:-1] = w
        params[-1] = init.bias + ((mean - init.mean) / init.scale) @ init.weight
    # Preconditioning: L-BFGS runs on V = L^T W, where L L^T = X^T X / n + (K / (C n)) I
    # approximates the Hessian at the start (softmax covariance ~ I / K). The objective and
    # its optimum are unchanged (W = L^-T V); correlated features (a random-init encoder's)
    # otherwise take L-BFGS thousands of iterations.
    n, k = xs.shape[0], onehot.shape[1]
    gram = xs.T @ xs / n
    gram.diagonal().add_(k / (c * n))
    chol = torch.linalg.cholesky(gram)
    inv_t = torch.linalg.solve_triangular(chol.T, torch.eye(len(chol), dtype=torch.float64),
                                          upper=True)  # L^-T
    # L-BFGS-B (scipy's, the optimiser scikit-learn's lbfgs solver calls) runs on V
    x0 = params.clone()
    xs_t = xs.T.contiguous()
    x0[:-1] = chol.T @ params[:-1]

    def weights_of(v: np.ndarray) -> torch.Tensor:
        out = torch.from_numpy(v).view(-1, k).clone()
        out[:-1] = inv_t @ out[:-1]
        return out

    data = {torch.float64: (xs, onehot, xs_t),
            torch.float32: (xs.float(), onehot.float(), xs_t.float())}
    last: dict = {}  # the W-gradient's largest entry at the last point evaluated

    def objective(v: np.ndarray, dtype: torch.dtype) -> tuple[float, np.ndarray]:
        loss, grad = loss_and_grad(weights_of(v).to(dtype), *data[dtype][:2], c,
                                   data[dtype][2])
        grad = grad.double()
        last.update(x=v.copy(), grad_max=grad.abs().max().item())
        grad[:-1] = inv_t.T @ grad[:-1].clone()  # chain rule through W = L^-T V
        return float(loss), grad.numpy().ravel()

    def stop_at_tol(intermediate_result) -> None:
        # scikit-learn's criterion is on the W-gradient; L-BFGS-B's own gtol would test the
        # V-gradient, so it is set aside (0) and each iteration's new point is tested here
        if last["grad_max"] <= tol and np.array_equal(intermediate_result.x, last["x"]):
            raise StopIteration

    def run(v: np.ndarray, dtype: torch.dtype, budget: int):
        return minimize(objective, v, args=(dtype,), jac=True, method="L-BFGS-B",
                        callback=stop_at_tol,
                        options={"maxiter": budget, "maxfun": 2 * max_iter, "gtol": 0.0,
                                 "ftol": 64 * np.finfo(float).eps, "maxcor": 10,
                                 "maxls": 50})

    # First in float32 (half the time an evaluation), then on in float64 from there, where
    # the criterion is checked: near the optimum float32's rounding stops a line search
    v, n_iter = x0.numpy().ravel(), 0
    for dtype in (torch.float32, torch.float64):
        _, grad = loss_and_grad(weights_of(v), xs, onehot, c, xs_t)
        if grad.abs().max().item() <= tol or n_iter >= max_iter:
            break  # converged (a warm start may already be), or out of iterations
        done = run(v, dtype, max_iter - n_iter)
        v, n_iter = done.x, n_iter + int(done.nit)
    _, grad = loss_and_grad(weights_of(v), xs, onehot, c, xs_t)
    grad_norm = float(grad.abs().max())
    weights = weights_of(v)
    return LogisticModel(mean, scale, weights[:-1].clone(), weights[-1].clone(), n_iter,
                         grad_norm, grad_norm <= tol)
