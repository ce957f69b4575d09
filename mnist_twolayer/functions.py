"""Activation and loss functions of the book's ch. 3-5, written so they never overflow.

All functions work in the dtype of their input (float32 stays float32) and accept either a single
sample (1-D) or a batch (2-D, one sample per row). Targets ``t`` are class indices (any integer
dtype, e.g. uint8) or one-hot rows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

CROSS_ENTROPY_EPS = 1e-7
"""The book's guard against log(0) in :func:`cross_entropy_error` (its ``delta = 1e-7``)."""


def _float_array(x: np.ndarray | float) -> np.ndarray:
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Logistic function 1 / (1 + exp(-x)), exact to rounding for every x and warning-free.

    For x below about -709 (float64) or -88 (float32) exp(-x) overflows to inf and 1 / (1 + inf)
    gives 0, which is the correctly rounded answer up to subnormals; the overflow is therefore
    expected and its warning silenced. Pass ``out`` (which may be ``x`` itself) to reuse memory.
    """
    x = _float_array(x)
    out = np.negative(x, out=np.empty_like(x) if out is None else out)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    np.add(out, 1, out=out)
    return np.reciprocal(out, out=out)


def sigmoid_grad(x: np.ndarray) -> np.ndarray:
    """Derivative of :func:`sigmoid` at x: sigmoid(x) * (1 - sigmoid(x)), as in the book."""
    y = sigmoid(x)
    return y * (1 - y)


def relu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """max(x, 0), elementwise (the book's ch. 3 ``relu``); ``out`` may be ``x`` itself."""
    return np.maximum(_float_array(x), 0, out=out)


def relu_grad(x: np.ndarray) -> np.ndarray:
    """Derivative of :func:`relu`: 1 where x > 0, else 0, in x's dtype.

    At x = 0 this follows the book's ``Relu`` layer (its mask is ``x <= 0``) and PyTorch, so every
    gradient path agrees; the book's ``common/functions.relu_grad`` alone gives 1 there.
    """
    x = _float_array(x)
    return (x > 0).astype(x.dtype)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log of :func:`softmax`, computed as (x - max) - log(sum(exp(x - max))).

    Exact where ``log(softmax(x))`` would give -inf for a probability that underflows to 0.
    """
    x = _float_array(x)
    shifted = x - x.max(axis=-1, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return shifted


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax; subtracting each row's max keeps exp from overflowing."""
    x = _float_array(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


def _as_batch(y: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Give a single sample a batch axis and turn one-hot targets into class indices."""
    y = _float_array(y)
    t = np.asarray(t)
    if y.ndim == 1:
        y = y.reshape(1, -1)
        t = t.reshape(1, -1) if t.size == y.size else t.reshape(-1)
    if t.ndim == 0 and y.shape[0] == 1:
        t = t.reshape(1)
    if t.ndim == 2:
        if t.shape != y.shape:
            raise ValueError(f"one-hot targets of shape {t.shape} do not match {y.shape}")
        t = t.argmax(axis=1)
    if t.shape != (y.shape[0],):
        raise ValueError(f"{t.shape[0] if t.ndim else 1} targets for {y.shape[0]} samples")
    check_class_indices(t, y.shape[1])
    return y, t


def check_class_indices(t: np.ndarray, num_classes: int) -> None:
    """Refuse targets that are not integers in 0 .. num_classes - 1 (NumPy would read -1 as
    the last class)."""
    if t.dtype.kind not in "iu":
        raise ValueError(f"targets must be integer class indices or one-hot rows, "
                         f"got {t.dtype} of shape {t.shape}")
    if t.size and ((t.dtype.kind == "i" and t.min() < 0) or t.max() >= num_classes):
        raise ValueError(f"class indices must be in 0..{num_classes - 1}, got values from "
                         f"{t.min()} to {t.max()}")


def cross_entropy_error(y: np.ndarray, t: np.ndarray, eps: float = CROSS_ENTROPY_EPS) -> float:
    """Mean cross-entropy of probabilities ``y`` against ``t``: -mean(log(y[t] + eps)).

    The book's form: ``eps`` keeps a zero probability from giving inf (with the default 1e-7 a
    zero costs -log(1e-7) ~ 16.12; with eps=1e-9 ~ 20.72). Prefer
    :func:`softmax_cross_entropy` on logits, which needs no guard.
    """
    y, t = _as_batch(y, t)
    picked = y[np.arange(y.shape[0]), t]
    return float(-np.log(picked + eps).sum() / y.shape[0])


def softmax_cross_entropy(x: np.ndarray, t: np.ndarray) -> float:
    """Mean cross-entropy of softmax(x) against ``t``, exact (no eps) via :func:`log_softmax`."""
    x, t = _as_batch(x, t)
    logp = log_softmax(x)
    return float(-logp[np.arange(x.shape[0]), t].sum() / x.shape[0])


def sum_squared_error(y: np.ndarray, t: np.ndarray) -> float:
    """The book's 0.5 * sum((y - t)^2); ``t`` must have the shape of ``y`` (one-hot)."""
    y = _float_array(y)
    t = np.asarray(t, dtype=y.dtype)
    if t.shape != y.shape:
        raise ValueError(f"targets of shape {t.shape} do not match outputs of shape {y.shape} "
                         f"(sum_squared_error takes one-hot targets)")
    return float(0.5 * np.sum((y - t) ** 2))


def numerical_diff(f: Callable[[float], float], x: float, h: float = 1e-4) -> float:
    """Central difference (f(x + h) - f(x - h)) / 2h: error O(h^2) instead of O(h)."""
    return (f(x + h) - f(x - h)) / (2 * h)
