"""A small define-by-run autograd engine in the style of DeZero, just big enough for the net.

Calling a :class:`Function` on :class:`Variable` inputs computes the output and records the
call as the output's ``creator``. ``Variable.backward`` then walks the recorded graph from the
output back to the inputs, always taking the pending function of highest ``generation`` next, so
a variable used twice has received the gradients from all its uses (they accumulate) before its
own creator runs. The walk is an explicit loop, so deep graphs cannot exhaust Python's recursion
limit. Gradients are plain ndarrays (no higher-order derivatives).
"""

from __future__ import annotations

import contextlib
import heapq
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import functions as F

_enable_backprop = True


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Within this block functions compute values only and record no graph (for inference)."""
    global _enable_backprop
    previous, _enable_backprop = _enable_backprop, False
    try:
        yield
    finally:
        _enable_backprop = previous


def as_array(x: Any) -> np.ndarray:
    """Wrap a scalar as a 0-d array: NumPy returns scalars from operations on 0-d arrays."""
    return x if isinstance(x, np.ndarray) else np.asarray(x)


class Variable:
    """A node holding an ndarray ``data``, its gradient ``grad`` and the ``creator`` function."""

    __array_ufunc__ = None  # so ndarray * Variable defers to Variable.__rmul__

    def __init__(self, data: np.ndarray, name: str | None = None, *,
                 requires_grad: bool = True) -> None:
        if not isinstance(data, np.ndarray):
            raise TypeError(f"Variable data must be an ndarray, not {type(data).__name__}")
        self.data = data
        self.name = name
        self.requires_grad = requires_grad
        self.grad: np.ndarray | None = None
        self.creator: Function | None = None
        self.generation = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def __repr__(self) -> str:
        return f"Variable({self.data!r})"

    def set_creator(self, func: Function) -> None:
        self.creator = func
        self.generation = func.generation + 1

    def cleargrad(self) -> None:
        self.grad = None

    def backward(self, retain_grad: bool = False) -> None:
        """Compute d(self)/d(v) for every variable v this one was computed from, into v.grad.

        The seed gradient is ones (1 for a scalar loss). Gradients add to whatever ``grad``
        already holds, so call :meth:`cleargrad` on reused leaves between backward passes.
        Intermediate variables (self included) drop their gradient once it has been passed on,
        as in DeZero, so a second backward through the same graph starts clean; pass
        ``retain_grad=True`` to keep them for inspection.
        """
        if self.grad is None:
            self.grad = np.ones_like(self.data)
        pending: list[tuple[int, int, Function]] = []
        seen: set[int] = set()

        def push(func: Function | None) -> None:
            if func is not None and id(func) not in seen:
                seen.add(id(func))
                heapq.heappush(pending, (-func.generation, id(func), func))

        push(self.creator)
        while pending:
            func = heapq.heappop(pending)[2]
            gys = [output().grad for output in func.outputs]
            gxs = func.backward(*gys)
            if not isinstance(gxs, tuple):
                gxs = (gxs,)
            for x, gx in zip(func.inputs, gxs, strict=True):
                if not x.requires_grad:
                    continue
                gx = as_array(gx)
                x.grad = gx if x.grad is None else x.grad + gx
                push(x.creator)
            if not retain_grad:
                for output in func.outputs:
                    output().grad = None

    # operators, so that graphs read like the formulas they compute
    def __add__(self, other: Any) -> Variable:
        return add(self, other)

    def __radd__(self, other: Any) -> Variable:
        return add(other, self)

    def __mul__(self, other: Any) -> Variable:
        return mul(self, other)

    def __rmul__(self, other: Any) -> Variable:
        return mul(other, self)

    def __matmul__(self, other: Any) -> Variable:
        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> Variable:
        return matmul(other, self)


def as_variable(obj: Any) -> Variable:
    """Constants (arrays, scalars) become leaf Variables that take no gradient: backward
    neither stores one nor, where a function can skip it (matmul), computes it."""
    return obj if isinstance(obj, Variable) else Variable(as_array(obj), requires_grad=False)


class Function:
    """Base of all operations: ``forward`` on ndarrays, ``backward`` from output gradients to
    input gradients. One call of a Function instance is one node of the graph."""

    def __call__(self, *inputs: Any) -> Variable:
        variables = [as_variable(x) for x in inputs]
        y = as_array(self.forward(*(v.data for v in variables)))
        output = Variable(y)
        if _enable_backprop:
            self.generation = max(v.generation for v in variables)
            self.inputs = variables
            output.set_creator(self)
            # a weak reference: the output owns its creator, not the other way round
            self.outputs = [weakref.ref(output)]
        return output

    def forward(self, *xs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, *gys: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        raise NotImplementedError


def sum_to(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``x`` down to ``shape``: the adjoint of broadcasting ``shape`` up to ``x.shape``."""
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape) if n == 1)
    y = x.sum(axis=axes, keepdims=True)
    return y.reshape(shape) if lead else y


