"""autograd.py: the seeds' checks, accumulation, generation order, broadcasting, no_grad."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_twolayer import autograd as ag
from mnist_twolayer.autograd import Variable, as_array, no_grad
from mnist_twolayer.functions import sigmoid, softmax, softmax_cross_entropy
from mnist_twolayer.gradient import numerical_gradient

rng = np.random.default_rng(0)


def var(value) -> Variable:
    return Variable(np.array(value, dtype=np.float64))


def test_seed_add_and_mul():
    a, b, c = var(2.0), var(3.0), var(4.0)
    d = a * b + c
    d.backward()
    assert d.data == 10.0
    assert (a.grad, b.grad, c.grad) == (3.0, 2.0, 1.0)
    assert all(isinstance(v.grad, np.ndarray) for v in (a, b, c))


def test_seed_square_exp_square():
    x = var(0.5)
    y = ag.square(ag.exp(ag.square(x)))
    y.backward()
    assert float(y.data) == pytest.approx(1.648721270700128, rel=1e-15)
    assert float(x.grad) == pytest.approx(3.297442541400256, rel=1e-15)


def test_variable_holds_ndarrays_only():
    with pytest.raises(TypeError, match="ndarray"):
        Variable(1.0)
    assert isinstance(as_array(np.float64(2.0)), np.ndarray)
    assert isinstance(as_array(3), np.ndarray)


def test_gradients_accumulate_when_a_variable_is_used_twice():
    x = var(3.0)
    y = x + x
    y.backward()
    assert x.grad == 2.0
    x.cleargrad()
    (x * x * x).backward()
    assert x.grad == pytest.approx(27.0)


def test_a_second_backward_through_the_same_graph_gives_the_same_gradient():
    """Intermediate gradients are dropped after use, so they cannot leak into the next pass."""
    x = var(3.0)
    y = ag.square(x)
    z = y * var(2.0)
    z.backward()
    assert x.grad == 12.0 and y.grad is None and z.grad is None
    x.cleargrad()
    z.backward()
    assert x.grad == 12.0
    x.cleargrad()
    z.backward(retain_grad=True)
    assert (x.grad, y.grad, z.grad) == (12.0, 2.0, 1.0)


def test_generation_order_on_a_diamond_graph():
    """y = a^2 + a^2 with a = x^2: a's gradient must be complete before square(x) runs."""
    x = var(2.0)
    a = ag.square(x)
    y = ag.square(a) + ag.square(a)
    y.backward()
    assert y.data == 32.0
    assert x.grad == 64.0


def test_deep_graph_has_no_recursion_limit():
    x = var(1.0)
    y = x
    for _ in range(5000):
        y = y * 1.0 + 0.0
    y.backward()
    assert x.grad == 1.0


def test_no_grad_records_nothing_and_restores_on_error():
    x = var(2.0)
    with no_grad():
        y = ag.square(x)
    assert y.creator is None
    with pytest.raises(RuntimeError), no_grad():
        raise RuntimeError
    assert ag.square(x).creator is not None


def test_broadcasting_add_and_mul_sum_back_to_the_input_shape():
    x = Variable(rng.standard_normal((4, 3)))
    b = Variable(rng.standard_normal(3))
    s = Variable(rng.standard_normal((4, 1)))
    y = ag.sum((x + b) * s)
    y.backward()
    assert b.grad.shape == (3,) and s.grad.shape == (4, 1)
    np.testing.assert_allclose(b.grad, np.broadcast_to(s.data, (4, 3)).sum(axis=0), rtol=1e-14)
    np.testing.assert_allclose(s.grad, (x.data + b.data).sum(axis=1, keepdims=True), rtol=1e-14)
    np.testing.assert_allclose(x.grad, np.broadcast_to(s.data, (4, 3)), rtol=1e-14)


def test_ndarray_on_the_left_defers_to_the_variable():
    x = var([1.0, 2.0])
    y = np.array([3.0, 4.0]) * x + np.array([1.0, 1.0])
    assert isinstance(y, Variable)
    ag.sum(y).backward()
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])


