"""Error bounds of the two-layer net's gradient paths: how far each computed value may lie from
the exact one, derived from the floating-point model, never from what one CPU printed.

Conventions: eps is the spacing of floats at 1 (2.2e-16 in float64, 1.2e-7 in float32) and
u = eps / 2 the unit roundoff: a correctly rounded +, -, *, / is off by at most u relative. A
function within N ulp of the correctly rounded result is within (N + 1/2) eps relative of the
true value, since an ulp of y is at most eps |y|. The bounds are first order in eps (the terms
left out are ~1e-25 relative) and hold whatever the order of a sum (BLAS blocking, pairwise
summation, fused multiply-add). NumPy picks its exp / log kernels per CPU (AVX-512, AVX2, the
x86-64 baseline, NEON or the platform's libm): the ulp tables below hold for every one of them.

Used by ``gradcheck`` (the tolerance of a numerical path against an analytic one, per parameter)
and by the tests (tests/tolerances.py), so that both hold the paths to the same derivation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

EPS64 = float(np.finfo(np.float64).eps)
EPS32 = float(np.finfo(np.float32).eps)

# ulp of the correctly rounded result. NumPy: its accuracy test (numpy/_core/tests/
# test_umath_accuracy.py, column ulperrortol of numpy/_core/tests/data/umath-validation-set-*.csv)
# holds these on x86-64 with AVX2 and AVX-512, where NumPy has kernels of its own for them;
# elsewhere NumPy calls the platform's libm, which (glibc, macOS, MSVC) stays within 1 ulp.
NUMPY_ULP = {"float64": {"exp": 1, "log": 1, "expm1": 1, "log1p": 1},
             "float32": {"exp": 3, "log": 4, "expm1": 3, "log1p": 2}}
# PyTorch's CPU kernels: SLEEF's u10 functions (at most 1.0 ulp) or the platform's libm
TORCH_ULP = {dtype: {"exp": 1, "log": 1} for dtype in ("float32", "float64")}

SIGMOID_D2 = math.sqrt(3) / 18
"""max |sigmoid''| = max |p (1 - p) (1 - 2 p)|, which is also the third derivative of
log-sum-exp along one logit of probability p."""
SIGMOID_D3 = 1 / 8
"""max |sigmoid'''| = max |p (1 - p) (1 - 6 p (1 - p))|, at 0."""


def eps(dtype: np.dtype | type = np.float64) -> float:
    return float(np.finfo(dtype).eps)


def rel(ulps: float, dtype: np.dtype | type = np.float64) -> float:
    """Relative error of a result within ``ulps`` of the correctly rounded one."""
    return (ulps + 0.5) * eps(dtype)


def numpy_rel(name: str, dtype: np.dtype | type = np.float64) -> float:
    """Relative error of NumPy's ufunc ``name`` in ``dtype`` (see NUMPY_ULP)."""
    return rel(NUMPY_ULP[np.dtype(dtype).name][name], dtype)


def gamma(n: int, dtype: np.dtype | type = np.float64) -> float:
    """Higham's gamma_n = n u / (1 - n u): n chained roundings. A sum of n + 1 terms or a dot
    product of length n, in any order, is off by at most gamma_n times the sum of |terms|."""
    nu = n * eps(dtype) / 2
    return nu / (1 - nu)


def sigmoid_rel(exp_rel: float, dtype: np.dtype | type = np.float64) -> float:
    """Relative error of 1 / (1 + exp(-x)): exp's, damped by e / (1 + e), then 2 roundings."""
    return exp_rel + gamma(2, dtype)


def relative_error_bound(bound: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Largest gradcheck.relative_error(a, b) = ||a - b|| / (||a|| + ||b||) when |a - b| <=
    bound elementwise (0 where a and b are both zero, as relative_error counts 0 / 0)."""
    norms = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(bound) / norms) if norms else 0.0


# --- the two-layer net: 784-H-10, sigmoid or ReLU, softmax cross-entropy, mean over the batch ---


@dataclass
class TwoLayerBounds:
    """Bounds for one batch, elementwise per parameter where they are dicts.

    ``logits``: the logits (N, K) against their exact values. ``loss``: the mean cross-entropy
    as any path computes it (net.loss, the layers, autograd, the vectorized method, torch,
    log(softmax)) against its exact value. ``gradient``: backprop, autograd or torch against
    the exact gradient. ``difference``: a central difference of step h in exact arithmetic (with
    the steps rounded to the parameters' dtype, as both numerical methods take them) against
    the exact gradient. ``nditer`` and ``vectorized``: each numerical method's rounding against
    that exact-arithmetic difference (the vectorized method works in float64 whatever the
    parameters' dtype: take it from a float64 call).
    """

    logits: np.ndarray
    loss: float
    gradient: dict[str, np.ndarray]
    difference: dict[str, np.ndarray]
    nditer: dict[str, np.ndarray]
    vectorized: dict[str, np.ndarray]


def two_layer_bounds(params: Mapping[str, np.ndarray], x: np.ndarray, t: np.ndarray, *,
                     dtype: np.dtype | type = np.float64,
                     ulp: Mapping[str, Mapping[str, int]] = NUMPY_ULP,
                     params_rounded: bool = False, h: float = 1e-4,
                     activation: str = "sigmoid") -> TwoLayerBounds:
    """Running error analysis of the forward and backward pass computed in ``dtype`` with the
    exp / log accuracy ``ulp`` (NUMPY_ULP or TORCH_ULP), for float64 ``params`` and ``x`` taken
    as exact. ``params_rounded``: the path rounds the parameters to ``dtype`` first.

    Each product of a D-input layer is a sum of D terms (784 pixels, H hidden units, 10
    classes, N samples of the batch), off by gamma times the sum of |terms|; an error carried
    into a nonlinear step is multiplied by its derivative (sigmoid' = z (1 - z), d softmax).

    ``activation`` "relu": max(a, 0) and its mask are exact on the computed pre-activation, so
    the hidden layer adds no rounding of its own. The bounds then hold where no pre-activation
    lies within its rounding (or, for ``difference`` and ``vectorized``, within a step) of 0:
    the kink entries, which gradcheck leaves out.
    """
    if activation not in ("sigmoid", "relu"):
        raise ValueError(f"unknown activation {activation!r}")
    is_relu = activation == "relu"
    u = eps(dtype) / 2
    kind = ulp[np.dtype(dtype).name]
    exp_rel, log_rel = rel(kind["exp"], dtype), rel(kind["log"], dtype)
    sig_rel = sigmoid_rel(exp_rel, dtype)
    p_round = u if params_rounded else 0.0
    W1, b1, W2, b2 = (np.asarray(params[k], np.float64) for k in ("W1", "b1", "W2", "b2"))
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    k = W2.shape[1]
    rows = np.arange(n)
    ax, aW1, aW2 = np.abs(x), np.abs(W1), np.abs(W2)

    # forward: hidden pre-activations, the activation, logits. A zero pixel adds an exact 0, so a
    # sample's sum over pixels has as many rounded terms as it has non-zero pixels
    a1 = x @ W1 + b1
    pixels = np.count_nonzero(x, axis=1)[:, None]
    e_a1 = (gamma(pixels + 1, dtype) + p_round) * (ax @ aW1 + np.abs(b1))
    if is_relu:
        z = np.maximum(a1, 0)
        dz = (a1 > 0).astype(np.float64)
        e_z = dz * e_a1
    else:
        z = 1 / (1 + np.exp(-a1))
        dz = z * (1 - z)
        e_z = dz * e_a1 + sig_rel * z
    a2 = z @ W2 + b2
    e_a2 = e_z @ aW2 + (gamma(W1.shape[1] + 1, dtype) + p_round) * (z @ aW2 + np.abs(b2))

    # the loss, per sample log S - s_t with s the logits less their max, S = sum exp(s)
    s = a2 - a2.max(axis=1, keepdims=True)
    lse = np.log(np.exp(s).sum(axis=1))
    probs = np.exp(s - lse[:, None])
    onehot = np.zeros_like(probs)
    onehot[rows, t] = 1.0
    ell = lse - s[rows, t]
    s_max = np.abs(s).max(axis=1)
    # S: k exps (also of the shift's rounding, u |s|) and k - 1 additions; then the log of S,
    # or (log(softmax)) exp(s_t), a division and the log of p_t; the last subtraction
    per_sample = (2 * exp_rel + gamma(k, dtype) + u * (2 * s_max + ell) + log_rel * (lse + ell)
                  + (np.abs(probs - onehot) * e_a2).sum(axis=1))  # logits' error: d loss = p - t
    loss = float(ell.mean())
    loss_error = float((per_sample.sum() + gamma(n + 1, dtype) * (lse + np.abs(s[rows, t])).sum())
                       / n + u * loss)

    # backward: delta2 = (p - t) / N (p as exp(s) / S or exp(log softmax)), then the products
    rho = (2 * exp_rel + gamma(k, dtype) + log_rel * lse[:, None]
           + u * (2 * np.abs(s) + s_max[:, None] + lse[:, None]))
    e_probs = probs * (rho + e_a2 + (probs * e_a2).sum(axis=1, keepdims=True))
    delta2 = (probs - onehot) / n
    e_delta2 = (e_probs + gamma(3, dtype) * np.abs(probs - onehot)) / n
    dhidden = delta2 @ W2.T
    e_dhidden = e_delta2 @ aW2.T + (gamma(k, dtype) + p_round) * np.abs(delta2) @ aW2.T
    delta1 = dhidden * dz
    e_delta1 = e_dhidden * dz  # the mask: exact
    if not is_relu:  # z (1 - z) from z, which carries e_z
        e_delta1 += np.abs(dhidden) * (e_z * np.abs(1 - 2 * z) + gamma(3, dtype) * dz)
    grads = {"W1": x.T @ delta1, "b1": delta1.sum(axis=0), "W2": z.T @ delta2,
             "b2": delta2.sum(axis=0)}
    samples = np.count_nonzero(x, axis=0)[:, None]  # the terms of each W1 row's sum over N
    gradient = {
        "W1": ax.T @ e_delta1 + gamma(samples, dtype) * ax.T @ np.abs(delta1),
        "b1": e_delta1.sum(axis=0) + gamma(n, dtype) * np.abs(delta1).sum(axis=0),
        "W2": e_z.T @ np.abs(delta2) + z.T @ e_delta2 + gamma(n, dtype) * z.T @ np.abs(delta2),
        "b2": e_delta2.sum(axis=0) + gamma(n, dtype) * np.abs(delta2).sum(axis=0),
    }

    # central differences: f''' and f'' along each parameter. Moving logit k: log-sum-exp's
    # derivatives p (1 - p) <= 1/4 and p (1 - p)(1 - 2p) <= SIGMOID_D2. Moving hidden unit j by
    # a shift r: the loss along W2[j] (range R) has |L'| <= R, L'' = Var <= R^2 / 4,
    # |L'''| <= R^3 / 4, composed with the sigmoid's 1/4, SIGMOID_D2 and SIGMOID_D3; a ReLU
    # unit off its kink moves by exactly the shift where it is on (dz = 1), not at all elsewhere.
    spread = W2.max(axis=1) - W2.min(axis=1)
    if is_relu:
        on = dz.mean(axis=0)  # the share of samples in which each unit is on
        d3 = {"W1": (ax**3).T @ dz / n * spread**3 / 4, "b1": on * spread**3 / 4}
        d2 = {"W1": (ax**2).T @ dz / n * spread**2 / 4, "b1": on * spread**2 / 4}
    else:
        hidden_d3 = (spread**3 / 4 / 64 + 3 * (spread**2 / 4) / 4 * SIGMOID_D2
                     + spread * SIGMOID_D3)
        hidden_d2 = spread**2 / 4 / 16 + spread * SIGMOID_D2
        d3 = {"W1": (ax**3).mean(axis=0)[:, None] * hidden_d3, "b1": hidden_d3}
        d2 = {"W1": (ax**2).mean(axis=0)[:, None] * hidden_d2, "b1": hidden_d2}
    d3 |= {"W2": (z**3).mean(axis=0)[:, None] * SIGMOID_D2, "b2": np.full(k, SIGMOID_D2)}
    d2 |= {"W2": (z**2).mean(axis=0)[:, None] / 4, "b2": np.full(k, 1 / 4)}
    # the steps (p + h) - p and p - (p - h) are off by u |p + h| each (u of the parameter's
    # dtype): the difference quotient gains |f'| and |f''| times that
    u_step = eps(np.asarray(params["W1"]).dtype) / 2
    shifted_by = {name: u_step * (np.abs(np.asarray(params[name], np.float64)) + h)
                  for name in grads}
    difference = {name: h * h * d3[name] / 6 + shifted_by[name] * (np.abs(grads[name]) / h
                                                                  + d2[name])
                  for name in grads}

    # nditer: two computed losses, each off by loss_error, over 2h; and its last division
    nditer = {name: loss_error / h + eps() * np.abs(grads[name]) for name in grads}
    # vectorized: the forward values it starts from carry the errors backprop's do (the same
    # first-order effect on the result), plus the rounding of its closed forms in float64 on
    # per-sample terms no larger than M below: expm1, log1p, sigmoid, products and sums. A ReLU
    # unit's change max(s, -a) or max(a + s, 0) is exact off its kink: only the loss change's
    # rounding is left (the change times W2's differences, expm1, a sum over the classes, log1p,
    # the stencil's subtraction, the sum over the samples, the scaling).
    exp_m1, log_1p = numpy_rel("expm1"), numpy_rel("log1p")
    out_rel = exp_m1 + log_1p + gamma(n + 8)
    hidden_rel = (exp_m1 + log_1p + gamma(n + k + 8) if is_relu else
                  2 * sigmoid_rel(numpy_rel("exp")) + 2 * exp_m1 + log_1p
                  + gamma(n + k + 12) + EPS64 / 2 * np.abs(a1).max())
    spread_t = np.abs(W2[None, :, :] - W2[:, t].T[:, :, None])  # (N, H, K): W2[j, k] - W2[j, t]
    hidden_terms = dz * np.einsum("nk,njk->nj", probs, spread_t)  # (N, H)
    per_logit = probs + onehot
    vectorized = {
        "W1": gradient["W1"] + hidden_rel * (ax.T @ hidden_terms) / n,
        "b1": gradient["b1"] + hidden_rel * hidden_terms.sum(axis=0) / n,
        "W2": gradient["W2"] + out_rel * (z.T @ per_logit) / n,
        "b2": gradient["b2"] + out_rel * per_logit.sum(axis=0) / n,
    }
    return TwoLayerBounds(e_a2, loss_error, gradient, difference, nditer, vectorized)


def five_point_step_error(param: np.ndarray, grad: np.ndarray, h: float) -> np.ndarray:
    """Bound on what rounding the steps p +- h and p +- 2h to the parameter's dtype does to the
    five-point quotient (8 (L(p + h) - L(p - h)) - (L(p + 2h) - L(p - 2h))) / 12h, to first
    order: each step m h is off by u (|p| + m h), which moves its loss by |L'| times that, so
    |L'| u (8 * 2 (|p| + h) + 2 (|p| + 2h)) / 12h = |L'| u (18 |p| + 20 h) / 12h."""
    param = np.asarray(param)
    u = eps(param.dtype) / 2
    return np.abs(grad) * u * (18 * np.abs(param.astype(np.float64)) + 20 * h) / (12 * h)
