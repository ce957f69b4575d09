"""Backprop layers of the book's ch. 5: Affine, Sigmoid, Relu, SoftmaxWithLoss.

Each layer caches what its backward pass needs during ``forward`` and returns the gradient of the
loss with respect to its input from ``backward``; Affine also keeps ``dW`` and ``db``.

Unlike the book's layers, these write into buffers they own and reuse while the shapes and dtype
stay the same: a training step then allocates almost nothing. The price is that an array a
layer returns (its output, ``dx``, ``dW``, ``db``) is overwritten by the layer's next call; copy it
to keep it. Nothing is upcast: float32 inputs and parameters give float32 results.
"""

from __future__ import annotations

import numpy as np

from .functions import relu, sigmoid


def _buffer(old: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Return ``old`` when it already has this shape and dtype, else a new empty array."""
    if old is not None and old.shape == shape and old.dtype == dtype:
        return old
    return np.empty(shape, dtype=dtype)


class Affine:
    """out = x @ W + b for a batch x of shape (N, in).

    ``input_grad=False`` skips dx = dout @ W.T in ``backward`` (it returns None): the first layer
    of a network has no one to pass dx to, and that product costs as much as the forward one.
    """

    def __init__(self, W: np.ndarray, b: np.ndarray, *, input_grad: bool = True) -> None:
        self.W = W
        self.b = b
        self.input_grad = input_grad
        self.x: np.ndarray | None = None
        self.out: np.ndarray | None = None
        self.dx: np.ndarray | None = None
        self.dW: np.ndarray | None = None
        self.db: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        self.out = _buffer(self.out, (x.shape[0], self.W.shape[1]), self.W.dtype)
        np.matmul(x, self.W, out=self.out)
        self.out += self.b
        return self.out

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        self.dW = _buffer(self.dW, self.W.shape, self.W.dtype)
        self.db = _buffer(self.db, self.b.shape, self.b.dtype)
        np.matmul(self.x.T, dout, out=self.dW)
        np.sum(dout, axis=0, out=self.db)
        if not self.input_grad:
            return None
        self.dx = _buffer(self.dx, self.x.shape, self.W.dtype)
        return np.matmul(dout, self.W.T, out=self.dx)


class Sigmoid:
    """out = sigmoid(x); backward uses the cached output: dx = dout * out * (1 - out)."""

    def __init__(self) -> None:
        self.out: np.ndarray | None = None
        self.dx: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.out = sigmoid(x, out=_buffer(self.out, x.shape, x.dtype))
        return self.out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.dx = _buffer(self.dx, dout.shape, dout.dtype)
        np.subtract(1, self.out, out=self.dx)
        self.dx *= self.out
        self.dx *= dout
        return self.dx


class Relu:
    """out = max(x, 0). As in the book, ``mask`` marks the inputs x <= 0, and backward passes no
    gradient through them: dx = dout where x > 0, else 0 (so the derivative at 0 is 0).

    Unlike the book's layer, backward leaves ``dout`` untouched and writes into its own ``dx``.
    """

    def __init__(self) -> None:
        self.mask: np.ndarray | None = None
        self.out: np.ndarray | None = None
        self.dx: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = np.less_equal(x, 0, out=_buffer(self.mask, x.shape, np.dtype(bool)))
        self.out = relu(x, out=_buffer(self.out, x.shape, x.dtype))
        return self.out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.dx = _buffer(self.dx, dout.shape, dout.dtype)
        np.copyto(self.dx, dout)
        self.dx[self.mask] = 0
        return self.dx


class SoftmaxWithLoss:
    """Softmax followed by mean cross-entropy against class indices ``t`` (one integer per row).

    The loss comes from the log-softmax of the scores, exact without the book's eps; the
    probabilities are kept for backward, which returns (softmax(x) - onehot(t)) * dout / N.
    """

    def __init__(self) -> None:
        self.loss: float | None = None
        self.y: np.ndarray | None = None
        self.t: np.ndarray | None = None
        self.dx: np.ndarray | None = None
        self._shifted: np.ndarray | None = None
        self._rows = np.arange(0)

    def forward(self, x: np.ndarray, t: np.ndarray) -> float:
        n = x.shape[0]
        if t.shape != (n,):
            raise ValueError(f"expected {n} class indices, got targets of shape {t.shape}")
        if self._rows.shape[0] != n:
            self._rows = np.arange(n)
        self.t = t
        shifted = self._shifted = _buffer(self._shifted, x.shape, x.dtype)
        np.subtract(x, x.max(axis=1, keepdims=True), out=shifted)
        y = self.y = _buffer(self.y, x.shape, x.dtype)
        np.exp(shifted, out=y)
        total = y.sum(axis=1, keepdims=True)
        y /= total
        # mean over rows of log(sum exp(shifted)) - shifted[t], i.e. -log softmax(x)[t]
        self.loss = float((np.log(total).sum() - shifted[self._rows, t].sum()) / n)
        return self.loss

    def backward(self, dout: float = 1.0) -> np.ndarray:
        n = self.y.shape[0]
        self.dx = _buffer(self.dx, self.y.shape, self.y.dtype)
        np.copyto(self.dx, self.y)
        self.dx[self._rows, self.t] -= 1
        self.dx *= dout / n
        return self.dx
