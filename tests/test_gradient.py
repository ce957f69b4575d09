"""gradient.py: the nditer loop visits and restores every element; gradient_descent walks the
book's function_2 to its minimum; the vectorized method gives the same differences as a loop
(central and five-point, sigmoid and ReLU) and finds exactly the ReLU kink entries."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from conftest import mnist_batch
from tolerances import (
    EPS32,
    EPS64,
    SIGMOID_D2,
    assert_within,
    central_difference_error,
    gamma,
    two_layer_bounds,
)

from mnist_twolayer import gradient
from mnist_twolayer.gradient import (
    gradient_descent,
    numerical_gradient,
    two_layer_numerical_gradient,
)
from mnist_twolayer.network import PARAM_NAMES, TwoLayerNet


def sum_of_squares(x: np.ndarray) -> float:
    """The book's function_2 (for any number of coordinates)."""
    return float(np.sum(x**2))


def numerical_gradient_returning_inside_the_loop(f: Callable[[np.ndarray], float],
                                                 x: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """The classic mistake: ``return grad`` indented into the while loop, so only the first
    element is ever visited."""
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
    with pytest.raises(AssertionError):
        assert_visits_and_restores_every_element(numerical_gradient_returning_inside_the_loop)


# gradient_descent on function_2 from (-3, 4): each step multiplies x by 1 - 2 lr exactly but for
# rounding (the central difference of x^2 has no truncation error). Step k's rounding, ~4 eps f_k
# / h in the gradient, is contracted by 1 - 2 lr at every later step. With lr 0.1 (factor 0.8,
# f_k = 25 * 0.64^k) the sum is below 5 * lr * 4 eps * 25 / h * 0.8^99 ~ 1.4e-20.
CONTRACTED = 0.8**100 * np.array([-3.0, 4.0])  # ~(-6.1e-10, 8.1e-10)


def test_gradient_descent_reaches_the_minimum_of_function_2():
    x = gradient_descent(sum_of_squares, np.array([-3.0, 4.0]), lr=0.1, step_num=100)
    assert np.abs(x).max() <= 1e-9
    np.testing.assert_allclose(x, CONTRACTED, rtol=0, atol=1e-19)  # 1.4e-20, see above
    # the book's defaults, lr 0.01 and 100 steps: 0.98^100 of the way still to go; rounding
    # sums to < lr * 4 eps * 25 / h * 0.98^99 * 50 ~ 1.5e-11
    x = gradient_descent(sum_of_squares, np.array([-3.0, 4.0]))
    np.testing.assert_allclose(x, 0.98**100 * np.array([-3.0, 4.0]), rtol=0, atol=2e-11)


def test_gradient_descent_returns_the_path_on_request_and_leaves_init_x_alone():
    init_x = np.array([-3.0, 4.0])
    x, path = gradient_descent(sum_of_squares, init_x, lr=0.1, step_num=20, return_path=True)
    np.testing.assert_array_equal(init_x, [-3.0, 4.0])  # the book's version moves it in place
    assert path.shape == (21, 2)
    np.testing.assert_array_equal(path[0], init_x)
    np.testing.assert_array_equal(path[-1], x)
    # every point is 0.8 times the one before (to rounding: ~1e-12 relative per step)
    np.testing.assert_allclose(path[1:], 0.8 * path[:-1], rtol=1e-10)
    np.testing.assert_array_equal(
        x, gradient_descent(sum_of_squares, init_x, lr=0.1, step_num=20))
    ints = gradient_descent(sum_of_squares, [-3, 4], lr=0.1, step_num=20)
    assert ints.dtype == np.float64
    np.testing.assert_array_equal(ints, x)
    floats = gradient_descent(sum_of_squares, np.array([-3, 4], np.float32), lr=0.1, step_num=20)
    assert floats.dtype == np.float32  # a float dtype is kept, only integers become float64


def test_a_gradient_returning_inside_its_loop_moves_only_the_first_coordinate(monkeypatch):
    monkeypatch.setattr(gradient, "numerical_gradient",
                        numerical_gradient_returning_inside_the_loop)
    x = gradient_descent(sum_of_squares, np.array([-3.0, 4.0]), lr=0.1, step_num=100)
    assert x[1] == 4.0  # never visited, never moved
    # f stays >= 16 now, so rounding sums to < 5 * lr * 4 eps * 25 / h ~ 1.1e-10
    np.testing.assert_allclose(x[0], CONTRACTED[0], rtol=0, atol=2e-10)
    assert f"{x[0]:.1e}" == "-6.1e-10"


def test_float32_arrays_are_perturbed_in_their_own_dtype():
    x = np.array([1.0, -2.0], dtype=np.float32)
    grad = numerical_gradient(sum_of_squares, x, h=1e-2)
    assert grad.dtype == np.float32
    # float32: 2 squares and their sum (<= 5.05, gamma_2), x +- h rounding by u |x| in float32
    # (moving the sum by 2 x^2 u <= 4 eps); the quotient in float64, stored in float32 (u)
    value_error = gamma(2, np.float32) * 5.05 + 4 * EPS32
    np.testing.assert_allclose(grad, [2.0, -4.0], rtol=gamma(1, np.float32),
                               atol=central_difference_error(1e-2, 0.0, value_error))


def small_problem(mnist, hidden: int, batch: int, seed: int = 0, activation: str = "sigmoid"):
    """A float64 batch of real MNIST images and a fresh book-initialized net."""
    rng = np.random.default_rng(seed)
    x, t = mnist_batch(mnist, batch, rng)
    return TwoLayerNet(784, hidden, 10, seed=rng, activation=activation), x, t


# nditer vs vectorized where tolerances.two_layer_bounds does not reach (ReLU's kink entries,
# where a step switches a unit on or off, which these comparisons keep): the loop
# subtracts two losses near 2.3 (a few ulp each, ~1e-15) and divides by 2h = 2e-4, ~1e-11;
# 1e-10 leaves room for BLAS summation orders. The vectorized side's rounding is ~1e-16.
NDITER_ATOL = 1e-10


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_vectorized_equals_nditer_on_real_mnist(mnist, activation):
    """The issue's pin: hidden 10, batch 5, float64, max abs difference <= 1e-10. Both take
    the same steps, so the same truncation: what differs is rounding, nditer's two losses over
    2h and the vectorized method's, bounded by tolerances.two_layer_bounds (~6e-11 here) for
    the sigmoid net."""
    net, x, t = small_problem(mnist, hidden=10, batch=5, activation=activation)
    nditer = net.numerical_gradient(x, t, method="nditer")
    vectorized = net.numerical_gradient(x, t, method="vectorized")
    bounds = two_layer_bounds(net.params, x, t) if activation == "sigmoid" else None
    for name in PARAM_NAMES:
        if bounds is None:
            assert np.max(np.abs(nditer[name] - vectorized[name])) <= NDITER_ATOL, name
            continue
        bound = bounds.nditer[name] + bounds.vectorized[name]
        assert_within(nditer[name], vectorized[name], bound)
        assert np.max(bound) <= 1e-10, name


def dense_problem(activation: str, scale: float = 3.0):
    """Away from MNIST's zeros and the tiny initial weights: every pixel moves, logits are
    large, targets are one-hot rows, and one sample is all zeros."""
    rng = np.random.default_rng(1)
    net = TwoLayerNet(6, 5, 4, init="he", seed=rng, activation=activation)
    for name in net.params:
        net.params[name][...] = scale * rng.standard_normal(net.params[name].shape)
    x = rng.standard_normal((7, 6))
    x[2] = 0.0  # a sample no W1 entry can move
    t = np.eye(4)[rng.integers(0, 4, 7)]
    return net, x, t


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_vectorized_equals_nditer_for_larger_weights_dense_inputs_and_one_hot(activation):
    net, x, t = dense_problem(activation)
    nditer = net.numerical_gradient(x, t, method="nditer")
    vectorized = net.numerical_gradient(x, t, method="vectorized")
    # a loss near 6 rounds at ~3e-14 here: nditer's differences are good to ~3e-10
    bounds = two_layer_bounds(net.params, x, t.argmax(axis=1))
    for name in net.params:
        if activation == "sigmoid":
            assert_within(nditer[name], vectorized[name],
                          bounds.nditer[name] + bounds.vectorized[name])
        else:  # a loss near 6: a few ulp (~5e-15) over 2h = 2e-4 is ~3e-11
            assert np.max(np.abs(nditer[name] - vectorized[name])) <= NDITER_ATOL, name


def test_at_relu_kinks_vectorized_still_equals_nditer_and_both_miss_the_derivative():
    """With h = 1e-2 some steps cross a kink: both methods compute the same difference
    quotient there (the ReLU change is exact), and no stencil makes it the derivative."""
    net, x, t = dense_problem("relu", scale=1.0)
    labels = t.argmax(axis=1)
    h = 1e-2
    central = two_layer_numerical_gradient(net.params, x, labels, h, activation="relu")
    assert central.kink_counts == {"W1": 5, "b1": 1, "W2": 0, "b2": 0}
    nditer = net.numerical_gradient(x, t, method="nditer", h=h)
    for name in PARAM_NAMES:
        # the loop's rounding is ~1e-15 / 2h here, smaller than at h = 1e-4
        assert np.max(np.abs(nditer[name] - central.grads[name])) <= NDITER_ATOL, name
    five_point = two_layer_numerical_gradient(net.params, x, labels, h, activation="relu",
                                              order=4)
    backprop = net.gradient(x, t)
    for name in ("W1", "b1"):
        kinks = five_point.kinks[name]
        np.testing.assert_array_equal(kinks, central.kinks[name])  # +-2h crosses no other kink
        error = np.abs(five_point.grads[name] - backprop[name])
        # elsewhere the h^4 truncation: ~1e-9 at h = 1e-2 with these O(1) weights (the
        # convergence test below measures it)
        assert error[~kinks].max() <= 1e-8, name
        # at a kink the quotient mixes two slopes: off by 1000x more than that, every one
        assert error[kinks].min() >= 1e-5, name


def perturbed_pre_activations(net: TwoLayerNet, x: np.ndarray, name: str, idx: tuple,
                              delta: float) -> np.ndarray:
    """x @ W1 + b1 of the net with params[name][idx] moved by delta, as a loop would set it."""
    params = {k: v.copy() for k, v in net.params.items()}
    params[name][idx] = params[name][idx] + delta
    return x @ params["W1"] + params["b1"]


@pytest.mark.parametrize("order", [2, 4])
def test_kink_entries_are_exactly_those_whose_steps_flip_a_pre_activations_side(order):
    net, x, t = dense_problem("relu", scale=1.0)
    h = 0.1
    result = two_layer_numerical_gradient(net.params, x, t.argmax(axis=1), h,
                                          activation="relu", order=order)
    before = x @ net.params["W1"] + net.params["b1"] > 0
    multiples = (1,) if order == 2 else (1, 2)
    for name in ("W1", "b1"):
        expected = np.zeros(net.params[name].shape, dtype=bool)
        for idx in np.ndindex(*expected.shape):
            expected[idx] = any(
                ((perturbed_pre_activations(net, x, name, idx, sign * m * h) > 0) != before).any()
                for m in multiples for sign in (1, -1))
        np.testing.assert_array_equal(result.kinks[name], expected, err_msg=name)
    assert result.kink_counts == ({"W1": 9, "b1": 3, "W2": 0, "b2": 0} if order == 2 else
                                  {"W1": 12, "b1": 4, "W2": 0, "b2": 0})
    sigmoid = two_layer_numerical_gradient(net.params, x, t.argmax(axis=1), h, order=order)
    assert sigmoid.kink_counts == dict.fromkeys(PARAM_NAMES, 0)


def five_point_loop(net: TwoLayerNet, x: np.ndarray, t: np.ndarray, h: float
                    ) -> dict[str, np.ndarray]:
    """The five-point stencil the plain way: four full losses per entry, subtracted."""
    grads = {}
    for name in PARAM_NAMES:
        param = net.params[name]
        grad = np.zeros_like(param)
        for idx in np.ndindex(*param.shape):
            original = param[idx]
            losses = []
            for m in (-2, -1, 1, 2):
                param[idx] = original + m * h
                losses.append(net.loss(x, t))
            param[idx] = original
            grad[idx] = (losses[0] - 8 * losses[1] + 8 * losses[2] - losses[3]) / (12 * h)
        grads[name] = grad
    return grads


def test_kinks_follow_the_rounded_steps_and_landing_on_0_is_the_flat_side():
    """A float32 b1 of 1 moved by h = 1e-3 goes to float32(1.001) and float32(0.999): steps of
    +16778 u and -16777 u (u = 2^-24), not +-h. Hidden unit 0's pre-activation a = 16778 u
    is more than the step down, so neither step takes it to 0 or below: no kink (with the steps
    mirrored it would be one). Unit 1's a = -16778 u is moved up exactly to 0, which is ReLU's
    flat side (the Relu layer's mask is x <= 0): no kink either. The same holds for the W1
    entries (x = 1), whose float32 steps are +-16777 u and +16778 u, -16778 u."""
    u = 2.0**-24
    f32 = np.float32
    params = {"W1": np.array([[-(1 - 16778 * u), -(1 + 16778 * u)]], dtype=f32),
              "b1": np.ones(2, dtype=f32), "W2": np.eye(2, dtype=f32), "b2": np.zeros(2, f32)}
    x = np.ones((1, 1))
    a = x @ params["W1"].astype(np.float64) + params["b1"]
    np.testing.assert_array_equal(a, [[16778 * u, -16778 * u]])  # exact: Sterbenz
    steps = (np.float64(f32(f32(1) + f32(1e-3))) - 1, np.float64(f32(f32(1) - f32(1e-3))) - 1)
    assert steps == (16778 * u, -16777 * u)
    result = two_layer_numerical_gradient(params, x, np.array([0]), 1e-3, activation="relu")
    assert result.kink_counts == {"W1": 0, "b1": 0, "W2": 0, "b2": 0}


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_order_4_is_the_five_point_stencil(activation):
    net, x, t = dense_problem(activation, scale=1.0)
    h = 1e-2
    loop = five_point_loop(net, x, t, h)
    vectorized = net.numerical_gradient(x, t, h=h, order=4)
    central = net.numerical_gradient(x, t, h=h)
    for name in PARAM_NAMES:
        # the loop's rounding: 18 ulp-sized errors of losses near 1 over 12h, ~1e-13
        assert np.max(np.abs(loop[name] - vectorized[name])) <= NDITER_ATOL, name
    # and it is not the central difference, whose h^2 truncation is ~1e-5 here
    assert max(np.max(np.abs(loop[k] - central[k])) for k in PARAM_NAMES) > 1e-7


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
@pytest.mark.parametrize("order", [2, 4])
def test_truncation_error_falls_as_h_to_the_order(activation, order):
    """Halving h divides the error by 2^order, as Taylor's theorem says (ReLU kink entries,
    which follow no such law, are left out)."""
    net, x, t = dense_problem(activation, scale=1.0)
    labels = t.argmax(axis=1)
    backprop = net.gradient(x, t)
    coarse, fine = (two_layer_numerical_gradient(net.params, x, labels, h, activation=activation,
                                                 order=order) for h in (1e-2, 5e-3))

    def error(result) -> float:
        return float(np.sqrt(sum(
            np.sum((result.grads[k] - backprop[k])[~(coarse.kinks[k] | fine.kinks[k])] ** 2)
            for k in PARAM_NAMES)))

    # error = C h^order (1 + O(h^2)): the next Taylor term moves the ratio by well under 1% at
    # h = 1e-2 with these O(1) weights; rounding (~1e-16 relative) is far below both errors
    assert error(coarse) / error(fine) == pytest.approx(2.0**order, rel=1e-2, abs=0)


def test_logits_thousands_apart_between_samples_give_finite_differences():
    """Each sample's logits are shifted by their own max: sample 0's are (2000, 0), sample
    1's (0, 0). Shifted by the batch's max, sample 1's exps underflow to 0 (log 0, 0 / 0);
    not shifted down, sample 0's overflow."""
    params = {"W1": np.ones((1, 1)), "b1": np.zeros(1), "W2": np.array([[2.0, 0.0]]),
              "b2": np.zeros(2)}
    x = np.array([[1000.0], [0.0]])
    h = 1e-4
    result = two_layer_numerical_gradient(params, x, np.array([0, 0]), h, activation="relu")
    # sample 0's loss is log(1 + e^-2000) = 0 in float64, sample 1's log 2: the mean is log(2)
    # / 2 to the rounding of exp, the sum, log and the mean (a few eps)
    assert result.loss == pytest.approx(np.log(2) / 2, rel=4 * EPS64)
    # d loss / d b2 = mean(p - onehot) = ((0, 0) + (-1/2, 1/2)) / 2; b2 = 0 is moved exactly,
    # log-sum-exp's third derivative is at most SIGMOID_D2 / 2 (the mean of two samples), and
    # the loss changes are computed to a few eps of ~h
    assert_within(result.grads["b2"], [-0.25, 0.25],
                  central_difference_error(h, SIGMOID_D2 / 2, 4 * EPS64 * h))
    assert all(np.isfinite(g).all() for g in result.grads.values())


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_a_float32_parameter_is_taken_in_float64(activation):
    """The closed forms run in float64 whatever the parameters' dtypes: with W2 in float32,
    the gradients of the float64 parameters (whose steps are the same) are those of W2's
    float64 copy, bit for bit. W2's entries 1 and 2^-30 differ by 1 - 2^-30, which float32
    cannot hold: a difference taken in float32 would show."""
    rng = np.random.default_rng(3)
    params = {"W1": rng.standard_normal((6, 2)), "b1": rng.standard_normal(2),
              "W2": np.array([[1.0, 2.0**-30, -0.5], [2.0**-30, 1.0, 0.25]]),
              "b2": rng.standard_normal(3)}
    x, t = rng.random((4, 6)), np.array([0, 1, 2, 1])
    expected = two_layer_numerical_gradient(params, x, t, activation=activation)
    result = two_layer_numerical_gradient({**params, "W2": params["W2"].astype(np.float32)}, x,
                                          t, activation=activation)
    assert result.loss == expected.loss
    for name in ("W1", "b1", "b2"):
        np.testing.assert_array_equal(result.grads[name], expected.grads[name], err_msg=name)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_samples_with_a_single_lit_pixel_count_too(activation):
    """W1's differences are summed over each sample's lit pixels: one pixel is enough."""
    net = TwoLayerNet(5, 3, 2, weight_init_std=1.0, seed=4, activation=activation)
    x = 0.7 * np.eye(5)[[0, 2, 4]]
    t = np.array([0, 1, 1])
    vectorized = net.numerical_gradient(x, t)
    nditer = net.numerical_gradient(x, t, method="nditer")
    assert np.abs(vectorized["W1"]).max() > 1e-3
    assert np.max(np.abs(vectorized["W1"] - nditer["W1"])) <= NDITER_ATOL


def test_bad_order_or_activation_is_refused():
    net, x, t = dense_problem("sigmoid")
    with pytest.raises(ValueError, match="order must be one of 2, 4, not 3"):
        two_layer_numerical_gradient(net.params, x, t.argmax(axis=1), order=3)
    with pytest.raises(ValueError,
                       match="^unknown activation 'tanh'; choose one of sigmoid, relu$"):
        two_layer_numerical_gradient(net.params, x, t.argmax(axis=1), activation="tanh")


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_vectorized_returns_the_loss_and_the_parameter_dtype(activation):
    rng = np.random.default_rng(2)
    net = TwoLayerNet(8, 4, 3, dtype=np.float32, seed=rng, activation=activation)
    x = rng.random((5, 8)).astype(np.float32)
    t = rng.integers(0, 3, 5).astype(np.uint8)
    for order in (2, 4):
        result = two_layer_numerical_gradient(net.params, x, t, order=order,
                                              activation=activation)
        assert {k: g.dtype for k, g in result.grads.items()} == dict.fromkeys(PARAM_NAMES,
                                                                              np.float32)
        backprop = net.gradient(x.astype(np.float64), t)
        if activation == "sigmoid" and order == 2:
            # the vectorized method works in float64 on the float32 parameters; the net in
            # float32
            in32, in64 = two_layer_bounds(net.params, x, t, dtype=np.float32), \
                two_layer_bounds(net.params, x, t)
            assert result.loss == pytest.approx(net.loss(x, t), rel=0,
                                                abs=in32.loss + in64.loss)
            for name in net.params:
                # its steps rounded in float32 (in64.difference), the result stored in float32
                assert_within(result.grads[name], backprop[name],
                              in32.gradient[name] + in64.difference[name]
                              + in64.vectorized[name] + EPS32 / 2 * np.abs(backprop[name]))
            continue
        # the loss in float64 vs the net's float32 forward pass: float32 rounding, ~1e-7
        assert result.loss == pytest.approx(net.loss(x, t), rel=1e-6, abs=0)
        for name in net.params:
            # the float32 steps (p + h rounded to float32: ~1e-7 / 1e-4 = 1e-3 relative)
            np.testing.assert_allclose(result.grads[name], backprop[name], rtol=1e-3,
                                       atol=1e-6)


def test_the_series_path_and_the_closed_forms_give_the_same_differences(mnist, monkeypatch):
    """The sigmoid net's small steps take the Taylor series (R matrix products); forcing the
    closed forms must give the same differences, entry by entry, to the rounding of each, also
    for hidden units saturated near 1 and near 0, whose differences are ~1e-9 of the others'."""
    net, x, t = small_problem(mnist, hidden=10, batch=20)
    net.params["W2"] *= 300  # logit directions up to ~10: more terms, still the series
    for unit, bias in ((0, 20.0), (1, 22.0), (2, -20.0)):  # sigmoid(a1) ~ 1 - 2e-9, 0 + 2e-9
        net.params["W1"][:, unit] *= 0.01
        net.params["b1"][unit] = bias
    seen = []
    real = gradient._sigmoid_loss_series
    monkeypatch.setattr(gradient, "_sigmoid_loss_series",
                        lambda a1, p, u, terms: (seen.append((a1, p, u, terms)),
                                                 real(a1, p, u, terms))[1])
    series = two_layer_numerical_gradient(net.params, x, t)
    assert len(seen) == 1, "the series path ran"
    monkeypatch.setattr(gradient, "_series_terms", lambda step, reach: None)
    closed = two_layer_numerical_gradient(net.params, x, t)
    assert len(seen) == 1, "the closed forms ran"
    a1, p, u, terms = seen[0]
    reach = np.abs(u).max()
    assert a1[:, :2].min() > 19 and a1[:, 2].max() < -19 and 10 <= reach < 12 and terms == 8
    for name in ("W2", "b2"):  # the same closed forms on the same arrays
        np.testing.assert_array_equal(series.grads[name], closed.grads[name], err_msg=name)
    # W1[i, j] and b1[j]: both are (1/N) sum_n (d_n(s) - d_n(-s)) / 2h with s = h x[n, i] (x = 1
    # for b1) and d_n the loss change of sample n when a1[n, j] moves by s, from the same a1, p
    # and u. To first order d_n(s) = s z y sum_k p_k u_k (z = sigmoid(a1), y = sigmoid(-a1)): so
    # every term of both paths is at most its share of T = (1/N) sum_n |x[n, i]| z y P_n, P_n =
    # sum_k p_k |u_k|, and each path's rounding is a count of eps times T:
    # - closed: sigmoid(a1 + s) (2.5 eps, and its argument's rounding u |a1 + s| <= u (|a1| +
    #   1)), times y (2.5 eps), times expm1(-s) (1.5 eps), 2 products; expm1(dz u_k) and its
    #   product (2 eps); the sum over K = 10 classes (gamma_10 = 5 eps); log1p (1.5 eps); the
    #   stencil's subtraction and the sum over N samples (gamma_{N+1}): 16 eps + u (|a1| + 1) +
    #   gamma_{N+1};
    # - series: z and y (2.5 eps each) and z1 = z y (0.5); m_1 = u @ p (gamma_10); the sums over
    #   N (gamma_{N+1}); Horner's R multiplications and additions and the stencil (R + 1 eps):
    #   11 eps + gamma_{N+1} + (R + 1) eps.
    # Beyond first order: for complex |s| <= rho = 1 / (5 max |u|) <= 0.02, |sigmoid(a1 + s)| <=
    # 2 e^rho z and |expm1(-s)| <= rho e^rho, so the hidden output moves by at most dz = 2 e^(2
    # rho) rho z y, the sum inside the log by at most S = dz P_n e^(0.105) (|u| dz <= 0.105)
    # and |d_n| <= S / (1 - S) <= 2.62 rho z y P_n. By Cauchy the terms of degree >= 2 at |s| <=
    # h (q = h / rho) add at most 2.62 q / (1 - q) of T to every term's size, and the remainder
    # after R = 8 terms, 2.62 q^9 / (1 - q) ~ 1e-20 of T, is left out of the count.
    z, y = 1 / (1 + np.exp(-a1)), 1 / (1 + np.exp(a1))
    share = z * y * np.einsum("nk,njk->nj", p, np.abs(u))  # (N, H)
    n, q = x.shape[0], 1e-4 * 5 * reach
    counted = ((16 + 11 + terms + 1) * EPS64 + EPS64 / 2 * (np.abs(a1).max() + 1)
               + 2 * gamma(n + 1)) * (1 + 2.62 * q / (1 - q))
    for name, size in (("W1", np.abs(x).T @ share / n), ("b1", share.sum(axis=0) / n)):
        assert_within(series.grads[name], closed.grads[name], counted * size)
    assert np.abs(closed.grads["b1"][:3]).max() < 1e-7 * np.abs(closed.grads["b1"][3:]).max()


def test_series_terms_grow_as_steps_grow_and_give_way_to_the_closed_forms():
    # q = step / rho with rho = min(1, 1 / (5 reach)); R terms once q^R / (1 - q) <= 2^-54
    assert gradient._series_terms(1e-4, 0.05) == 5  # book weights: rho = 1, q = 1e-4
    assert gradient._series_terms(1e-4, 10.0) == 8  # rho = 0.02, q = 5e-3
    assert gradient._series_terms(0.05, 0.05) == 13  # q = 0.05
    assert gradient._series_terms(0.1, 0.05) is None  # q = 0.1 would need 17 of at most 16
    assert gradient._series_terms(0.0, 3.0) == 1


# --- the sigmoid net's series path, piece by piece ---


def test_series_terms_is_the_fewest_terms_whose_cauchy_remainder_is_below_2_to_the_minus_54():
    """rho = min(1, 1 / (5 reach)) (1 for reach 0), q = step / rho, and the fewest R with
    q^R / (1 - q) <= 2^-54, here by hand: q = 2^-10: R = 6 (2^-60 / (1 - 2^-10) <= 2^-54 <
    2^-50 / (1 - 2^-10)); reach 0.5: rho 0.4, q = 0.01: R = 9; reach 2: rho 0.1, q = 0.02:
    R = 10; q = 0.5 would need 55 terms, more than MAX_SERIES_TERMS."""
    assert gradient._series_terms(2.0**-10, 0.0) == 6
    assert gradient._series_terms(0.004, 0.5) == 9
    assert gradient._series_terms(0.002, 2.0) == 10
    assert gradient._series_terms(0.5, 0.0) is None
    assert gradient._series_terms(1.5, 0.0) is None  # q >= 1: no number of terms
    assert gradient._series_terms(1.0, 0.0) is None  # q = 1 exactly (no division by 0)
    # near the bound 2^-54 = 5.55e-17: q = 0.056 needs 14 (0.056^13 / 0.944 = 5.64e-17 is just
    # above it; times 0.944 or over 1.056 it would pass), q = 0.009 needs 8 (0.009^8 / 0.991 =
    # 4.3e-17, above 2^-55), and q = 0.09 the most there is, 16
    assert gradient._series_terms(0.056, 0.0) == 14
    assert gradient._series_terms(0.009, 0.0) == 8
    assert gradient._series_terms(0.09, 0.0) == 16
    assert gradient.MAX_SERIES_TERMS == 16


def test_polynomial_is_the_sum_of_c_r_step_to_the_r_from_r_1():
    """Dyadic numbers: every product and sum is exact, so Horner's rule and the plain sum
    agree to the bit."""
    c = [np.array([1.0, 2.0]), np.array([3.0, -1.0]), np.array([0.5, 4.0])]
    steps = np.array([[2.0, -0.5], [0.25, 3.0]])
    expected = c[0] * steps + c[1] * steps**2 + c[2] * steps**3
    np.testing.assert_array_equal(gradient._polynomial(c, steps), expected)
    np.testing.assert_array_equal(gradient._polynomial(c[:1], steps), c[0] * steps)


def test_sigmoid_loss_series_gives_the_taylor_coefficients_of_the_loss_change():
    """Against mpmath's Taylor coefficients (50 digits) of
    d(s) = log(sum_k p_k exp(u_k (sigmoid(a + s) - sigmoid(a)))) for two samples, two hidden
    units, three classes. Each float64 coefficient is a few hundred products and sums of
    numbers below 4 (R^3 = 512 at most), so within 512 * 4 * 2^-52 ~ 5e-13 of the true one; the
    last coefficients are ~1e-7 here (u up to 2), so a moment or a term left out is far
    outside that."""
    mpmath = pytest.importorskip("mpmath")  # PyTorch's sympy brings it (the torch extra)

    terms = 8
    a1 = np.array([[0.3, -1.2], [2.0, 0.0]])
    p = np.array([[0.25, 0.5, 0.25], [0.625, 0.125, 0.25]])  # rows sum to 1 exactly
    u = np.array([[[1.0, -2.0, 0.5], [0.25, 1.5, -1.0]], [[-0.5, 2.0, 1.0], [1.75, -0.75, 0.0]]])
    f = gradient._sigmoid_loss_series(a1, p, u, terms)
    assert len(f) == terms
    assert all(fr.shape == (2, 2) and fr.dtype == np.float64 for fr in f)
    mpmath.mp.dps = 50
    try:
        for n in range(2):
            for j in range(2):
                a = mpmath.mpf(a1[n, j])

                def change(s, a=a, n=n, j=j):
                    dz = 1 / (1 + mpmath.exp(-(a + s))) - 1 / (1 + mpmath.exp(-a))
                    return mpmath.log(sum(mpmath.mpf(p[n, k]) * mpmath.exp(u[n, j, k] * dz)
                                          for k in range(3)))

                exact = mpmath.taylor(change, 0, terms)
                assert abs(exact[0]) < 1e-40
                for r in range(1, terms + 1):
                    assert abs(f[r - 1][n, j] - float(exact[r])) <= 1e-12, (n, j, r)
                assert abs(float(exact[terms])) > 1e-9  # the last term matters at this bound
    finally:
        mpmath.mp.dps = 15