@pytest.mark.parametrize(("axis", "keepdims"), [(None, False), (0, False), (1, True), (-1, False)])
def test_sum_backward_broadcasts_back(axis, keepdims):
    x = Variable(rng.standard_normal((2, 3)))
    weights = rng.standard_normal(np.sum(x.data, axis=axis, keepdims=keepdims).shape)
    y = ag.sum(ag.sum(x, axis=axis, keepdims=keepdims) * weights)
    y.backward()
    expected = numerical_gradient(
        lambda v: float(np.sum(np.sum(v, axis=axis, keepdims=keepdims) * weights)), x.data.copy())
    np.testing.assert_allclose(x.grad, expected, rtol=1e-8)


def test_matmul_sigmoid_and_softmax_cross_entropy_match_numerical_gradients():
    x = rng.standard_normal((5, 4))
    W = rng.standard_normal((4, 3))
    t = np.array([0, 2, 1, 1, 0])
    Wv = Variable(W.copy())
    loss = ag.softmax_cross_entropy(ag.sigmoid(x @ Wv), t)
    loss.backward()

    def f(w: np.ndarray) -> float:
        return softmax_cross_entropy(sigmoid(x @ w), t)

    assert float(loss.data) == pytest.approx(f(W), rel=1e-15)
    np.testing.assert_allclose(Wv.grad, numerical_gradient(f, W), rtol=1e-7)
    # and the analytic form: d/dlogits = (softmax - onehot) / N
    logits = Variable(rng.standard_normal((5, 3)))
    ag.softmax_cross_entropy(logits, t).backward()
    np.testing.assert_allclose(logits.grad, (softmax(logits.data) - np.eye(3)[t]) / 5,
                               rtol=1e-14, atol=1e-17)


def test_relu_passes_the_gradient_where_its_input_is_positive_only():
    x = Variable(np.array([[-1.5, 0.0, 2.0], [0.25, -0.0, -3.0]]))
    weights = np.arange(1.0, 7.0).reshape(2, 3)
    y = ag.sum(ag.relu(x) * weights)
    y.backward()
    assert float(y.data) == 2.0 * 3 + 0.25 * 4
    np.testing.assert_array_equal(x.grad, [[0.0, 0.0, 3.0], [4.0, 0.0, 0.0]])  # 0 at x = 0


def test_matmul_relu_and_softmax_cross_entropy_match_numerical_gradients():
    local = np.random.default_rng(12)
    x = local.standard_normal((5, 4))
    W = local.standard_normal((4, 3))
    t = np.array([0, 2, 1, 1, 0])
    Wv = Variable(W.copy())
    ag.softmax_cross_entropy(ag.relu(x @ Wv), t).backward()

    def f(w: np.ndarray) -> float:
        return softmax_cross_entropy(np.maximum(x @ w, 0), t)

    assert np.abs(x @ W).min() > 1e-2  # no pre-activation within reach of +-h of the kink
    # h^2 truncation from softmax's curvature (~1e-9 relative) and the rounding of the loss
    # differences (~1e-16 / 2h): 1e-7 as for sigmoid
    np.testing.assert_allclose(Wv.grad, numerical_gradient(f, W), rtol=1e-7)


def test_matmul_gives_both_gradients():
    x = Variable(rng.standard_normal((2, 3)))
    W = Variable(rng.standard_normal((3, 4)))
    ag.sum(ag.matmul(x, W)).backward()
    np.testing.assert_allclose(x.grad, np.ones((2, 4)) @ W.data.T, rtol=1e-14)
    np.testing.assert_allclose(W.grad, x.data.T @ np.ones((2, 4)), rtol=1e-14)


def test_constants_take_no_gradient_and_matmul_skips_computing_it():
    """The input batch of the net is a constant: its gradient (a product as large as the
    forward one) is neither computed nor stored."""
    x = np.arange(6.0).reshape(2, 3)
    W = Variable(np.ones((3, 2)))
    y = ag.sum(ag.matmul(x, W))
    product = y.creator.inputs[0].creator
    constant = product.inputs[0]
    assert constant.requires_grad is False
    assert product.backward(np.ones((2, 2)))[0] is None
    y.backward()
    np.testing.assert_array_equal(W.grad, x.T @ np.ones((2, 2)))
    assert constant.grad is None
