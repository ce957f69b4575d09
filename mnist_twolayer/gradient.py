"""Numerical gradients by central differences: the book's nditer loop, and a vectorized method
that computes the same differences for every parameter of the two-layer net at once.

The vectorized method exploits the net's structure. Moving W1[i, j] shifts only hidden unit j,
and only in the samples whose pixel i is non-zero; moving b1[j] shifts hidden unit j everywhere;
moving W2[j, k] or b2[k] shifts only logit k. So each perturbed loss is the base forward pass plus
a change along one direction, and the change in each sample's loss has a closed form:

    moving the logits a of a sample with label t by c * w (c a scalar, w a vector) changes its
    loss lse(a) - a[t] by log(sum_k p_k exp(c * (w_k - w_t))) = log1p(sum_k p_k expm1(c * u_k))

with p = softmax(a) and u = w - w_t, and a shift s of a hidden pre-activation a1 changes its
sigmoid by sigmoid(a1 + s) - sigmoid(a1) = -sigmoid(a1 + s) * sigmoid(-a1) * expm1(-s).
Evaluating these differences directly, instead of subtracting two losses near 2.3, leaves
rounding errors near 1e-16 of the difference rather than of the loss.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from .functions import numerical_diff, sigmoid

__all__ = ["numerical_diff", "numerical_gradient", "two_layer_numerical_gradient"]


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


def _steps(param: np.ndarray, h: float) -> np.ndarray:
    """The shifts the nditer loop really applies, (param + h) - param and (param - h) - param,
    rounded in the parameter's own dtype; stacked on a new first axis and returned in float64."""
    plus = (param + param.dtype.type(h)).astype(np.float64) - param
    minus = (param - param.dtype.type(h)).astype(np.float64) - param
    return np.stack([plus, minus])


def _sigmoid_change(a: np.ndarray, sigmoid_neg_a: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """sigmoid(a + shift) - sigmoid(a) without cancellation, given sigmoid(-a)."""
    return -sigmoid(a + shift) * sigmoid_neg_a * np.expm1(-shift)


def two_layer_numerical_gradient(params: Mapping[str, np.ndarray], x: np.ndarray,
                                 t: np.ndarray, h: float = 1e-4
                                 ) -> tuple[float, dict[str, np.ndarray]]:
    """Central-difference gradients of the two-layer net's mean cross-entropy, all at once.

    ``params`` holds W1 (D, H), b1 (H,), W2 (H, O) and b2 (O,); ``x`` is (N, D) and ``t`` holds
    N class indices. Each entry is (L(p + h) - L(p - h)) / 2h as the nditer loop computes it,
    but evaluated in float64 from the closed forms in the module docstring. Returns the
    unperturbed loss and the gradients in the parameters' dtypes.
    """
    W1, b1, W2, b2 = (np.asarray(params[k], dtype=np.float64) for k in ("W1", "b1", "W2", "b2"))
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t)
    n = x.shape[0]
    rows = np.arange(n)

    a1 = x @ W1 + b1
    z1 = sigmoid(a1)
    sig_neg_a1 = sigmoid(-a1)
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

    def hidden_loss_change(change: np.ndarray, sample: np.ndarray | int) -> np.ndarray:
        """Loss change of the sample(s) when hidden unit j's output moves by change[..., j]."""
        return np.log1p(np.expm1(change[..., None] * u[sample]) @ p[sample][..., None])[..., 0]

    def logit_loss_change(shift: np.ndarray, probs: np.ndarray, label: np.ndarray) -> np.ndarray:
        """Loss change of a sample whose logit k (probability probs[k]) moves by shift[k]."""
        return np.log1p(probs * np.expm1(shift)) - shift * label

    grads: dict[str, np.ndarray] = {}
    scale = 1.0 / (2 * h * n)

    # b2[k]: logit k of every sample moves by the step
    d = logit_loss_change(_steps(params["b2"], h)[:, None, :], p, is_label)  # (2, N, O)
    grads["b2"] = (d[0] - d[1]).sum(axis=0) * scale

    # W2[j, k]: logit k of sample n moves by step * z1[n, j]
    shift = _steps(params["W2"], h)[:, None, :, :] * z1[None, :, :, None]  # (2, N, H, O)
    d = logit_loss_change(shift, p[:, None, :], is_label[:, None, :])
    grads["W2"] = (d[0] - d[1]).sum(axis=0) * scale

    # b1[j]: hidden unit j of every sample moves by the step
    shift = _steps(params["b1"], h)[:, None, :]  # (2, 1, H)
    d = hidden_loss_change(_sigmoid_change(a1, sig_neg_a1, shift), rows)  # (2, N, H)
    grads["b1"] = (d[0] - d[1]).sum(axis=0) * scale

    # W1[i, j]: hidden unit j of sample n moves by step * x[n, i]; nothing moves where x is 0
    steps_w1 = _steps(params["W1"], h)  # (2, D, H)
    g_w1 = np.zeros(W1.shape)
    for s in range(n):
        moved = np.flatnonzero(x[s])
        if moved.size == 0:
            continue
        shift = steps_w1[:, moved, :] * x[s, moved][None, :, None]  # (2, m, H)
        d = hidden_loss_change(_sigmoid_change(a1[s], sig_neg_a1[s], shift), s)
        g_w1[moved] += d[0] - d[1]
    grads["W1"] = g_w1 * scale

    return loss, {k: grads[k].astype(params[k].dtype, copy=False)
                  for k in ("W1", "b1", "W2", "b2")}
