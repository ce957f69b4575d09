"""The optimizers and schedules against hand-computed numbers, the book's update rules and
torch.optim."""

import inspect
import math

import numpy as np
import pytest
from tolerances import EPS64, LIBM_REL, gamma

from mnist_twolayer.errors import ConfigError
from mnist_twolayer.optim import (
    OPTIMIZERS,
    SGD,
    check_optimizer_settings,
    make_optimizer,
    make_schedule,
)


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
                                                                    rel=LIBM_REL + gamma(3), abs=0)
    cosine = make_schedule("cosine", 0.2, 100)
    assert cosine(0) == 0.2  # cos(0) = 1: 0.5 * 0.2 * 2 is exact
    # cos(pi / 2) is 6e-17 for the rounded pi: 1 + it rounds to 1
    assert cosine(50) == pytest.approx(0.1, rel=gamma(2), abs=0)
    # near pi, 1 + cos = 4.9e-4 magnifies what libm's cos and the angle's rounding (2 u pi,
    # times sin) leave on each side, ~1e-16, 2000 times
    near_pi = 2 * (LIBM_REL + EPS64 * math.pi * math.sin(0.01 * math.pi)) / (
        1 + math.cos(0.99 * math.pi))
    assert cosine(99) == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 0.99)),
                                       rel=near_pi + gamma(4), abs=0)
    with pytest.raises(ConfigError, match="unknown schedule 'linear'"):
        make_schedule("linear", 0.1, 10)


# --- the ch. 6 optimizers ---

SHAPES = {"W1": (6, 5), "b1": (5,), "W2": (5, 3), "b2": (3,)}
STEPS = 6
SCHEDULE = (1.0, 0.8, 0.6, 0.4, 0.2, 0.1)  # a changing lr, as a schedule gives


def _start() -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    """Float64 parameters and STEPS gradients, a few entries of each exactly 0."""
    rng = np.random.default_rng(12)
    params = {key: rng.standard_normal(shape) for key, shape in SHAPES.items()}
    grads = [{key: rng.standard_normal(shape) * (rng.random(shape) > 0.1)
              for key, shape in SHAPES.items()} for _ in range(STEPS)]
    return params, grads


def _bound(start: dict[str, np.ndarray], path: list[dict[str, np.ndarray]]) -> dict[str,
                                                                                    np.ndarray]:
    """How far two float64 evaluations of the same update rules may drift apart. Every
    operation is per element (no sums across elements): Adam, the longest, rounds about 13
    times per element and step, or 16 counting libm's beta**t and sqrt(1 - beta2**t) (within
    1 ulp each, in ours and in torch's alike); a step's roundings carry into the state of the
    next ones, so step k is off by at most about (16 + 13 k) roundings relative to what moved.
    gamma(64 * STEPS) times the start plus every step's size covers that with room to spare,
    and stays ~1e-13: a different rule (eps placed elsewhere, another eps, the lr applied to
    the velocity otherwise) moves parameters by 1e-10 or more here."""
    moved = {key: np.abs(value) for key, value in start.items()}
    for before, after in zip([start, *path[:-1]], path, strict=True):
        for key in moved:
            moved[key] = moved[key] + np.abs(after[key] - before[key])
    return {key: gamma(64 * STEPS) * value for key, value in moved.items()}


def _run_ours(name: str, lr: float, weight_decay: float = 0.0, schedule=SCHEDULE,
              **settings) -> list[dict[str, np.ndarray]]:
    params, grads = _start()
    optimizer = make_optimizer(name, lr, weight_decay, settings)
    path = []
    for scale, grad in zip(schedule, grads[:len(schedule)], strict=True):
        optimizer.update(params, {key: value.copy() for key, value in grad.items()},
                         lr * scale)
        path.append({key: value.copy() for key, value in params.items()})
    return path


def _assert_close_paths(ours, theirs) -> None:
    start = _start()[0]
    bounds = _bound(start, theirs)
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        for key in a:
            excess = np.abs(a[key] - b[key]) - bounds[key]
            assert excess.max() <= 0, f"step {step + 1}, {key}: off by {excess.max():g} more"


