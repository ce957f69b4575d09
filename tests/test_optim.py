"""SGD and schedules against hand-computed numbers."""

import math

import numpy as np
import pytest
from tolerances import EPS64, LIBM_REL, gamma

from mnist_twolayer.errors import ConfigError
from mnist_twolayer.optim import SGD, make_schedule


def _params() -> dict[str, np.ndarray]:
    return {"W1": np.array([1.0, -2.0]), "b1": np.array([0.5])}


def test_plain_sgd_is_the_books_update():
    params = _params()
    SGD(lr=0.1).update(params, {"W1": np.array([1.0, 1.0]), "b1": np.array([2.0])})
    np.testing.assert_array_equal(params["W1"], [0.9, -2.1])
    np.testing.assert_array_equal(params["b1"], [0.3])


def test_momentum_accumulates_velocity():
    params = _params()
    opt = SGD(lr=0.1, momentum=0.9)
    grads = {"W1": np.array([1.0, 0.0]), "b1": np.array([0.0])}
    opt.update(params, grads)  # v = 1, W1[0] = 1 - 0.1
    opt.update(params, grads)  # v = 0.9 + 1 = 1.9, W1[0] = 0.9 - 0.19
    # no transcendental function: the decimals 0.1, 0.9 and the products and differences of
    # numbers <= 2, each rounded (u): 6 roundings of values <= 1, 3 of values <= 2
    assert params["W1"][0] == pytest.approx(0.71, abs=gamma(6))
    assert opt.velocity["W1"][0] == pytest.approx(1.9, abs=2 * gamma(3))


def test_nesterov_looks_ahead():
    params = _params()
    opt = SGD(lr=0.1, momentum=0.9, nesterov=True)
    grads = {"W1": np.array([1.0, 0.0]), "b1": np.array([0.0])}
    opt.update(params, grads)  # v = 1, step = g + 0.9 v = 1.9
    assert params["W1"][0] == pytest.approx(1.0 - 0.19, abs=gamma(6))  # as above


def test_weight_decay_touches_weights_not_biases():
    params = _params()
    zero = {"W1": np.zeros(2), "b1": np.zeros(1)}
    SGD(lr=0.5, weight_decay=0.1).update(params, zero)
    # 0 + 0.1 W, times 0.5, subtracted: 0.1's rounding and 3 more, either side's decimals
    np.testing.assert_allclose(params["W1"], [1.0 - 0.05, -2.0 + 0.1], rtol=gamma(6))
    np.testing.assert_array_equal(params["b1"], [0.5])


def test_float32_params_are_updated_in_float32():
    """No step is computed in float64 and rounded back: the result is float32 arithmetic's."""
    params = {"W1": np.full(3, 0.7, dtype=np.float32)}
    optimizer = SGD(lr=0.1, momentum=0.9, weight_decay=1e-3)
    optimizer.update(params, {"W1": np.full(3, 0.3, dtype=np.float32)})
    f = np.float32
    velocity = f(0.3) + f(1e-3) * f(0.7)
    np.testing.assert_array_equal(params["W1"], np.full(3, f(0.7) - f(0.1) * velocity))
    assert optimizer.velocity["W1"].dtype == np.float32


def test_state_dict_round_trip_continues_identically():
    grads = {"W1": np.array([0.3, -0.2]), "b1": np.array([0.1])}
    a, pa = SGD(lr=0.1, momentum=0.9), _params()
    a.update(pa, grads)
    b, pb = SGD(lr=0.1, momentum=0.9), {k: v.copy() for k, v in pa.items()}
    b.load_state_dict(a.state_dict())
    a.update(pa, grads)
    b.update(pb, grads)
    for key in pa:
        np.testing.assert_array_equal(pa[key], pb[key])


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": 0.0}, "learning rate must be a positive number, got 0.0"),
    ({"lr": math.inf}, "learning rate must be a positive number, got inf"),
    ({"lr": 0.1, "momentum": 1.0}, "momentum must be in [0, 1), got 1.0"),
    ({"lr": 0.1, "nesterov": True}, "Nesterov momentum needs --momentum greater than 0"),
    ({"lr": 0.1, "weight_decay": -1.0}, "weight decay must be >= 0, got -1.0"),
])
def test_bad_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError) as info:
        SGD(**kwargs)
    assert str(info.value) == message


def test_schedules():
    assert make_schedule("constant", 0.1, 100)(99) == 0.1
    step = make_schedule("step", 1.0, 90)
    # 1 * 0.1 ** k: 0.1's rounding, doubled in its square, libm's pow, and 0.01's own
    assert [step(0), step(29), step(30), step(60)] == pytest.approx([1.0, 1.0, 0.1, 0.01],
                                                                    rel=LIBM_REL + gamma(3))
    cosine = make_schedule("cosine", 0.2, 100)
    assert cosine(0) == 0.2  # cos(0) = 1: 0.5 * 0.2 * 2 is exact
    # cos(pi / 2) is 6e-17 for the rounded pi: 1 + it rounds to 1
    assert cosine(50) == pytest.approx(0.1, rel=gamma(2))
    # near pi, 1 + cos = 4.9e-4 magnifies what libm's cos and the angle's rounding (2 u pi,
    # times sin) leave on each side, ~1e-16, 2000 times
    near_pi = 2 * (LIBM_REL + EPS64 * math.pi * math.sin(0.01 * math.pi)) / (
        1 + math.cos(0.99 * math.pi))
    assert cosine(99) == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 0.99)),
                                       rel=near_pi + gamma(4))
    with pytest.raises(ConfigError, match="unknown schedule 'linear'"):
        make_schedule("linear", 0.1, 10)
