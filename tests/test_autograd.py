"""autograd.py: the seeds' checks, accumulation, generation order, broadcasting, no_grad."""

from __future__ import annotations

from decimal import Decimal, localcontext

import numpy as np
import pytest
from tolerances import (
    EPS64,
    SIGMOID_D2,
    SIGMOID_D3,
    assert_within,
    central_difference_error,
    gamma,
    numpy_rel,
    sigmoid_rel,
)

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
    with localcontext() as context:
        context.prec = 40
        sqrt_e = Decimal("0.5").exp()
        exact = float(sqrt_e), float(2 * sqrt_e)  # the seed prints 1.648721270700128, 3.29...
    # 0.5^2 is exact; exp(0.25)'s error doubles in its square, which rounds once (u); the
    # gradient (2 e) e (2 x) rounds once too; each against a correctly rounded reference (u)
    assert float(y.data) == pytest.approx(exact[0], rel=2 * numpy_rel("exp") + EPS64, abs=0)
    assert float(x.grad) == pytest.approx(exact[1], rel=2 * numpy_rel("exp") + EPS64, abs=0)


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
    assert x.grad == 27.0  # small integers: exact


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
    # no transcendental function: 1 * s is exact, then sums of 4 and of 3 terms, each side
    # rounding them in an order of its own
    column = np.abs(s.data).sum()
    assert_within(b.grad, np.broadcast_to(s.data, (4, 3)).sum(axis=0), 2 * gamma(3) * column)
    terms = np.abs(x.data + b.data).sum(axis=1, keepdims=True)
    assert_within(s.grad, (x.data + b.data).sum(axis=1, keepdims=True), 2 * gamma(2) * terms)
    np.testing.assert_array_equal(x.grad, np.broadcast_to(s.data, (4, 3)))


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
    # the backward pass only broadcasts the weights (exact). The loss is linear (no truncation):
    # 6 terms x w through <= 7 roundings (two sums, a product), x +- h one more, over h; the
    # quotient rounds once
    w = weights if axis is None or keepdims else np.expand_dims(weights, axis)
    terms = np.sum(np.abs(x.data) * np.abs(np.broadcast_to(w, x.shape)))
    np.testing.assert_allclose(x.grad, expected, rtol=gamma(1),
                               atol=central_difference_error(1e-4, 0.0, gamma(8) * terms))


def test_matmul_sigmoid_and_softmax_cross_entropy_match_numerical_gradients():
    x = rng.standard_normal((5, 4))
    W = rng.standard_normal((4, 3))
    t = np.array([0, 2, 1, 1, 0])
    Wv = Variable(W.copy())
    loss = ag.softmax_cross_entropy(ag.sigmoid(x @ Wv), t)
    loss.backward()

    def f(w: np.ndarray) -> float:
        return softmax_cross_entropy(sigmoid(x @ w), t)

    # f(W) is a mean of 5 samples' cross-entropies of 3 logits sigmoid(x W[:, k]) in (0, 1).
    # Each computed loss: logits off by gamma_4 |x| |W| / 4 + sigmoid_rel, moving it by <= 2
    # of that; its exps, sums, log and mean (2 exp + gamma_3 + 4.1 u + log 3.2 per sample, then
    # gamma_6 of 2.1 each, < 20 eps). Autograd's forward computes the same.
    logit_error = (gamma(4) * (np.abs(x) @ np.abs(W)) / 4 + sigmoid_rel(numpy_rel("exp"))).max()
    loss_error = 2 * logit_error + 20 * EPS64
    assert float(loss.data) == pytest.approx(f(W), rel=0, abs=2 * loss_error)
    # Along W[i, k] the sample's logit moves by sigmoid(a + c x_i) - sigmoid(a), whose
    # derivatives are <= |x_i| / 4, x_i^2 SIGMOID_D2, |x_i|^3 SIGMOID_D3, and log-sum-exp's
    # along one logit are <= 1, 1/4, SIGMOID_D2: the third derivative of f is <= mean |x_i|^3
    # times d3 below. W +- h rounds by u |W|, moving the loss by <= mean |x_i| / 4 u |W|.
    d3 = (np.abs(x) ** 3).mean(axis=0)[:, None] * (
        SIGMOID_D2 / 64 + 3 / 16 * SIGMOID_D2 + SIGMOID_D3)
    value_error = loss_error + EPS64 / 2 * np.abs(W) * np.abs(x).mean(axis=0)[:, None] / 4
    # Autograd's gradient x^T (p - t) / 5 y (1 - y): p off by 2 logit_error and probs_rel, y by
    # logit_error, 8 roundings through to the sum over 5 samples (and the quotient's)
    probs_rel = 2 * numpy_rel("exp") + numpy_rel("log") * np.log(3) + gamma(8)
    backward_error = (2 * logit_error + probs_rel + gamma(8)) * (np.abs(x).T @ np.ones((5, 3))) / 5
    assert_within(Wv.grad, numerical_gradient(f, W),
                  central_difference_error(1e-4, d3, value_error) + backward_error)
    # and the analytic form: d/dlogits = (softmax - onehot) / N: p within probs_rel on each
    # side (here exp(log_softmax)), the rest 3 roundings each side
    logits = Variable(rng.standard_normal((5, 3)))
    ag.softmax_cross_entropy(logits, t).backward()
    probs = softmax(logits.data)
    assert_within(logits.grad, (probs - np.eye(3)[t]) / 5,
                  (2 * probs_rel * probs + 2 * gamma(3) * np.abs(probs - np.eye(3)[t])) / 5)


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
    # ones times W or x: sums of 4 and of 2 terms, rounded in the order of each side's loop
    assert_within(x.grad, np.ones((2, 4)) @ W.data.T,
                  2 * gamma(4) * np.ones((2, 4)) @ np.abs(W.data.T))
    assert_within(W.grad, x.data.T @ np.ones((2, 4)),
                  2 * gamma(2) * np.abs(x.data.T) @ np.ones((2, 4)))


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
