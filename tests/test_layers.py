"""layers.py: each layer's backward is the derivative of its forward; buffers keep the dtype."""

from __future__ import annotations

import numpy as np
import pytest

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

    np.testing.assert_allclose(layer.forward(x), x @ W + b, rtol=1e-15)
    dx = layer.backward(weights).copy()
    np.testing.assert_allclose(layer.dW, numerical_gradient(loss, W), atol=1e-9)
    np.testing.assert_allclose(layer.db, numerical_gradient(loss, b), atol=1e-9)
    np.testing.assert_allclose(dx, numerical_gradient(loss, x), atol=1e-9)


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
    np.testing.assert_allclose(dx, numerical_gradient(loss, x), rtol=1e-7)


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
    assert loss == pytest.approx(softmax_cross_entropy(x, t), rel=1e-14)
    np.testing.assert_allclose(layer.y, softmax(x), rtol=1e-14)
    dx = layer.backward().copy()
    np.testing.assert_allclose(dx, (softmax(x) - np.eye(4)[t]) / 5, rtol=1e-13, atol=1e-17)
    np.testing.assert_allclose(dx, numerical_gradient(lambda _: layer.forward(x, t), x),
                               rtol=1e-7, atol=1e-10)


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