TORCH_TWINS = [
    # (ours, our settings, torch.optim class, its keyword arguments): our defaults are torch's
    ("sgd", {}, "SGD", {}),
    ("momentum", {}, "SGD", {"momentum": 0.9}),
    ("momentum", {"momentum": 0.5}, "SGD", {"momentum": 0.5}),
    ("nesterov", {}, "SGD", {"momentum": 0.9, "nesterov": True}),
    ("adagrad", {}, "Adagrad", {}),
    ("adagrad", {"eps": 1e-3}, "Adagrad", {"eps": 1e-3}),
    ("rmsprop", {}, "RMSprop", {}),
    ("rmsprop", {"decay_rate": 0.9, "eps": 1e-3}, "RMSprop", {"alpha": 0.9, "eps": 1e-3}),
    ("adam", {}, "Adam", {}),
    ("adam", {"beta1": 0.5, "beta2": 0.9, "eps": 1e-3}, "Adam",
     {"betas": (0.5, 0.9), "eps": 1e-3}),
]


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("name, settings, torch_name, torch_kwargs", TORCH_TWINS)
def test_every_optimizer_matches_torch_optim_step_for_step(name, settings, torch_name,
                                                           torch_kwargs, weight_decay):
    """Six float64 steps under a changing lr, weight decay on W1 and W2 only (torch: a
    parameter group for the weights, one without decay for the biases)."""
    torch = pytest.importorskip("torch")
    lr = 0.01 if name in ("adagrad", "rmsprop", "adam") else 0.1
    start, grads = _start()
    tensors = {key: torch.tensor(value, requires_grad=True) for key, value in start.items()}
    optimizer = getattr(torch.optim, torch_name)(
        [{"params": [tensors["W1"], tensors["W2"]], "weight_decay": weight_decay},
         {"params": [tensors["b1"], tensors["b2"]], "weight_decay": 0.0}],
        lr=lr, **torch_kwargs)
    theirs = []
    for scale, grad in zip(SCHEDULE, grads, strict=True):
        for group in optimizer.param_groups:
            group["lr"] = lr * scale
        for key, tensor in tensors.items():
            tensor.grad = torch.tensor(grad[key])
        optimizer.step()
        theirs.append({key: tensor.detach().numpy().copy() for key, tensor in tensors.items()})
    _assert_close_paths(_run_ours(name, lr, weight_decay, **settings), theirs)


# The book's update rules (common/optimizer.py), written from its formulas, in its variables.


def _book_path(name: str, lr: float, schedule=SCHEDULE, eps: float = 1e-7, momentum=0.9,
               decay_rate=0.99, beta1=0.9, beta2=0.999) -> list[dict[str, np.ndarray]]:
    params, grads = _start()
    state = {key: [np.zeros_like(value), np.zeros_like(value)] for key, value in params.items()}
    path = []
    for t, (scale, step_grads) in enumerate(zip(schedule, grads[:len(schedule)], strict=True),
                                                  start=1):
        rate = lr * scale
        for key, p in params.items():
            g, (a, b) = step_grads[key], state[key]
            if name == "momentum":
                a[...] = momentum * a - rate * g
                p += a
            elif name == "nesterov":
                p += momentum * momentum * a
                p -= (1 + momentum) * rate * g
                a *= momentum
                a -= rate * g
            elif name == "adagrad":
                a += g * g
                p -= rate * g / (np.sqrt(a) + eps)
            elif name == "rmsprop":
                a *= decay_rate
                a += (1 - decay_rate) * g * g
                p -= rate * g / (np.sqrt(a) + eps)
            else:  # adam
                rate_t = rate * np.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
                a += (1 - beta1) * (g - a)
                b += (1 - beta2) * (g ** 2 - b)
                p -= rate_t * a / (np.sqrt(b) + eps)
        path.append({key: value.copy() for key, value in params.items()})
    return path


