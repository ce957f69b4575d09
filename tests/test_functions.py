"""functions.py: the book's activations and losses, stable at the extremes."""

from __future__ import annotations

import math
import warnings
from decimal import Decimal, localcontext

import numpy as np
import pytest
from tolerances import (
    EPS64,
    LIBM_REL,
    SIGMOID_D3,
    central_difference_error,
    gamma,
    numpy_rel,
    sigmoid_rel,
    sigmoid_ulp,
)

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


def correctly_rounded_sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) to 40 digits (Decimal's exp is correctly rounded), then the nearest
    float of x's dtype."""
    def nearest(value: Decimal) -> np.floating:
        guess = np.asarray(float(value)).astype(x.dtype)  # float32: rounded twice, 1 ulp off
        neighbours = [np.nextafter(guess, -np.inf), guess, np.nextafter(guess, np.inf)]
        return min(neighbours, key=lambda f: abs(Decimal(float(f)) - value))

    with localcontext() as context:
        context.prec = 40
        return np.array([nearest(1 / (1 + (-Decimal(float(v))).exp())) for v in x.ravel()],
                        dtype=x.dtype).reshape(x.shape)


@pytest.fixture(autouse=True)
def _no_warnings():
    """Any floating-point warning (overflow, divide by zero, invalid) fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", divide="raise", invalid="raise"):
            yield


def test_softmax_of_large_scores_is_the_seed_value_without_warnings():
    y = softmax(np.array([1000.0, 1001.0, 1002.0]))
    # the seed prints 8 decimals: half a unit of the last one, far above float64 rounding
    np.testing.assert_allclose(y, [0.09003057, 0.24472847, 0.66524096], atol=5e-9)
    # exp's errors cancel (each e is divided by the sum of the same e): 2 sums of 3 and a divide
    assert y.sum() == pytest.approx(1.0, abs=gamma(5))


def test_softmax_is_row_wise_and_keeps_float32():
    x = np.array([[1.0, 2.0, 3.0], [-1000.0, 0.0, 1000.0]], dtype=np.float32)
    y = softmax(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.sum(axis=1), [1.0, 1.0], rtol=gamma(5, np.float32))
    # exp in e and in the sum, 2 additions and a divide, in float32 and (negligibly) float64
    one_row = 2 * numpy_rel("exp", np.float32) + gamma(3, np.float32)
    np.testing.assert_allclose(y[0], softmax(np.array([1.0, 2.0, 3.0])),
                               rtol=one_row + 2 * numpy_rel("exp") + gamma(3))
    np.testing.assert_array_equal(y[1], [0.0, 0.0, 1.0])  # exp(-1000) underflows to 0


def test_log_softmax_shifts_each_row_by_its_own_max():
    """Scores near +1000 and -1000 in one batch, and a single sample (1-D): without each
    row's own shift, exp overflows or every term underflows (the fixture makes that fail)."""
    x = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, -1001.0, -1002.0]])
    lse = math.log(1 + math.exp(-1) + math.exp(-2))
    expected = np.array([[-2 - lse, -1 - lse, -lse], [-lse, -1 - lse, -2 - lse]])
    # x - max is exact (integers); then the exps of 0, -1, -2 and their sum (the sum's
    # relative error is log's absolute one), the log and the last subtraction, on each side
    bound = (numpy_rel("exp") + LIBM_REL + 2 * gamma(2) + (numpy_rel("log") + LIBM_REL) * lse
             + EPS64 * (2 + lse))
    np.testing.assert_allclose(log_softmax(x), expected, rtol=0, atol=bound)
    np.testing.assert_allclose(log_softmax(x[1]), expected[1], rtol=0, atol=bound)