class Add(Function):
    def forward(self, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
        return x0 + x1

    def backward(self, gy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x0, x1 = self.inputs
        return sum_to(gy, x0.shape), sum_to(gy, x1.shape)


class Mul(Function):
    def forward(self, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
        return x0 * x1

    def backward(self, gy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x0, x1 = self.inputs
        return sum_to(gy * x1.data, x0.shape), sum_to(gy * x0.data, x1.shape)


class MatMul(Function):
    def forward(self, x: np.ndarray, W: np.ndarray) -> np.ndarray:
        return x @ W

    def backward(self, gy: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        # the product for a constant (the input batch, as large as the forward product) is
        # skipped
        x, W = self.inputs
        return (gy @ W.data.T if x.requires_grad else None,
                x.data.T @ gy if W.requires_grad else None)


class Exp(Function):
    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.exp(x)

    def backward(self, gy: np.ndarray) -> np.ndarray:
        return gy * self.outputs[0]().data


class Square(Function):
    def forward(self, x: np.ndarray) -> np.ndarray:
        return x**2

    def backward(self, gy: np.ndarray) -> np.ndarray:
        return 2 * self.inputs[0].data * gy


class Sigmoid(Function):
    def forward(self, x: np.ndarray) -> np.ndarray:
        return F.sigmoid(x)

    def backward(self, gy: np.ndarray) -> np.ndarray:
        y = self.outputs[0]().data
        return gy * y * (1 - y)


class Relu(Function):
    def forward(self, x: np.ndarray) -> np.ndarray:
        return F.relu(x)

    def backward(self, gy: np.ndarray) -> np.ndarray:
        return gy * F.relu_grad(self.inputs[0].data)


class Sum(Function):
    def __init__(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> None:
        self.axis = axis
        self.keepdims = keepdims

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.sum(axis=self.axis, keepdims=self.keepdims)

    def backward(self, gy: np.ndarray) -> np.ndarray:
        shape = self.inputs[0].shape
        if not self.keepdims and self.axis is not None:
            axes = (self.axis,) if isinstance(self.axis, int) else self.axis
            gy = np.expand_dims(gy, tuple(a % len(shape) for a in axes))
        return np.broadcast_to(gy, shape)


class SoftmaxCrossEntropy(Function):
    """Mean cross-entropy of softmax(x) against class indices ``t``, from log-softmax (no eps).

    ``t`` is a constant given at construction: it has no gradient.
    """

    def __init__(self, t: np.ndarray) -> None:
        self.t = np.asarray(t)

    def forward(self, x: np.ndarray) -> np.ndarray:
        logp = F.log_softmax(x)
        self.probs = np.exp(logp)
        return -logp[np.arange(x.shape[0]), self.t].sum() / x.shape[0]

    def backward(self, gy: np.ndarray) -> np.ndarray:
        n = self.probs.shape[0]
        gx = self.probs.copy()
        gx[np.arange(n), self.t] -= 1
        return gx * (gy / n)


def add(x0: Any, x1: Any) -> Variable:
    return Add()(x0, x1)


def mul(x0: Any, x1: Any) -> Variable:
    return Mul()(x0, x1)


def matmul(x: Any, W: Any) -> Variable:
    return MatMul()(x, W)


def exp(x: Any) -> Variable:
    return Exp()(x)


def square(x: Any) -> Variable:
    return Square()(x)


def sigmoid(x: Any) -> Variable:
    return Sigmoid()(x)


def relu(x: Any) -> Variable:
    return Relu()(x)


def sum(x: Any, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Variable:
    return Sum(axis, keepdims)(x)


def softmax_cross_entropy(x: Any, t: np.ndarray) -> Variable:
    return SoftmaxCrossEntropy(t)(x)
