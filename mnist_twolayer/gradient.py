"""Numerical gradients by finite differences: the book's nditer loop, the book's
``gradient_descent`` on top of it, and a vectorized method that computes the same differences for
every parameter of the two-layer net at once.

The vectorized method exploits the net's structure. Moving W1[i, j] shifts only hidden unit j,
and only in the samples whose pixel i is non-zero; moving b1[j] shifts hidden unit j everywhere;
moving W2[j, k] or b2[k] shifts only logit k. So each perturbed loss is the base forward pass plus
a change along one direction, and the change in each sample's loss has a closed form:

    moving the logits a of a sample with label t by c * w (c a scalar, w a vector) changes its
    loss lse(a) - a[t] by log(sum_k p_k exp(c * (w_k - w_t))) = log1p(sum_k p_k expm1(c * u_k))

with p = softmax(a) and u = w - w_t, and a shift s of a hidden pre-activation a1 changes its
output by

    sigmoid(a1 + s) - sigmoid(a1) = -sigmoid(a1 + s) * sigmoid(-a1) * expm1(-s)
    relu(a1 + s) - relu(a1)       = max(s, -a1) if a1 > 0, else max(a1 + s, 0)

(the ReLU form is exact: at most the one rounding of a1 + s). Evaluating these differences
directly, instead of subtracting two losses near 2.3, leaves rounding errors near 1e-16 of the
difference rather than of the loss.

For the sigmoid net there is a faster road to the same numbers. A finite-difference step moves a
hidden pre-activation by |s| ~ 1e-4, and the loss change of sample n is a smooth function of s
whose Taylor polynomial of a few terms, d(s) = sum_r f_r s^r, equals it to within 2^-54 of a
bound on the change itself (the number of terms comes from a Cauchy bound,
:func:`_series_terms`). The coefficients f_r are computed once per (sample, hidden unit) by
power-series arithmetic; then the sum over samples of every W1 difference is sum_r (sum_n x[n,
i]^r f_r[n, j]) step^r: R small matrix products instead of an exponential per (step, pixel,
sample, unit, class). Steps too large for the series (a
large h, huge weights) and the ReLU net, whose kinks no polynomial follows, take the closed
forms above, a chunk of (pixel, sample) pairs at a time.

A ReLU unit is linear on each side of 0, so a step that moves some sample's pre-activation across
0 (a "kink") gives a difference quotient that is an average of two slopes, not the derivative:
no step size or stencil order fixes that. Such entries are reported in
:attr:`NumericalGradient.kinks` so that a comparison with an analytic gradient can leave out
exactly those and say how many it left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from .functions import numerical_diff, relu, sigmoid

__all__ = ["ACTIVATIONS", "ORDERS", "NumericalGradient", "gradient_descent", "numerical_diff",
           "numerical_gradient", "two_layer_numerical_gradient"]

ACTIVATIONS = ("sigmoid", "relu")

# order -> (denominator, ((multiple m, weight w), ...)): the derivative is
# sum_m w * (f(x + m h) - f(x - m h)) / (denominator * h), with truncation error O(h^order)
_STENCILS: dict[int, tuple[int, tuple[tuple[int, int], ...]]] = {
    2: (2, ((1, 1),)),             # (f(x+h) - f(x-h)) / 2h
    4: (12, ((1, 8), (2, -1))),    # (8 f(x+h) - 8 f(x-h) - f(x+2h) + f(x-2h)) / 12h
}
ORDERS = tuple(_STENCILS)


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray,
                       h: float = 1e-4) -> np.ndarray:
    """Gradient of ``f`` at ``x`` (any shape) by central differences, one element at a time.

    The book's loop: each element is moved to x + h and x - h in place (so ``f`` may ignore its
    argument and read shared state, as the network's loss closures do), then restored exactly.
    ``x`` must be a writable float array; the perturbation is rounded to its dtype, just as the
    stored value is.
    """
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        idx = it.multi_index
        original = x[idx]
        x[idx] = original + h
        f_plus = f(x)
        x[idx] = original - h
        f_minus = f(x)
        x[idx] = original
        grad[idx] = (f_plus - f_minus) / (2 * h)
        it.iternext()
    return grad


def gradient_descent(f: Callable[[np.ndarray], float], init_x: np.ndarray, lr: float = 0.01,
                     step_num: int = 100, *, return_path: bool = False
                     ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The book's ch. 4 descent: ``step_num`` times x <- x - lr * numerical_gradient(f, x).

    Returns the final x. With ``return_path=True`` returns (x, path), path holding the
    step_num + 1 points visited, ``init_x`` first and the final x last, ready to plot (the book's
    script records the points before each step, without the last). Unlike the book's version
    this never moves ``init_x`` itself; integer starting points are taken as float64.
    """
    x = np.array(init_x)  # a copy: the caller's array stays where it was
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    path = [x.copy()]
    for _ in range(step_num):
        x -= lr * numerical_gradient(f, x)
        if return_path:
            path.append(x.copy())
    return (x, np.stack(path)) if return_path else x