@pytest.mark.parametrize("name", ["adagrad", "rmsprop"])
def test_adagrad_and_rmsprop_are_the_books_to_the_bit_given_its_eps(name):
    """Ours add eps outside the square root, as the book and torch do; only the default eps
    differs (book 1e-7; torch and ours 1e-10 for AdaGrad, 1e-8 for RMSprop)."""
    ours, book = _run_ours(name, 0.01, eps=1e-7), _book_path(name, 0.01, eps=1e-7)
    for a, b in zip(ours, book, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("name", ["momentum", "nesterov"])
def test_books_momentum_and_nesterov_are_ours_while_the_lr_is_constant(name):
    """The book keeps v' = -lr * v: the same steps at a constant lr (to rounding); under a
    schedule the book's velocity remembers past learning rates and ours does not."""
    constant = (1.0,) * STEPS
    _assert_close_paths(_run_ours(name, 0.1, schedule=constant),
                        _book_path(name, 0.1, schedule=constant))
    with pytest.raises(AssertionError, match="step 2, W1"):
        _assert_close_paths(_run_ours(name, 0.1), _book_path(name, 0.1))


def test_books_adam_differs_from_ours_only_in_where_eps_goes():
    """The book adds eps to sqrt(v) before the bias correction, torch (and we) after it: with
    an eps too small to matter the two agree; the book's eps e at step t is our
    e / sqrt(1 - beta2**t) (31.6 e at step 1)."""
    _assert_close_paths(_run_ours("adam", 0.01, eps=1e-300),
                        _book_path("adam", 0.01, eps=1e-300))
    first = _book_path("adam", 0.01, schedule=(1.0,), eps=1e-3)
    _assert_close_paths(_run_ours("adam", 0.01, schedule=(1.0,), eps=1e-3 / math.sqrt(1e-3)),
                        first)
    with pytest.raises(AssertionError, match="step 1, W1"):
        _assert_close_paths(_run_ours("adam", 0.01, schedule=(1.0,), eps=1e-3), first)


FIRST_STEP = {
    # the first update of each optimizer at its defaults, by hand: the state starts at zero,
    # so Adam's bias-corrected averages are g and g*g exactly, and so on
    "sgd": lambda p, g, lr: p - lr * g,
    "momentum": lambda p, g, lr: p - lr * g,
    "nesterov": lambda p, g, lr: p - lr * 1.9 * g,
    "adagrad": lambda p, g, lr: p - lr * g / (np.abs(g) + 1e-10),
    "rmsprop": lambda p, g, lr: p - lr * g / (0.1 * np.abs(g) + 1e-8),
    "adam": lambda p, g, lr: p - lr * g / (np.abs(g) + 1e-8),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_weight_decay_pulls_the_weights_of_every_optimizer_and_never_the_biases(name):
    """Zero gradients, weight decay 0.01: the gradient is 0.01 * W for the weights and 0 for
    the biases, which stay exactly where they are. (rtol: a dozen roundings on either side,
    the update being smaller than the weight it changes.)"""
    params = {"W1": np.array([1.0, -2.0, 0.25]), "b1": np.array([0.5, -0.5])}
    zero = {key: np.zeros_like(value) for key, value in params.items()}
    make_optimizer(name, 0.01, weight_decay=0.01).update(params, zero)
    np.testing.assert_array_equal(params["b1"], [0.5, -0.5])
    w = np.array([1.0, -2.0, 0.25])  # the adaptive ones move each weight by ~0.01 or 0.1
    np.testing.assert_allclose(params["W1"], FIRST_STEP[name](w, 0.01 * w, 0.01),
                               rtol=gamma(24))


def test_defaults_are_the_books_and_torchs():
    """lr as the book (torch agrees but for SGD's); hyperparameters as both; eps as torch."""
    expected = {"sgd": {"lr": 0.01, "momentum": 0.0},
                "momentum": {"lr": 0.01, "momentum": 0.9},
                "nesterov": {"lr": 0.01, "momentum": 0.9},
                "adagrad": {"lr": 0.01, "eps": 1e-10},
                "rmsprop": {"lr": 0.01, "decay_rate": 0.99, "eps": 1e-8},
                "adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}}
    for name, cls in OPTIMIZERS.items():
        parameters = inspect.signature(cls).parameters
        defaults = {key: value.default for key, value in parameters.items()
                    if key not in ("weight_decay", "decay_keys", "nesterov")}
        assert defaults == expected[name], name
        assert cls.default_lr == defaults["lr"]
        assert set(cls.settings) == set(defaults) - {"lr"} - ({"momentum"} if name == "sgd"
                                                                else set())


def test_adam_updates_float32_in_float32():
    """No step is computed in float64 and rounded back: the first Adam step is float32
    arithmetic's, operation for operation."""
    f = np.float32
    params = {"W1": np.full(3, 0.7, dtype=f)}
    grad = np.full(3, 0.3, dtype=f)
    optimizer = make_optimizer("adam", 0.01)
    optimizer.update(params, {"W1": grad.copy()})
    m = f(1 - 0.9) * (grad - f(0))
    v = f(1 - 0.999) * grad * grad
    denominator = np.sqrt(v) / f(math.sqrt(1 - 0.999)) + f(1e-8)
    np.testing.assert_array_equal(params["W1"], f(0.7) - f(0.01 / (1 - 0.9)) * m / denominator)
    assert {value.dtype for group in optimizer.state.values() for value in group.values()} == {
        np.dtype(f)}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_continues_identically_from_its_state_dict(name):
    """What a checkpoint keeps (the arrays by group, and the update count) is all of it."""
    params, grads = _start()
    a = make_optimizer(name, 0.01)
    for grad in grads[:3]:
        a.update(params, grad)
    copy = {key: value.copy() for key, value in params.items()}
    saved = a.state_dict()
    assert {key.split("/")[0] for key in saved} == set(a.state_groups)
    assert len(saved) == 4 * len(a.state_groups)
    b = make_optimizer(name, 0.01)
    b.load_state_dict(saved, steps=a.steps)
    for grad in grads[3:]:
        a.update(params, grad)
        b.update(copy, grad)
    for key in params:
        np.testing.assert_array_equal(params[key], copy[key])


@pytest.mark.parametrize("name, settings, message", [
    ("adam", {"beta1": 1.0}, "beta1 must be in [0, 1), got 1.0"),
    ("adam", {"beta2": -0.5}, "beta2 must be in [0, 1), got -0.5"),
    ("adam", {"eps": 0.0}, "eps must be a positive number, got 0.0"),
    ("rmsprop", {"decay_rate": 1.0}, "decay rate must be in [0, 1), got 1.0"),
    ("adagrad", {"eps": math.nan}, "eps must be a positive number, got nan"),
    ("nesterov", {"momentum": 0.0}, "Nesterov momentum needs --momentum greater than 0"),
    ("lion", {}, "unknown optimizer 'lion'; choose one of sgd, momentum, nesterov, adagrad, "
                 "rmsprop, adam"),
])
def test_bad_optimizer_settings_are_config_errors(name, settings, message):
    with pytest.raises(ConfigError) as info:
        make_optimizer(name, 0.01, settings=settings)
    assert str(info.value) == message


DEFAULT_STATE = {"sgd": {"lr": 0.01, "momentum": 0.0, "nesterov": False},
                 "momentum": {"lr": 0.01, "momentum": 0.9, "nesterov": False},
                 "nesterov": {"lr": 0.01, "momentum": 0.9, "nesterov": True},
                 "adagrad": {"lr": 0.01, "eps": 1e-10},
                 "rmsprop": {"lr": 0.01, "decay_rate": 0.99, "eps": 1e-8},
                 "adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_an_optimizer_built_with_no_arguments_holds_its_defaults(name):
    """What the constructor stores, not what its signature says (the signature and the body
    can disagree): the defaults, no weight decay, decay on the two weight matrices, no steps."""
    optimizer = OPTIMIZERS[name]()
    for key, value in DEFAULT_STATE[name].items():
        assert getattr(optimizer, key) == value, key
        assert type(getattr(optimizer, key)) is type(value), key
    assert optimizer.weight_decay == 0.0 and optimizer.decay_keys == ("W1", "W2")
    assert optimizer.steps == 0
    assert optimizer.state == {group: {} for group in optimizer.groups}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_decays_the_keys_it_is_given(name):
    """decay_keys reaches the update: decay on b1 alone moves b1 and leaves W1 (zero
    gradients)."""
    params = {"W1": np.array([1.0, -2.0]), "b1": np.array([0.5, -0.5])}
    zero = {key: np.zeros_like(value) for key, value in params.items()}
    OPTIMIZERS[name](0.1, weight_decay=0.5, decay_keys=("b1",)).update(params, zero)
    np.testing.assert_array_equal(params["W1"], [1.0, -2.0])
    assert np.all(np.abs(params["b1"]) < 0.5)


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("weight_decay", [-0.5, math.inf, math.nan])
def test_every_constructor_and_check_refuse_a_bad_weight_decay(name, weight_decay):
    with pytest.raises(ConfigError) as info:
        OPTIMIZERS[name](0.01, weight_decay=weight_decay)
    assert str(info.value) == f"weight decay must be >= 0, got {weight_decay}"
    with pytest.raises(ConfigError) as info:
        OPTIMIZERS[name].check(0.01, weight_decay)
    assert str(info.value) == f"weight decay must be >= 0, got {weight_decay}"


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("lr", [0.0, -0.1, math.inf, math.nan])
def test_every_constructor_and_check_refuse_a_bad_learning_rate(name, lr):
    message = f"learning rate must be a positive number, got {lr}"
    with pytest.raises(ConfigError) as info:
        OPTIMIZERS[name](lr)
    assert str(info.value) == message
    with pytest.raises(ConfigError) as info:
        OPTIMIZERS[name].check(lr)
    assert str(info.value) == message


def test_the_base_check_refuses_a_bad_learning_rate_or_weight_decay():
    """Optimizer.check, what an optimizer without settings of its own inherits."""
    from mnist_twolayer.optim import Optimizer

    Optimizer.check(0.5)
    Optimizer.check(0.5, 0.0, momentum=3.0)  # others' settings are not its business
    with pytest.raises(ConfigError, match=r"^learning rate must be a positive number, got 0$"):
        Optimizer.check(0)
    with pytest.raises(ConfigError, match=r"^weight decay must be >= 0, got -1$"):
        Optimizer.check(0.5, -1)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_check_accepts_a_learning_rate_alone(name):
    """Its own defaults for the rest pass its own check (and need not be given)."""
    assert OPTIMIZERS[name].check(0.5) is None


@pytest.mark.parametrize("cls_name, settings, message", [
    ("sgd", {"momentum": 1.0}, "momentum must be in [0, 1), got 1.0"),
    ("sgd", {"momentum": 0.0, "nesterov": True},
     "Nesterov momentum needs --momentum greater than 0"),
    ("momentum", {"momentum": -0.25}, "momentum must be in [0, 1), got -0.25"),
    ("nesterov", {"momentum": 1.5}, "momentum must be in [0, 1), got 1.5"),
    ("nesterov", {"momentum": 0.0}, "Nesterov momentum needs --momentum greater than 0"),
    ("adagrad", {"eps": 0.0}, "eps must be a positive number, got 0.0"),
    ("adagrad", {"eps": math.inf}, "eps must be a positive number, got inf"),
    ("rmsprop", {"decay_rate": -0.1}, "decay rate must be in [0, 1), got -0.1"),
    ("rmsprop", {"eps": -1e-8}, "eps must be a positive number, got -1e-08"),
    ("adam", {"beta1": -0.1}, "beta1 must be in [0, 1), got -0.1"),
    ("adam", {"beta2": 1.0}, "beta2 must be in [0, 1), got 1.0"),
    ("adam", {"eps": math.nan}, "eps must be a positive number, got nan"),
])
def test_each_constructor_and_check_refuse_its_own_bad_settings(cls_name, settings, message):
    cls = OPTIMIZERS[cls_name]
    with pytest.raises(ConfigError) as info:
        cls(0.01, **settings)
    assert str(info.value) == message
    with pytest.raises(ConfigError) as info:
        cls.check(0.01, **settings)
    assert str(info.value) == message
    if set(settings) <= set(cls.settings):  # what TrainConfig can pass it (sgd: nothing)
        with pytest.raises(ConfigError) as info:
            check_optimizer_settings(cls_name, 0.01, 0.0, settings)
        assert str(info.value) == message


def test_state_loaded_without_a_step_count_starts_adams_count_at_zero():
    """load_state_dict's steps default: a state taken over with no count is a fresh start of
    the bias correction (t = 1 at the next update)."""
    a = make_optimizer("adam", 0.01)
    params = {"W1": np.array([1.0, -2.0])}
    a.update(params, {"W1": np.array([0.5, 0.25])})
    b = make_optimizer("adam", 0.01)
    b.load_state_dict(a.state_dict())
    assert b.steps == 0
    np.testing.assert_array_equal(b.state["adam_m"]["W1"], a.state["adam_m"]["W1"])
    b.load_state_dict(a.state_dict(), steps=7)
    assert b.steps == 7


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_update_leaves_the_gradients_as_they_were(name):
    """An update never writes into ``grads``: a caller may look at (or reuse) the gradient
    after it."""
    params = _params()
    grads = {"W1": np.array([0.25, -0.5]), "b1": np.array([2.0])}
    kept = {key: grad.copy() for key, grad in grads.items()}
    optimizer = OPTIMIZERS[name](lr=0.1, weight_decay=0.01)
    for _ in range(2):
        optimizer.update(params, grads)
    for key, grad in grads.items():
        np.testing.assert_array_equal(grad, kept[key])
    assert not np.array_equal(params["W1"], _params()["W1"])
