"""gradient.py: the nditer loop visits and restores every element; the vectorized method gives
the same central differences."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from conftest import mnist_batch
from tolerances import (
    EPS32,
    EPS64,
    assert_within,
    central_difference_error,
    gamma,
    two_layer_bounds,
)

from mnist_twolayer.gradient import numerical_gradient, two_layer_numerical_gradient
from mnist_twolayer.network import TwoLayerNet


def sum_of_squares(x: np.ndarray) -> float:
    return float(np.sum(x**2))


@pytest.mark.parametrize(("point", "expected"), [((3.0, 4.0), (6.0, 8.0)),
                                                 ((0.0, 2.0), (0.0, 4.0)),
                                                 ((-5.0, -3.0), (-10.0, -6.0))])
def test_seed_values(point, expected):
    # x^2 has no third derivative: only the loss's rounding over h, 2 terms through <= 4
    # roundings (a square, a sum, x +- h moving it by |x f'| u = 2 u x^2), the quotient's u
    bound = central_difference_error(1e-4, 0.0, gamma(4) * sum_of_squares(np.array(point)))
    np.testing.assert_allclose(numerical_gradient(sum_of_squares, np.array(point)), expected,
                               rtol=gamma(1), atol=bound)


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
    # no third derivative; 24 squares summed (gamma_24), x +- h moving one by 2 u x^2 <= 4 eps
    bound = central_difference_error(1e-4, 0.0, gamma(24) * sum_of_squares(x) + 4 * EPS64)
    np.testing.assert_allclose(grad, 2 * x, rtol=gamma(1), atol=bound)


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
    # float32: 2 squares and their sum (<= 5.05, gamma_2), x +- h rounding by u |x| in float32
    # (moving the sum by 2 x^2 u <= 4 eps); the quotient in float64, stored in float32 (u)
    value_error = gamma(2, np.float32) * 5.05 + 4 * EPS32
    np.testing.assert_allclose(grad, [2.0, -4.0], rtol=gamma(1, np.float32),
                               atol=central_difference_error(1e-2, 0.0, value_error))


def small_problem(mnist, hidden: int, batch: int, seed: int = 0):
    """A float64 batch of real MNIST images and a fresh book-initialized net."""
    rng = np.random.default_rng(seed)
    x, t = mnist_batch(mnist, batch, rng)
    return TwoLayerNet(784, hidden, 10, seed=rng), x, t


def test_vectorized_equals_nditer_on_real_mnist(mnist):
    """The issue's pin: hidden 10, batch 5, float64, max abs difference <= 1e-10. Both take
    the same steps, so the same truncation: what differs is rounding, nditer's two losses over
    2h and the vectorized method's, bounded by tolerances.two_layer_bounds (~6e-11 here)."""
    net, x, t = small_problem(mnist, hidden=10, batch=5)
    nditer = net.numerical_gradient(x, t, method="nditer")
    vectorized = net.numerical_gradient(x, t, method="vectorized")
    bounds = two_layer_bounds(net.params, x, t)
    for name in ("W1", "b1", "W2", "b2"):
        bound = bounds.nditer[name] + bounds.vectorized[name]
        assert_within(nditer[name], vectorized[name], bound)
        assert np.max(bound) <= 1e-10, name


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
    # a loss near 6 rounds at ~3e-14 here: nditer's differences are good to ~3e-10
    bounds = two_layer_bounds(net.params, x, t.argmax(axis=1))
    for name in net.params:
        assert_within(nditer[name], vectorized[name], bounds.nditer[name] + bounds.vectorized[name])


def test_vectorized_returns_the_loss_and_the_parameter_dtype():
    rng = np.random.default_rng(2)
    net = TwoLayerNet(8, 4, 3, dtype=np.float32, seed=rng)
    x = rng.random((5, 8)).astype(np.float32)
    t = rng.integers(0, 3, 5).astype(np.uint8)
    loss, grads = two_layer_numerical_gradient(net.params, x, t)
    # the vectorized method works in float64 on the float32 parameters; the net in float32
    in32, in64 = two_layer_bounds(net.params, x, t, dtype=np.float32), two_layer_bounds(
        net.params, x, t)
    assert loss == pytest.approx(net.loss(x, t), rel=0, abs=in32.loss + in64.loss)
    assert {k: g.dtype for k, g in grads.items()} == {k: np.float32 for k in net.params}
    backprop = net.gradient(x.astype(np.float64), t)
    for name in net.params:
        # its steps rounded in float32 (in64.difference), the result stored in float32
        assert_within(grads[name], backprop[name],
                      in32.gradient[name] + in64.difference[name] + in64.vectorized[name]
                      + EPS32 / 2 * np.abs(backprop[name]))