@dataclass
class NumericalGradient:
    """What :func:`two_layer_numerical_gradient` computed.

    ``kinks`` maps each parameter name to a boolean mask of its shape: True where one of the
    stencil's steps moves some sample's ReLU pre-activation across 0 (always all False for
    sigmoid), so that the entry's difference quotient is not the derivative.
    """

    loss: float
    grads: dict[str, np.ndarray]
    kinks: dict[str, np.ndarray]

    @property
    def kink_counts(self) -> dict[str, int]:
        """How many entries of each parameter cross a kink."""
        return {name: int(np.count_nonzero(mask)) for name, mask in self.kinks.items()}


def _steps(param: np.ndarray, h: float, order: int) -> np.ndarray:
    """The shifts a loop that sets param + m h and param - m h really applies, rounded in the
    parameter's own dtype, for each multiple m of the stencil: stacked on a new first axis as
    (+m1, -m1, +m2, -m2, ...) and returned in float64."""
    shifts = []
    for m, _ in _STENCILS[order][1]:
        step = param.dtype.type(m * h)
        shifts += [(param + step).astype(np.float64) - param,
                   (param - step).astype(np.float64) - param]
    return np.stack(shifts)


def stencil_rounding_gain(order: int) -> float:
    """How much the stencil of ``order`` amplifies errors proportional to the step m h, as the
    loss changes the vectorized path computes have, against the central difference:
    sum_m 2 m |w_m| / denominator. Order 2: 1; order 4: 5/3. (The nditer loop, whose losses
    are off by a constant each, runs the central difference only.)"""
    denominator, taps = _STENCILS[order]
    return sum(2 * m * abs(w) for m, w in taps) / denominator


def _combine(d: np.ndarray, order: int) -> np.ndarray:
    """sum_m w * (d[+m] - d[-m]) over the stencil, from loss changes stacked as by _steps."""
    weights = [w for _, w in _STENCILS[order][1]]
    total = weights[0] * (d[0] - d[1])
    for k, w in enumerate(weights[1:], start=1):
        total += w * (d[2 * k] - d[2 * k + 1])
    return total


