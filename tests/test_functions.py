"""functions.py: the book's activations and losses, stable at the extremes."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from mnist_twolayer.functions import (
    cross_entropy_error,
    log_softmax,
    numerical_diff,
    relu,
    relu_grad,
    sigmoid,
    sigmoid_grad,
    softmax,
    softmax_cross_entropy,
    sum_squared_error,
)


@pytest.fixture(autouse=True)
def _no_warnings():
    """Any floating-point warning (overflow, divide by zero, invalid) fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", divide="raise", invalid="raise"):
            yield


def test_softmax_of_large_scores_is_the_seed_value_without_warnings():
    y = softmax(np.array([1000.0, 1001.0, 1002.0]))
    np.testing.assert_allclose(y, [0.09003057, 0.24472847, 0.66524096], atol=5e-9)
    assert y.sum() == pytest.approx(1.0, abs=1e-15)


def test_softmax_is_row_wise_and_keeps_float32():
    x = np.array([[1.0, 2.0, 3.0], [-1000.0, 0.0, 1000.0]], dtype=np.float32)
    y = softmax(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.sum(axis=1), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(y[0], softmax(np.array([1.0, 2.0, 3.0])), rtol=1e-6)
    np.testing.assert_array_equal(y[1], [0.0, 0.0, 1.0])


def test_log_softmax_is_exact_where_softmax_underflows():
    x = np.array([[0.0, 0.0, -1000.0]])
    np.testing.assert_allclose(log_softmax(x), [[-math.log(2), -math.log(2), -1000 - math.log(2)]],
                               rtol=1e-15)
    z = np.random.default_rng(0).standard_normal((4, 10))
    np.testing.assert_allclose(log_softmax(z), np.log(softmax(z)), rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_relu_and_its_derivative_keep_the_dtype_and_give_0_at_0(dtype):
    x = np.array([-1e30, -2.5, -0.0, 0.0, 1e-30, 3.0, 1e30], dtype=dtype)
    y = relu(x)
    assert y.dtype == dtype and relu_grad(x).dtype == dtype
    np.testing.assert_array_equal(y, np.array([0, 0, 0, 0, 1e-30, 3, 1e30], dtype=dtype))
    # 0 at x = 0, as the Relu layer's mask (x <= 0) and torch.relu's backward
    np.testing.assert_array_equal(relu_grad(x), [0, 0, 0, 0, 1, 1, 1])
    out = x.copy()
    assert relu(out, out=out) is out
    np.testing.assert_array_equal(out, y)
    assert relu([-1, 2]).dtype == np.float64  # integers become float64, as in sigmoid


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_has_no_overflow_at_the_extremes(dtype):
    x = np.array([-1e5, -1000.0, -100.0, -20.0, 0.0, 20.0, 100.0, 1000.0, 1e5], dtype=dtype)
    y = sigmoid(x)
    assert y.dtype == dtype
    assert np.all((y >= 0) & (y <= 1))
    assert y[0] == 0 and y[1] == 0 and y[-1] == 1 and y[-2] == 1 and y[4] == 0.5
    expected = [1 / (1 + math.exp(20.0)), 0.5, 1 / (1 + math.exp(-20.0))]
    np.testing.assert_allclose(y[3:6], expected, rtol=1e-15 if dtype == np.float64 else 1e-6)


def test_sigmoid_is_exact_to_rounding_in_the_middle_range():
    x = np.linspace(-700, 700, 2001)
    reference = np.array([1 / (1 + math.exp(-v)) for v in x])
    # math.exp is within 1 ulp, NumPy's SIMD exp within ~2 (AVX2 and AVX-512 kernels differ),
    # and each side rounds 1 + e and 1 / (1 + e) once more: 4 ulp of 2**-52 covers it
    np.testing.assert_allclose(sigmoid(x), reference, rtol=4 * 2.0**-52, atol=0)


def test_sigmoid_can_write_in_place():
    x = np.array([-3.0, 0.0, 3.0])
    expected = sigmoid(x)
    out = sigmoid(x, out=x)
    assert out is x
    np.testing.assert_array_equal(x, expected)


def test_sigmoid_grad_is_the_derivative():
    for v in (-4.0, -0.5, 0.0, 0.7, 3.0):
        assert sigmoid_grad(np.array(v)) == pytest.approx(
            numerical_diff(lambda s: float(sigmoid(np.array(s))), v), rel=1e-8)


def test_cross_entropy_stays_finite_where_the_naive_form_is_infinite():
    t = np.array([0, 0, 1])
    y = np.array([0.3, 0.7, 0.0])
    with np.errstate(divide="ignore"):
        assert -np.sum(t * np.log(y)) == np.inf  # the naive form
    assert cross_entropy_error(y, t) == pytest.approx(-math.log(1e-7), rel=1e-12)  # ~16.12
    assert cross_entropy_error(y, t, eps=1e-9) == pytest.approx(20.7232658, rel=1e-8)


def test_cross_entropy_book_example_and_labels_equal_one_hot():
    t = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    y = np.array([0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0])
    assert cross_entropy_error(y, t) == pytest.approx(0.510825457099338, rel=1e-14)
    assert cross_entropy_error(y, np.uint8(2)) == cross_entropy_error(y, t)
    batch = np.stack([y, y[::-1]])
    labels = np.array([2, 8], dtype=np.uint8)
    one_hot = np.eye(10)[labels]
    assert cross_entropy_error(batch, labels) == cross_entropy_error(batch, one_hot)
    assert cross_entropy_error(batch, labels) == pytest.approx(
        -(math.log(0.6 + 1e-7) + math.log(0.05 + 1e-7)) / 2, rel=1e-14)


def test_cross_entropy_rejects_mismatched_targets():
    with pytest.raises(ValueError):
        cross_entropy_error(np.full((3, 4), 0.25), np.array([0, 1]))


@pytest.mark.parametrize("labels", [[0, -1], [0, 3]])
def test_cross_entropy_rejects_class_indices_out_of_range(labels):
    """-1 would silently pick the last class."""
    with pytest.raises(ValueError, match=r"class indices must be in 0\.\.2"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array(labels))


def test_cross_entropy_of_one_sample_takes_a_scalar_label():
    y = np.array([[0.2, 0.8]])
    assert cross_entropy_error(y, 1) == cross_entropy_error(y[0], 1) == cross_entropy_error(
        y, np.array([1]))


def test_softmax_cross_entropy_from_logits_needs_no_eps():
    x = np.array([[0.0, 0.0, -1000.0], [2.0, 1.0, 0.1]])
    t = np.array([2, 0], dtype=np.uint8)
    expected = ((1000 + math.log(2)) - math.log(softmax(x[1])[0])) / 2
    assert softmax_cross_entropy(x, t) == pytest.approx(expected, rel=1e-14)
    assert softmax_cross_entropy(x, np.eye(3)[t]) == softmax_cross_entropy(x, t)


def test_sum_squared_error_book_example():
    t = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    y = np.array([0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0])
    assert sum_squared_error(y, t) == pytest.approx(0.0975, rel=1e-14)


def test_sum_squared_error_refuses_class_indices():
    """[0, 1, 2] against a 3x3 output would broadcast into a meaningless number."""
    with pytest.raises(ValueError, match=r"targets of shape \(3,\) do not match outputs of "
                                         r"shape \(3, 3\)"):
        sum_squared_error(np.eye(3), [0, 1, 2])


def test_numerical_diff_seed_and_book_values():
    assert numerical_diff(lambda x: x**2 + 2 * x + 1, 3.0) == pytest.approx(8.0, abs=1e-9)

    def function_1(x: float) -> float:
        return 0.01 * x**2 + 0.1 * x

    assert numerical_diff(function_1, 5.0) == pytest.approx(0.2, abs=1e-9)
    assert numerical_diff(function_1, 10.0) == pytest.approx(0.3, abs=1e-9)