def test_log_softmax_is_exact_where_softmax_underflows():
    x = np.array([[0.0, 0.0, -1000.0]])
    with localcontext() as context:
        context.prec = 40
        log2 = Decimal(2).ln()
        exact = [[float(-log2), float(-log2), float(-1000 - log2)]]  # correctly rounded
    # exp(0) = 1, exp(-1000) = 0 and their sum 2 are exact: only log(2) rounds (1 ulp), and
    # -1000 - log(2) rounds at 0.5 ulp of 1000, where log's 1e-16 can move it by 1 ulp at most
    np.testing.assert_array_max_ulp(log_softmax(x), np.array(exact), maxulp=1)
    z = np.random.default_rng(0).standard_normal((4, 10))
    # the same shifted z. log(S) (S: 10 exps, 9 additions; log S <= log 10) against exp, the
    # same S, a divide and a log: absolute 3 exp + 2 gamma_9 + u + log * log 10, and each side's
    # last rounding (log, subtraction) relative
    log_rel = numpy_rel("log")
    np.testing.assert_allclose(log_softmax(z), np.log(softmax(z)), rtol=log_rel + EPS64 / 2,
                               atol=3 * numpy_rel("exp") + 2 * gamma(9) + EPS64 / 2
                               + log_rel * math.log(10))


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
    # exp overflows to inf (1 / inf = 0) or underflows to 0 (1 / 1 = 1), and exp(0) = 1: exact
    assert y[0] == 0 and y[1] == 0 and y[-1] == 1 and y[-2] == 1 and y[4] == 0.5
    np.testing.assert_array_max_ulp(y[3:6], correctly_rounded_sigmoid(x[3:6]),
                                    maxulp=sigmoid_ulp(dtype))


def test_sigmoid_is_exact_to_rounding_in_the_middle_range():
    """Within a few ulp of the true value (how many depends on the exp kernel NumPy picks for
    this CPU, see tolerances.sigmoid_ulp) down to 1e-304, where exp(700) does not overflow."""
    x = np.linspace(-700, 700, 2001)
    np.testing.assert_array_max_ulp(sigmoid(x), correctly_rounded_sigmoid(x), maxulp=sigmoid_ulp())


def test_sigmoid_can_write_in_place():
    x = np.array([-3.0, 0.0, 3.0])
    expected = sigmoid(x)
    out = sigmoid(x, out=x)
    assert out is x
    np.testing.assert_array_equal(x, expected)


def test_sigmoid_grad_is_the_derivative():
    # sigmoid (<= 1) is off by sigmoid_rel; v +- h rounds by u 4, which moves it by <= u 4 / 4;
    # y (1 - y) is off by sigmoid_rel (its y's) and 2 roundings, the quotient by 1
    value_error = sigmoid_rel(numpy_rel("exp")) + EPS64 / 2
    bound = (central_difference_error(1e-4, SIGMOID_D3, value_error)
             + sigmoid_rel(numpy_rel("exp")) + gamma(3))

    for v in (-4.0, -0.5, 0.0, 0.7, 3.0):
        assert sigmoid_grad(np.array(v)) == pytest.approx(
            numerical_diff(lambda s: float(sigmoid(np.array(s))), v), rel=0, abs=bound)


def test_cross_entropy_stays_finite_where_the_naive_form_is_infinite():
    t = np.array([0, 0, 1])
    y = np.array([0.3, 0.7, 0.0])
    with np.errstate(divide="ignore"):
        assert -np.sum(t * np.log(y)) == np.inf  # the naive form
    # 0 + 1e-7 is exact: NumPy's log against libm's
    assert cross_entropy_error(y, t) == pytest.approx(-math.log(1e-7),  # ~16.12
                                                      rel=numpy_rel("log") + LIBM_REL, abs=0)
    # printed to 7 decimals: half a unit of the last one, far above float64 rounding
    assert cross_entropy_error(y, t, eps=1e-9) == pytest.approx(20.7232658, abs=5e-8)


def test_cross_entropy_book_example_and_labels_equal_one_hot():
    t = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    y = np.array([0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0])
    # the book prints (repr) the float -log(0.6 + 1e-7) of a 1-ulp log: two logs' errors
    assert cross_entropy_error(y, t) == pytest.approx(0.510825457099338,
                                                      rel=numpy_rel("log") + LIBM_REL, abs=0)
    assert cross_entropy_error(y, np.uint8(2)) == cross_entropy_error(y, t)
    batch = np.stack([y, y[::-1]])
    labels = np.array([2, 8], dtype=np.uint8)
    one_hot = np.eye(10)[labels]
    assert cross_entropy_error(batch, labels) == cross_entropy_error(batch, one_hot)
    # the same float sums; a log and the addition of two negative logs on each side
    assert cross_entropy_error(batch, labels) == pytest.approx(
        -(math.log(0.6 + 1e-7) + math.log(0.05 + 1e-7)) / 2,
        rel=numpy_rel("log") + LIBM_REL + EPS64, abs=0)