def _sigmoid_change(a: np.ndarray, sigmoid_neg_a: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """sigmoid(a + shift) - sigmoid(a) without cancellation, given sigmoid(-a)."""
    return -sigmoid(a + shift) * sigmoid_neg_a * np.expm1(-shift)


def _relu_change(a: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """relu(a + shift) - relu(a), exactly but for the one rounding of a + shift."""
    return np.where(a > 0, np.maximum(shift, -a), np.maximum(a + shift, 0))


def _crosses_kink(a: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Whether a + shift lies on the other side of ReLU's kink than a (x <= 0 is the flat side,
    as in the Relu layer's mask); exact, since rounding a + shift never changes its sign."""
    return (a + shift > 0) != (a > 0)


PAIRS_PER_CHUNK = 1 << 16
"""(pixel, sample, hidden unit) triples per chunk of the W1 differences: ~16 MB of float64 per
stencil step, whatever the batch and the width of the net."""

MAX_SERIES_TERMS = 16
"""The most Taylor terms the sigmoid net's series path takes; steps that would need more (a large
--h, huge weights) take the exact form instead."""


def _sigmoid_loss_series(a1: np.ndarray, p: np.ndarray, u: np.ndarray,
                         terms: int) -> list[np.ndarray]:
    """Taylor coefficients f_1..f_R, each (N, H), of the loss change of sample n when hidden
    unit j's pre-activation moves by s: d(s) = sum_r f_r s^r (f_0 = 0).

    d(s) = log(sum_k p_k exp(u_k (z(s) - z(0)))) with z(s) = sigmoid(a1 + s), built as power
    series truncated at degree R: z from the sigmoid's equation z' = z (1 - z); the sum from
    the moments m_q = sum_k p_k u_k^q, as 1 + sum_q (m_q / q!) (z(s) - z(0))^q; the log from
    F' (1 + T) = T'. Every coefficient is computed once per (sample, unit).

    The sigmoid's coefficients never form 1 - z_0, which cancels where sigmoid(a1) is near 1:
    with y_0 = sigmoid(-a1), z_1 = z_0 y_0 and, since coefficient r of z (1 - z) is z_r (1 - 2
    z_0) - sum_{k=1}^{r-1} z_k z_{r-k} and 1 - 2 z_0 = y_0 - z_0, (r + 1) z_{r+1} = z_r (y_0 -
    z_0) - sum_{k=1}^{r-1} z_k z_{r-k}."""
    z0, y0 = sigmoid(a1), sigmoid(-a1)
    z = [z0, z0 * y0]
    for r in range(1, terms):
        z.append((z[r] * (y0 - z0) - sum(z[k] * z[r - k] for k in range(1, r))) / (r + 1))
    change = [np.zeros_like(a1), *z[1:]]  # z(s) - z(0)
    power, total = change, [np.zeros_like(a1) for _ in range(terms + 1)]
    u_q = np.ones_like(u)
    for q in range(1, terms + 1):
        u_q *= u
        weight = (u_q @ p[:, :, None])[..., 0] / math.factorial(q)  # m_q / q!
        for r in range(q, terms + 1):
            total[r] = total[r] + weight * power[r]
        power = [sum(power[k] * change[r - k] for k in range(1, r)) if r > 1 else
                 np.zeros_like(a1) for r in range(terms + 1)]
    f = [np.zeros_like(a1)]
    for r in range(1, terms + 1):  # log1p: f_r = t_r - (1/r) sum_k k f_k t_{r-k}
        f.append(total[r] - sum(k * f[k] * total[r - k] for k in range(1, r)) / r)
    return f[1:]


def _polynomial(coefficients: list[np.ndarray], steps: np.ndarray) -> np.ndarray:
    """sum_r c_r step^r (r from 1) for each row of ``steps``, by Horner's rule."""
    total = coefficients[-1] * steps
    for c in reversed(coefficients[:-1]):
        total += c
        total *= steps
    return total


def _series_terms(step: float, reach: float) -> int | None:
    """How many Taylor terms give the loss change of a pre-activation step of at most ``step``
    to within 2^-54 * 3 q (q = step / rho below), for logit directions of at most ``reach``;
    None if more than MAX_SERIES_TERMS would be needed.

    On the disc |s| <= rho = min(1, 1 / (5 reach)) the sigmoid moves by at most 2.3 |s| (it
    stays within 1.1 of 0 there) and the sum inside the log stays within 0.65 of 1, so |d| <= 3
    and the Cauchy estimate bounds the remainder after R terms by 3 q^(R+1) / (1 - q). R is the
    least with q^R / (1 - q) <= 2^-54, so the remainder is at most 2^-54 * 3 q in absolute
    terms, where 3 q bounds |d| itself at |s| <= step (Schwarz: d(0) = 0): between a quarter
    and a half ulp of 3 q, and no bound relative to one sample's change, which may be far
    smaller (a saturated unit's)."""
    rho = min(1.0, 1.0 / (5.0 * reach)) if reach > 0 else 1.0
    q = step / rho
    for terms in range(1, MAX_SERIES_TERMS + 1):
        if q < 1 and q**terms / (1 - q) <= 2.0**-54:
            return terms
    return None


def two_layer_numerical_gradient(params: Mapping[str, np.ndarray], x: np.ndarray,
                                 t: np.ndarray, h: float = 1e-4, *,
                                 activation: str = "sigmoid", order: int = 2
                                 ) -> NumericalGradient:
    """Finite-difference gradients of the two-layer net's mean cross-entropy, all at once.

    ``params`` holds W1 (D, H), b1 (H,), W2 (H, O) and b2 (O,); ``x`` is (N, D) and ``t`` holds
    N class indices; ``activation`` is the hidden layer's ("sigmoid" or "relu"). ``order`` 2 is
    the central difference (L(p + h) - L(p - h)) / 2h, entry by entry as the nditer loop
    computes it; ``order`` 4 is the five-point stencil (8 (L(p + h) - L(p - h)) - (L(p + 2h) -
    L(p - 2h))) / 12h, whose truncation error is O(h^4) instead of O(h^2). Every loss change is
    evaluated in float64 from the closed forms in the module docstring. Returns the unperturbed
    loss, the gradients in the parameters' dtypes and the ReLU kink entries.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of "
                         f"{', '.join(ACTIVATIONS)}")
    if order not in _STENCILS:
        raise ValueError(f"order must be one of {', '.join(map(str, ORDERS))}, not {order!r}")
    W1, b1, W2, b2 = (np.asarray(params[k], dtype=np.float64) for k in ("W1", "b1", "W2", "b2"))
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t)
    n = x.shape[0]
    rows = np.arange(n)
    is_relu = activation == "relu"

    a1 = x @ W1 + b1
    if is_relu:
        z1 = relu(a1)

        def hidden_change(shift: np.ndarray, sample: np.ndarray | int) -> np.ndarray:
            return _relu_change(a1[sample], shift)
    else:
        z1 = sigmoid(a1)
        sig_neg_a1 = sigmoid(-a1)

        def hidden_change(shift: np.ndarray, sample: np.ndarray | int) -> np.ndarray:
            return _sigmoid_change(a1[sample], sig_neg_a1[sample], shift)
    a2 = z1 @ W2 + b2
    shifted = a2 - a2.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    total = p.sum(axis=1, keepdims=True)
    p /= total
    loss = float((np.log(total).sum() - shifted[rows, t].sum()) / n)
    is_label = np.zeros_like(p)
    is_label[rows, t] = 1.0
    # u[n, j, k] = W2[j, k] - W2[j, t_n]: the logit direction of hidden unit j relative to t_n
    u = W2[None, :, :] - W2[:, t].T[:, :, None]

    def hidden_loss_change(change: np.ndarray, sample: np.ndarray) -> np.ndarray:
        """Loss change of the sample(s) when hidden unit j's output moves by change[..., j]."""
        return np.log1p(np.expm1(change[..., None] * u[sample]) @ p[sample][..., None])[..., 0]

    def logit_loss_change(shift: np.ndarray, probs: np.ndarray, label: np.ndarray) -> np.ndarray:
        """Loss change of a sample whose logit k (probability probs[k]) moves by shift[k]."""
        return np.log1p(probs * np.expm1(shift)) - shift * label

    grads: dict[str, np.ndarray] = {}
    kinks = {name: np.zeros(np.shape(params[name]), dtype=bool)
             for name in ("W1", "b1", "W2", "b2")}
    scale = 1.0 / (_STENCILS[order][0] * h * n)

    # b2[k]: logit k of every sample moves by the step
    d = logit_loss_change(_steps(params["b2"], h, order)[:, None, :], p, is_label)  # (S, N, O)
    grads["b2"] = _combine(d, order).sum(axis=0) * scale

    # W2[j, k]: logit k of sample n moves by step * z1[n, j]
    shift = _steps(params["W2"], h, order)[:, None, :, :] * z1[None, :, :, None]  # (S, N, H, O)
    d = logit_loss_change(shift, p[:, None, :], is_label[:, None, :])
    grads["W2"] = _combine(d, order).sum(axis=0) * scale

    # b1[j] moves hidden unit j of every sample by the step; W1[i, j] moves it by step * x[n, i]
    # in sample n, and nothing where x is 0
    steps_b1 = _steps(params["b1"], h, order)  # (S, H)
    steps_w1 = _steps(params["W1"], h, order)  # (S, D, H)
    terms = None if is_relu else _series_terms(
        max(float(np.abs(steps_w1).max()) * float(np.abs(x).max()),
            float(np.abs(steps_b1).max())), float(np.abs(u).max()))
    if terms is not None:
        # a sigmoid net and small steps: each sample's loss change is its Taylor polynomial in
        # the step, so the sum over samples of every W1 difference is R matrix products
        f = _sigmoid_loss_series(a1, p, u, terms)
        # sum_n d_n(step) = sum_r (sum_n f_r) step^r for b1, and for W1[i, j], whose step
        # moves sample n by step * x[n, i]: sum_r (sum_n x[n, i]^r f_r[n, j]) step^r
        b1_sums = [fr.sum(axis=0) for fr in f]  # (H,)
        x_r, w1_sums = np.ones_like(x), []
        for fr in f:
            x_r *= x
            w1_sums.append(x_r.T @ fr)  # (D, H)
        grads["b1"] = _combine(_polynomial(b1_sums, steps_b1), order) * scale
        grads["W1"] = _combine(_polynomial(w1_sums, steps_w1), order) * scale
        return NumericalGradient(loss, {k: grads[k].astype(params[k].dtype, copy=False)
                                        for k in ("W1", "b1", "W2", "b2")}, kinks)

    shift = steps_b1[:, None, :]  # (S, 1, H)
    d = hidden_loss_change(hidden_change(shift, rows), rows)  # (S, N, H)
    grads["b1"] = _combine(d, order).sum(axis=0) * scale
    if is_relu:
        kinks["b1"] = _crosses_kink(a1, shift).any(axis=(0, 1))

    # The (pixel, sample) pairs with x != 0, sorted by pixel, in chunks of bounded memory.
    pixels, samples = np.nonzero(x.T)
    g_w1 = np.zeros(W1.shape)
    chunk = max(1, PAIRS_PER_CHUNK // W1.shape[1])
    for begin in range(0, pixels.size, chunk):
        i, s = pixels[begin:begin + chunk], samples[begin:begin + chunk]
        shift = steps_w1[:, i, :] * x[s, i][None, :, None]  # (S, pairs, H)
        d = _combine(hidden_loss_change(hidden_change(shift, s), s), order)  # (pairs, H)
        first = np.flatnonzero(np.r_[True, i[1:] != i[:-1]])  # where each pixel's run starts
        g_w1[i[first]] += np.add.reduceat(d, first, axis=0)
        if is_relu:
            crossed = _crosses_kink(a1[s], shift).any(axis=0)
            kinks["W1"][i[first]] |= np.logical_or.reduceat(crossed, first, axis=0)
    grads["W1"] = g_w1 * scale

    return NumericalGradient(loss, {k: grads[k].astype(params[k].dtype, copy=False)
                                    for k in ("W1", "b1", "W2", "b2")},
                             kinks)
