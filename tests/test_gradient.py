"""gradient.py: the nditer loop visits and restores every element; the vectorized method gives
the same central differences."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from conftest import mnist_batch

from mnist_twolayer.gradient import numerical_gradient, two_layer_numerical_gradient
from mnist_twolayer.network import TwoLayerNet


def sum_of_squares(x: np.ndarray) -> float:
    return float(np.sum(x**2))


@pytest.mark.parametrize(("point", "expected"), [((3.0, 4.0), (6.0, 8.0)),
                                                 ((0.0, 2.0), (0.0, 4.0)),
                                                 ((-5.0, -3.0), (-10.0, -6.0))])
def test_seed_values(point, expected):
    np.testing.assert_allclose(numerical_gradient(sum_of_squares, np.array(point)), expected,
                               atol=1e-7)


def assert_visits_and_restores_every_element(gradient: Callable[..., np.ndarray]) -> None:
    """Every element of a 3-D array must be perturbed (two calls each), get 2x as its
    gradient, and be restored bit for bit."""
    x = np.random.default_rng(0).uniform(0.5, 2.0, (2, 3, 4))
    before = x.copy()
    calls = []

    def f(arr: np.ndarray) -> float:
        calls.append(1)
        return sum_of_squares(arr)

    grad = gradient(f, x)
    np.testing.assert_array_equal(x, before)
    assert len(calls) == 2 * x.size
    assert grad.shape == x.shape
    np.testing.assert_allclose(grad, 2 * x, rtol=1e-7)


def test_every_element_is_visited_and_restored():
    assert_visits_and_restores_every_element(numerical_gradient)


def test_the_visit_check_catches_a_return_inside_the_loop():
    """The classic mistake: ``return grad`` indented into the while loop."""

    def early_return(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-4):
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
        return grad

    with pytest.raises(AssertionError):
        assert_visits_and_restores_every_element(early_return)


def test_float32_arrays_are_perturbed_in_their_own_dtype():
    x = np.array([1.0, -2.0], dtype=np.float32)
    grad = numerical_gradient(sum_of_squares, x, h=1e-2)
    assert grad.dtype == np.float32
    np.testing.assert_allclose(grad, [2.0, -4.0], rtol=1e-4)


def small_problem(mnist, hidden: int, batch: int, seed: int = 0):
    """A float64 batch of real MNIST images and a fresh book-initialized net."""
    rng = np.random.default_rng(seed)
    x, t = mnist_batch(mnist, batch, rng)
    return TwoLayerNet(784, hidden, 10, seed=rng), x, t


def test_vectorized_equals_nditer_on_real_mnist(mnist):
    """The issue's pin: hidden 10, batch 5, float64, max abs difference <= 1e-10."""
    net, x, t = small_problem(mnist, hidden=10, batch=5)
    nditer = net.numerical_gradient(x, t, method="nditer")
    vectorized = net.numerical_gradient(x, t, method="vectorized")
    for name in ("W1", "b1", "W2", "b2"):
        assert np.max(np.abs(nditer[name] - vectorized[name])) <= 1e-10, name


def test_vectorized_equals_nditer_for_larger_weights_dense_inputs_and_one_hot():
    """Away from MNIST's zeros and the tiny initial weights: every pixel moves, logits are
    large, targets are one-hot rows."""
    rng = np.random.default_rng(1)
    net = TwoLayerNet(6, 5, 4, init="he", seed=rng)
    for name in net.params:
        net.params[name][...] = 3 * rng.standard_normal(net.params[name].shape)
    x = rng.standard_normal((7, 6))
    x[2] = 0.0  # a sample no W1 entry can move
    t = np.eye(4)[rng.integers(0, 4, 7)]
    nditer = net.numerical_gradient(x, t, method="nditer")
    vectorized = net.numerical_gradient(x, t, method="vectorized")
    for name in net.params:
        assert np.max(np.abs(nditer[name] - vectorized[name])) <= 1e-10, name


def test_vectorized_returns_the_loss_and_the_parameter_dtype():
    rng = np.random.default_rng(2)
    net = TwoLayerNet(8, 4, 3, dtype=np.float32, seed=rng)
    x = rng.random((5, 8)).astype(np.float32)
    t = rng.integers(0, 3, 5).astype(np.uint8)
    loss, grads = two_layer_numerical_gradient(net.params, x, t)
    assert loss == pytest.approx(net.loss(x, t), rel=1e-6)
    assert {k: g.dtype for k, g in grads.items()} == {k: np.float32 for k in net.params}
    backprop = net.gradient(x.astype(np.float64), t)
    for name in net.params:
        np.testing.assert_allclose(grads[name], backprop[name], rtol=1e-3, atol=1e-6)