def test_cross_entropy_says_how_targets_and_samples_disagree():
    y = np.full((2, 4), 0.25)
    with pytest.raises(ValueError, match=r"^1 targets for 2 samples$"):
        cross_entropy_error(y, 3)
    with pytest.raises(ValueError, match=r"^3 targets for 2 samples$"):
        cross_entropy_error(y, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"^2 targets for 1 samples$"):
        cross_entropy_error(y[0], np.array([1, 2]))
    with pytest.raises(ValueError, match=r"^one-hot targets of shape \(2, 3\) do not match "
                                         r"\(2, 4\)$"):
        cross_entropy_error(y, np.eye(3)[:2])


@pytest.mark.parametrize("labels", [[0, -1], [0, 3]])
def test_cross_entropy_rejects_class_indices_out_of_range(labels):
    """-1 would silently pick the last class."""
    with pytest.raises(ValueError, match=r"class indices must be in 0\.\.2"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array(labels))


def test_cross_entropy_of_one_sample_takes_a_scalar_label():
    y = np.array([[0.2, 0.8]])
    assert cross_entropy_error(y, 1) == cross_entropy_error(y[0], 1) == cross_entropy_error(
        y, np.array([1]))
    # one label in any shape: a single sample's targets are flattened
    assert cross_entropy_error(y[0], np.array([[1]])) == cross_entropy_error(y[0], 1)


def test_softmax_cross_entropy_from_logits_needs_no_eps():
    x = np.array([[0.0, 0.0, -1000.0], [2.0, 1.0, 0.1]])
    t = np.array([2, 0], dtype=np.uint8)
    expected = ((1000 + math.log(2)) - math.log(softmax(x[1])[0])) / 2
    # each side rounds 1000 + log 2 and the sum of ~1000 and ~0.3 (u relative each, 2 eps in
    # all); the logs' and exps' errors, a few eps of values < 1, add < 0.02 eps of 1000
    assert softmax_cross_entropy(x, t) == pytest.approx(expected, rel=2.02 * EPS64, abs=0)
    assert softmax_cross_entropy(x, np.eye(3)[t]) == softmax_cross_entropy(x, t)


def test_sum_squared_error_book_example():
    t = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    y = np.array([0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0])
    # no transcendental function: the decimals' rounding to floats (u, or 1.5 u of 0.6 - 1 =
    # -0.4; squared 3 u), the squares (u), the sum of 10 terms >= 0 (gamma_9) and 0.0975's own
    assert sum_squared_error(y, t) == pytest.approx(0.0975, rel=gamma(14), abs=0)


def test_sum_squared_error_works_in_float32_for_float32_outputs():
    """Integer targets are taken in y's dtype, so the arithmetic stays in float32."""
    y = np.array([0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0], dtype=np.float32)
    t = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    # the same operations on the same float32 arrays: bit-identical
    in_float32 = float(0.5 * np.sum((y - np.array(t, dtype=np.float32)) ** 2))
    in_float64 = float(0.5 * np.sum((y.astype(np.float64) - np.array(t)) ** 2))
    assert float(np.float32(in_float64)) != in_float64  # no float32 computation gives this
    assert sum_squared_error(y, t) == in_float32
    assert sum_squared_error(y, np.array(t, dtype=np.float64)) == in_float32


def test_sum_squared_error_refuses_class_indices():
    """[0, 1, 2] against a 3x3 output would broadcast into a meaningless number."""
    with pytest.raises(ValueError, match=r"targets of shape \(3,\) do not match outputs of "
                                         r"shape \(3, 3\)"):
        sum_squared_error(np.eye(3), [0, 1, 2])


def test_numerical_diff_seed_and_book_values():
    """Quadratics have no third derivative: only rounding is left. Each value's terms sum to at
    most S (16, 0.75, 2) through <= 4 roundings, and x +- h rounds by u |x|, which moves f by
    |x f'| u <= 2 u S (x f' is each term times its degree): gamma_6 S. The quotient rounds
    once, and the floats 0.01 and 0.1 move the slope by u relative."""
    def bound(terms: float, slope: float) -> float:
        return central_difference_error(1e-4, 0.0, gamma(6) * terms) + EPS64 * slope

    assert numerical_diff(lambda x: x**2 + 2 * x + 1, 3.0) == pytest.approx(8.0,
                                                                          abs=bound(16, 8))

    def function_1(x: float) -> float:
        return 0.01 * x**2 + 0.1 * x

    assert numerical_diff(function_1, 5.0) == pytest.approx(0.2, abs=bound(0.75, 0.2))
    assert numerical_diff(function_1, 10.0) == pytest.approx(0.3, abs=bound(2, 0.3))
