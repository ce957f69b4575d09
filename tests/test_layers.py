"""layers.py: each layer's backward is the derivative of its forward; buffers keep the dtype."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tolerances import (
    EPS64,
    LIBM_REL,
    SIGMOID_D2,
    SIGMOID_D3,
    assert_within,
    central_difference_error,
    gamma,
    numpy_rel,
    sigmoid_rel,
)

from mnist_twolayer.functions import softmax, softmax_cross_entropy
from mnist_twolayer.gradient import numerical_gradient
from mnist_twolayer.layers import Affine, Relu, Sigmoid, SoftmaxWithLoss

rng = np.random.default_rng(0)


def test_affine_backward_matches_numerical_gradients():
    x = rng.standard_normal((4, 3))
    W = rng.standard_normal((3, 2))
    b = rng.standard_normal(2)
    weights = rng.standard_normal((4, 2))  # loss = sum(weights * out): dout = weights
    layer = Affine(W, b)

    def loss(_: np.ndarray) -> float:
        return float(np.sum(weights * layer.forward(x)))

    # out[i, j]: 3 products, then 3 additions (b the last): gamma_4 of |terms| on each side
    out_terms = np.abs(x) @ np.abs(W) + np.abs(b)
    assert_within(layer.forward(x), x @ W + b, 2 * gamma(4) * out_terms)
    dx = layer.backward(weights).copy()
    # the loss is linear: no truncation, only its rounding over h. Its 32 terms w x W (and w b)
    # go through <= 12 roundings (out's 4, * w, a sum of 8), x +- h one more. Backprop's sums
    # (over 4 rows for dW and db, 2 columns for dx) round <= 4 times, the quotient once.
    numerical_error = central_difference_error(
        1e-4, 0.0, gamma(13) * np.sum(np.abs(weights) * out_terms))
    for analytic, exact_terms, wrt in ((layer.dW, np.abs(x).T @ np.abs(weights), W),
                                       (layer.db, np.abs(weights).sum(axis=0), b),
                                       (dx, np.abs(weights) @ np.abs(W).T, x)):
        assert_within(analytic, numerical_gradient(loss, wrt),
                      numerical_error + gamma(5) * exact_terms)


def test_affine_without_input_grad_skips_dx():
    layer = Affine(np.ones((3, 2)), np.zeros(2), input_grad=False)
    layer.forward(np.ones((5, 3)))
    assert layer.backward(np.ones((5, 2))) is None
    np.testing.assert_array_equal(layer.dW, np.full((3, 2), 5.0))
    np.testing.assert_array_equal(layer.db, [5.0, 5.0])


def test_sigmoid_backward_matches_numerical_gradient():
    x = rng.standard_normal((3, 4)) * 3
    weights = rng.standard_normal((3, 4))
    layer = Sigmoid()

    def loss(_: np.ndarray) -> float:
        return float(np.sum(weights * layer.forward(x)))

    layer.forward(x)
    dx = layer.backward(weights).copy()
    # d/dx of sum(w * sigmoid(x)) is w sigmoid'(x): truncation h^2 |w| SIGMOID_D3 / 6; the loss
    # (12 terms w sigmoid, each off by sigmoid_rel, a product and a sum of 12) is off by
    # (sigmoid_rel + gamma_12) sum |w| sigmoid, and x +- h rounds by u |x|, moving the loss by
    # |w| sigmoid' u |x|. Backprop's y (1 - y) w: |w| y (sigmoid_rel + 3 u), the quotient u.
    sig_rel = sigmoid_rel(numpy_rel("exp"))
    y = layer.out
    loss_error = (sig_rel + gamma(12)) * np.sum(np.abs(weights) * y)
    bound = (central_difference_error(1e-4, SIGMOID_D3 * np.abs(weights),
                                      loss_error + np.abs(weights * x) * EPS64 / 8)
             + np.abs(weights) * (sig_rel + gamma(4)) * y)
    assert_within(dx, numerical_gradient(loss, x), bound)


def test_relu_has_the_books_mask_and_leaves_dout_alone():
    x = np.array([[-2.0, 0.0, 3.0], [1e-300, -0.0, -1e-300]])
    layer = Relu()
    np.testing.assert_array_equal(layer.forward(x), [[0.0, 0.0, 3.0], [1e-300, 0.0, 0.0]])
    np.testing.assert_array_equal(layer.mask, [[True, True, False], [False, True, True]])
    dout = np.arange(1.0, 7.0).reshape(2, 3)
    dx = layer.backward(dout)
    np.testing.assert_array_equal(dx, [[0.0, 0.0, 3.0], [4.0, 0.0, 0.0]])  # 0 at x = 0
    np.testing.assert_array_equal(dout, np.arange(1.0, 7.0).reshape(2, 3))  # the book zeroes it


def test_relu_backward_matches_numerical_gradient_away_from_0():
    x = rng.standard_normal((3, 4)) * 3
    x[np.abs(x) < 0.01] = 0.5  # no entry within 2h of the kink
    weights = rng.standard_normal((3, 4))
    layer = Relu()

    def loss(_: np.ndarray) -> float:
        return float(np.sum(weights * layer.forward(x)))

    layer.forward(x)
    dx = layer.backward(weights).copy()
    # relu is linear on each side, so the central difference is exact but for the rounding of
    # the two sums (~1e-16 * |loss| / 2h ~ 1e-11)
    np.testing.assert_allclose(dx, numerical_gradient(loss, x), rtol=0, atol=1e-10)


def test_softmax_with_loss_forward_and_backward():
    x = rng.standard_normal((5, 4)) * 4
    t = np.array([0, 3, 1, 1, 2], dtype=np.uint8)
    layer = SoftmaxWithLoss()
    loss = layer.forward(x, t)
    # per sample log S - s_t >= 0 with S = sum exp(s): each side's S is off by exp + gamma_3
    # (absolute in log S), its log by log * log S, and a sum of the 5 samples' two terms by
    # gamma_5 relative; the layer forms s - log S first (u)
    s = x - x.max(axis=1, keepdims=True)
    log_s = np.log(np.exp(s).sum(axis=1))
    exp_rel, log_rel = numpy_rel("exp"), numpy_rel("log")
    one_side = (np.sum(exp_rel + gamma(3) + log_rel * log_s)
                + gamma(6) * np.sum(log_s + np.abs(s[np.arange(5), t]))) / 5
    assert loss == pytest.approx(softmax_cross_entropy(x, t), rel=0, abs=2 * one_side)
    # exp(s) over S on both sides: exp twice (e and S), 3 additions and a divide, each side
    probs_rel = 2 * exp_rel + gamma(4)
    np.testing.assert_allclose(layer.y, softmax(x), rtol=2 * probs_rel)
    dx = layer.backward().copy()
    # and p - t, times 1 / 5: p's error is absolute at the label, the rest relative
    probs = softmax(x)
    assert_within(dx, (probs - np.eye(4)[t]) / 5,
                  (2 * probs_rel * probs + 2 * gamma(3) * np.abs(probs - np.eye(4)[t])) / 5)
    # the mean cross-entropy's third derivative along one logit is p (1 - p)(1 - 2p) / 5 <=
    # SIGMOID_D2 / 5. Against exact arithmetic each loss is also off by the shift x - max
    # (u |s| in log S and in s_t), and x +- h rounds by u |x| (|d loss / dx| <= 1/5); backprop
    # by its p's error (the shift's too) and 3 roundings of p - t, the quotient by 1
    shift = EPS64 * np.abs(s).max(axis=1, keepdims=True)
    value_error = one_side + np.sum(shift) / 5 + EPS64 / 2 * np.abs(x) / 5
    assert_within(dx, numerical_gradient(lambda _: layer.forward(x, t), x),
                  central_difference_error(1e-4, SIGMOID_D2 / 5, value_error)
                  + (probs_rel + shift) * probs / 5 + gamma(4) * np.abs(dx))


def test_softmax_with_loss_shifts_each_row_by_its_own_max():
    """Scores near +1000 and -1000 in one batch: shifted by the batch's max instead of each
    row's, the second row's exps all underflow and its loss is infinite."""
    x = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, -1001.0, -1002.0]])
    layer = SoftmaxWithLoss()
    lse = math.log(1 + math.exp(-1) + math.exp(-2))
    # both rows: shifted (exact) to 0, -1, -2 with the label at 0; the exps, their sum, the
    # log, on each side, and the two-sample mean (gamma_2)
    bound = (numpy_rel("exp") + LIBM_REL + 2 * gamma(2)
             + (numpy_rel("log") + LIBM_REL + gamma(2)) * lse)
    assert layer.forward(x, np.array([2, 0])) == pytest.approx(lse, rel=0, abs=bound)
    e = np.exp([-2.0, -1.0, 0.0])
    p = e / e.sum()
    probs = np.array([p, p[::-1]])
    onehot = np.array([[0, 0, 1], [1, 0, 0]])
    # as in the test above: p's error on each side (exps, the sum, the divide), then p - t
    probs_rel = 2 * numpy_rel("exp") + gamma(4)
    assert_within(layer.backward(), (probs - onehot) / 2,
                  (2 * probs_rel * probs + 2 * gamma(3) * np.abs(probs - onehot)) / 2)


def test_softmax_with_loss_of_float32_scores_is_float32_arithmetic():
    """float32 in, float32 throughout: the mean loss of 4 samples (the division by 4 is exact
    in any dtype) is a float32 number. 2^-30 - 1 is not one (it needs 31 bits), so a shift or
    a sum done in float64 would show in the loss."""
    x = np.tile(np.array([2.0**-30, 1.0, 0.5], dtype=np.float32), (4, 1))
    loss = SoftmaxWithLoss().forward(x, np.zeros(4, dtype=np.uint8))
    assert float(np.float32(loss)) == loss
    # against float64: shifted by -1 (the float32 rounding of 2^-30 - 1), log(1 + e^-1 +
    # e^-0.5): exp and log in float32, 3 additions and the subtraction, and the reference's
    assert loss == pytest.approx(1 + math.log(math.exp(-1) + 1 + math.exp(-0.5)), rel=(
        numpy_rel("exp", np.float32) + numpy_rel("log", np.float32) + gamma(4, np.float32)
        + 2 * LIBM_REL))


def test_softmax_with_loss_rejects_targets_of_the_wrong_shape():
    with pytest.raises(ValueError, match="class indices"):
        SoftmaxWithLoss().forward(np.zeros((3, 4)), np.eye(4)[[0, 1, 2]])


def test_float32_stays_float32_through_every_layer():
    f32 = np.float32
    x = rng.random((6, 5)).astype(f32)
    affine1 = Affine(rng.standard_normal((5, 4)).astype(f32), np.zeros(4, f32), input_grad=False)
    sigmoid = Sigmoid()
    relu = Relu()
    affine2 = Affine(rng.standard_normal((4, 3)).astype(f32), np.zeros(3, f32))
    last = SoftmaxWithLoss()
    out = affine2.forward(relu.forward(sigmoid.forward(affine1.forward(x)) - f32(0.5)))
    assert isinstance(last.forward(out, np.array([0, 1, 2, 0, 1, 2])), float)
    affine1.backward(sigmoid.backward(relu.backward(affine2.backward(last.backward()))))
    arrays = [affine1.out, sigmoid.out, relu.out, affine2.out, last.y, last.dx, affine2.dx,
              relu.dx, sigmoid.dx, affine1.dW, affine1.db, affine2.dW, affine2.db]
    assert all(a.dtype == f32 for a in arrays)


def test_buffers_are_reused_for_the_same_batch_size_and_replaced_for_another():
    layer = Affine(np.ones((3, 2)), np.zeros(2))
    first = layer.forward(np.ones((4, 3)))
    assert layer.forward(2 * np.ones((4, 3))) is first  # overwritten, as documented
    np.testing.assert_array_equal(first, np.full((4, 2), 6.0))
    assert layer.forward(np.ones((7, 3))) is not first


def test_every_layer_writes_into_the_same_arrays_on_the_next_step():
    """A training step allocates almost nothing: with the same shapes, every array a layer
    returns or keeps (outputs, masks, gradients) is the one of the step before, overwritten."""
    x = rng.standard_normal((4, 3))
    t = np.array([0, 1, 2, 0])
    affine1 = Affine(rng.standard_normal((3, 5)), np.zeros(5))
    sigmoid, relu = Sigmoid(), Relu()
    affine2 = Affine(rng.standard_normal((5, 3)), np.zeros(3))
    last = SoftmaxWithLoss()

    def step() -> list[np.ndarray]:
        hidden = relu.forward(sigmoid.forward(affine1.forward(x)))
        last.forward(affine2.forward(hidden), t)
        dx = affine1.backward(sigmoid.backward(relu.backward(affine2.backward(last.backward()))))
        assert dx is affine1.dx
        return [affine1.out, sigmoid.out, relu.mask, relu.out, affine2.out, last._shifted,
                last.y, last.dx, affine2.dx, affine2.dW, affine2.db, relu.dx, sigmoid.dx,
                affine1.dx, affine1.dW, affine1.db]

    first = step()
    second = step()
    assert [a is b for a, b in zip(first, second, strict=True)] == [True] * len(first)
