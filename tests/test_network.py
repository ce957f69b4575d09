"""network.py: TwoLayerNet's init, forward, gradient paths on real MNIST, and save / load."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import mnist_batch
from tolerances import (
    EPS64,
    assert_within,
    gamma,
    relative_error_bound,
    two_layer_bounds,
)

from mnist_twolayer.errors import CheckpointError, ConfigError
from mnist_twolayer.functions import softmax, softmax_cross_entropy
from mnist_twolayer.gradcheck import relative_error
from mnist_twolayer.gradient import two_layer_numerical_gradient
from mnist_twolayer.network import PARAM_NAMES as PARAMS
from mnist_twolayer.network import TwoLayerNet, check_net_settings, find_model


@pytest.fixture(scope="module")
def batch100(mnist):
    return mnist_batch(mnist, 100, 0)


@pytest.fixture(scope="module")
def full_net_gradients(batch100):
    """The 784-50-10 net's gradients of batch100 by backprop, autograd and vectorized."""
    net = TwoLayerNet(784, 50, 10, seed=0)
    x, t = batch100
    return {m: net.gradient(x, t, m) for m in ("backprop", "autograd", "numerical")}


@pytest.fixture(scope="module")
def relu_net(batch100):
    """The book's ch. 5 net, 784-50-10 ReLU, its gradients of batch100 by backprop and autograd,
    and the vectorized central differences with their kink entries."""
    net = TwoLayerNet(784, 50, 10, seed=0, activation="relu")
    x, t = batch100
    return (net, {m: net.gradient(x, t, m) for m in ("backprop", "autograd")},
            two_layer_numerical_gradient(net.params, x, t, activation="relu"))


@pytest.fixture(scope="module")
def full_net_bounds(batch100):
    """What each of full_net_gradients' paths may be off by (tolerances.two_layer_bounds)."""
    return two_layer_bounds(TwoLayerNet(784, 50, 10, seed=0).params, *batch100)


# --- construction ---


def test_shapes_dtypes_and_zero_biases():
    net = TwoLayerNet(784, 50, 10, dtype=np.float32, seed=0)
    shapes = {k: v.shape for k, v in net.params.items()}
    assert shapes == {"W1": (784, 50), "b1": (50,), "W2": (50, 10), "b2": (10,)}
    assert all(v.dtype == np.float32 for v in net.params.values())
    assert not net.params["b1"].any() and not net.params["b2"].any()
    assert (net.input_size, net.hidden_size, net.output_size) == (784, 50, 10)
    assert net.dtype == np.float32
    assert list(net.layers) == ["Affine1", "Sigmoid1", "Affine2"]
    assert type(net.last_layer).__name__ == "SoftmaxWithLoss"
    assert net.activation == "sigmoid"
    relu = TwoLayerNet(784, 50, 10, seed=0, activation="relu")
    assert list(relu.layers) == ["Affine1", "Relu1", "Affine2"]  # the book's ch. 5 names
    assert type(relu.layers["Relu1"]).__name__ == "Relu"
    for name in PARAMS:  # the activation does not touch the initial weights
        np.testing.assert_array_equal(relu.params[name], TwoLayerNet(784, 50, 10, seed=0)
                                      .params[name])


def test_same_seed_same_weights_in_either_dtype():
    a = TwoLayerNet(20, 5, 3, seed=7)
    b = TwoLayerNet(20, 5, 3, seed=np.random.default_rng(7))
    c = TwoLayerNet(20, 5, 3, seed=7, dtype="float32")
    for name in PARAMS:
        np.testing.assert_array_equal(a.params[name], b.params[name])
        np.testing.assert_array_equal(c.params[name], a.params[name].astype(np.float32))
    assert not np.array_equal(TwoLayerNet(20, 5, 3, seed=8).params["W1"], a.params["W1"])


@pytest.mark.parametrize(("init", "std1", "std2"), [
    ("normal", 0.01, 0.01),
    ("xavier", 1 / np.sqrt(784), 1 / np.sqrt(100)),
    ("he", np.sqrt(2 / 784), np.sqrt(2 / 100)),
])
def test_init_scales(init, std1, std2):
    """A sample std of n normals is off by ~std / sqrt(2n): 0.25% for W1's 78400 (3% is 12 of
    those), 2.2% for W2's 1000 (10% is 4.5)."""
    net = TwoLayerNet(784, 100, 10, init=init, seed=0)
    assert net.params["W1"].std() == pytest.approx(std1, rel=0.03, abs=0)
    assert net.params["W2"].std() == pytest.approx(std2, rel=0.1, abs=0)


BAD_SETTINGS = [
    ({"init": "uniform"}, "unknown init 'uniform'; choose one of normal, xavier, he"),
    ({"dtype": np.int32}, "dtype must be float32 or float64, not int32"),
    ({"dtype": np.float16}, "dtype must be float32 or float64, not float16"),
    ({"dtype": "banana"}, "dtype must be float32 or float64, not 'banana'"),
    ({"hidden_size": 0}, "hidden_size must be a positive integer, not 0"),
    ({"hidden_size": -1}, "hidden_size must be a positive integer, not -1"),
    ({"hidden_size": True}, "hidden_size must be a positive integer, not True"),
    ({"input_size": 2.5}, "input_size must be a positive integer, not 2.5"),
    ({"output_size": 0}, "output_size must be a positive integer, not 0"),
    ({"activation": "tanh"}, "unknown activation 'tanh'; choose one of sigmoid, relu"),
    ({"activation": "ReLU"}, "unknown activation 'ReLU'; choose one of sigmoid, relu"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_SETTINGS)
def test_bad_settings_are_config_errors(kwargs, message):
    args = {"input_size": 4, "hidden_size": 3, "output_size": 2, **kwargs}
    with pytest.raises(ConfigError) as info:
        TwoLayerNet(**args)
    assert str(info.value) == message


@pytest.mark.parametrize(("kwargs", "message"),
                         [case for case in BAD_SETTINGS
                          if set(case[0]) <= {"hidden_size", "init", "dtype"}])
def test_check_net_settings_refuses_what_the_net_would(kwargs, message):
    """TrainConfig checks a run's net settings here before any data loads."""
    args = {"hidden_size": 50, "init": "normal", "dtype": "float32", **kwargs}
    with pytest.raises(ConfigError) as info:
        check_net_settings(**args)
    assert str(info.value) == message
    check_net_settings(50, "he", np.float64)  # and lets good ones through


def test_find_model_takes_a_file_a_run_folder_or_the_newest_run(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    for name, mtime in (("a", 300), ("b", 100), ("c", 300), ("e", 200)):
        (runs / name).mkdir(parents=True)
        (runs / name / "model.npz").write_bytes(b"")
        os.utime(runs / name / "model.npz", (mtime, mtime))
    (runs / "d").mkdir()  # a run that never finished
    (runs / "f" / "model.npz").mkdir(parents=True)  # a folder, however new, is no model
    # the newest (not the last name, e); of two equally new ones the later name
    assert find_model(None, runs) == runs / "c" / "model.npz"
    monkeypatch.chdir(tmp_path)
    assert find_model(None) == Path("runs", "c", "model.npz")  # ./runs by default
    assert find_model(runs / "c", runs) == runs / "c" / "model.npz"
    assert find_model(tmp_path / "x.npz", runs) == tmp_path / "x.npz"  # a file, as given
    with pytest.raises(ConfigError) as info:
        find_model(runs / "d", runs)
    assert str(info.value) == (f"{runs / 'd'} holds no model.npz; give a model.npz or the "
                               f"folder of a finished run")
    with pytest.raises(ConfigError) as info:
        find_model(None, tmp_path / "none")
    assert str(info.value) == (f"no model given and no {tmp_path / 'none'}/*/model.npz here; "
                               f"train first: python -m mnist_twolayer train")


# --- forward ---


def test_predict_loss_accuracy_and_evaluate_agree(mnist):
    _, (x_test, t_test) = mnist
    net = TwoLayerNet(784, 30, 10, init="xavier", seed=1)
    x, t = x_test[:2500], t_test[:2500]
    probs = net.predict(x)
    assert probs.shape == (2500, 10) and probs.dtype == np.float64
    # exp's errors cancel (each e is divided by the sum of the same e): 2 sums of 10, a divide
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=gamma(19))
    bounds = two_layer_bounds(net.params, x, t)
    loss = net.loss(x, t)
    assert loss == pytest.approx(-np.mean(np.log(probs[np.arange(2500), t])),
                                 rel=0, abs=2 * bounds.loss)
    # argmax is exact unless a sample's two largest logits lie within their rounding: none
    # does (the log of the probabilities' ratio adds < 100 eps of its own)
    top2 = np.sort(probs, axis=1)[:, -2:]
    assert np.min(np.log(top2[:, 1] / top2[:, 0])) > 2 * np.max(bounds.logits) + 100 * EPS64
    accuracy = net.accuracy(x, t)
    assert accuracy == np.mean(probs.argmax(axis=1) == t)
    for chunk in (2500, 999, 10000):
        mean_loss, acc = net.evaluate(x, t, batch_size=chunk)
        assert mean_loss == pytest.approx(loss, rel=0, abs=2 * bounds.loss)
        assert acc == accuracy


def test_evaluate_works_in_chunks_of_10000_by_default(mnist):
    """10001 samples: a chunk of 10000 and one of 1, the very sums of batch_size=10000."""
    (x_train, t_train), _ = mnist
    net = TwoLayerNet(784, 20, 10, seed=0)
    x, t = x_train[:10001], t_train[:10001]
    assert net.evaluate(x, t) == net.evaluate(x, t, batch_size=10000)


def test_evaluate_on_one_sample_and_what_it_refuses():
    net = TwoLayerNet(4, 3, 2, seed=0)
    x, t = np.array([[0.5, 0.0, 1.0, 0.25]]), np.array([1])
    # one chunk of one sample: the same sums as loss and accuracy
    assert net.evaluate(x, t) == (net.loss(x, t), net.accuracy(x, t))
    with pytest.raises(ValueError, match="^cannot evaluate on an empty data set$"):
        net.evaluate(x[:0], t[:0])
    with pytest.raises(ConfigError, match="^batch_size must be a positive integer, not 0$"):
        net.evaluate(x, t, batch_size=0)


def test_relu_forward_is_max_0_between_the_affine_layers(batch100):
    x, t = batch100
    net = TwoLayerNet(784, 30, 10, init="he", seed=4, activation="relu")
    p = net.params
    hidden = np.maximum(x @ p["W1"] + p["b1"], 0)
    assert (hidden == 0).mean() > 0.2  # the test sees both sides of the kink
    logits = hidden @ p["W2"] + p["b2"]
    # the same operations in the same order: equal to the last bit
    np.testing.assert_array_equal(net.predict(x), softmax(logits))
    assert net.loss(x, t) == softmax_cross_entropy(logits, t)
    assert net.accuracy(x, t) == np.mean(logits.argmax(axis=1) == t)
    sigmoid = TwoLayerNet(784, 30, 10, init="he", seed=4)
    assert net.loss(x, t) != sigmoid.loss(x, t)


def test_one_hot_targets_equal_labels(batch100):
    x, t = batch100
    net = TwoLayerNet(784, 8, 10, seed=0)
    one_hot = np.eye(10, dtype=np.float32)[t]
    assert net.loss(x, one_hot) == net.loss(x, t)
    assert net.accuracy(x, one_hot) == net.accuracy(x, t)
    for method in ("backprop", "autograd", "numerical"):
        by_label, by_one_hot = net.gradient(x, t, method), net.gradient(x, one_hot, method)
        for name in PARAMS:
            np.testing.assert_array_equal(by_label[name], by_one_hot[name])


@pytest.mark.parametrize("bad", [-1, 10])
def test_labels_outside_the_classes_are_refused_by_every_path(batch100, bad):
    x, t = batch100
    t = t.astype(np.int64)
    t[3] = bad
    net = TwoLayerNet(784, 8, 10, seed=0)
    calls = [lambda: net.loss(x, t), lambda: net.accuracy(x, t), lambda: net.evaluate(x, t),
             *(lambda m=m: net.gradient(x, t, m) for m in ("backprop", "autograd")),
             lambda: net.numerical_gradient(x, t)]
    for call in calls:
        with pytest.raises(ValueError, match=f"class indices must be in 0..9, got values from "
                                             f"{min(bad, 0)} to {max(bad, 9)}"):
            call()


def test_inputs_of_another_dtype_are_converted_to_the_net_dtype():
    net = TwoLayerNet(6, 3, 2, dtype=np.float32, seed=0)
    x = np.random.default_rng(0).random((4, 6))  # float64
    assert net.predict(x).dtype == np.float32
    _, grads = net.loss_and_gradient(x, np.array([0, 1, 1, 0]))
    assert all(g.dtype == np.float32 for g in grads.values())


def test_bad_inputs_are_value_errors():
    net = TwoLayerNet(6, 3, 2, seed=0)
    with pytest.raises(ValueError, match="shape"):
        net.predict(np.zeros((4, 5)))
    with pytest.raises(ValueError, match="targets"):
        net.loss(np.zeros((4, 6)), np.array([0, 1]))
    with pytest.raises(ValueError, match="class indices"):
        net.loss(np.zeros((2, 6)), np.array([0.0, 1.0]))
    with pytest.raises(ConfigError, match="^unknown gradient method 'finite'; choose one of "
                                          "backprop, autograd, numerical$"):
        net.gradient(np.zeros((2, 6)), np.array([0, 1]), method="finite")
    with pytest.raises(ConfigError, match="^unknown numerical method 'loop'; choose one of "
                                          "nditer, vectorized$"):
        net.numerical_gradient(np.zeros((2, 6)), np.array([0, 1]), method="loop")
    with pytest.raises(ConfigError, match="order must be one of 2, 4, not 3"):
        net.numerical_gradient(np.zeros((2, 6)), np.array([0, 1]), order=3)
    with pytest.raises(ConfigError, match="the nditer loop is the book's central difference"):
        net.numerical_gradient(np.zeros((2, 6)), np.array([0, 1]), method="nditer", order=4)


# --- gradients ---


def test_loss_and_gradient_returns_the_loss_of_the_same_pass(batch100):
    x, t = batch100
    net = TwoLayerNet(784, 20, 10, seed=0)
    bound = 2 * two_layer_bounds(net.params, x, t).loss
    for method in ("backprop", "autograd", "numerical"):
        loss, grads = net.loss_and_gradient(x, t, method)
        assert isinstance(loss, float)
        assert loss == pytest.approx(net.loss(x, t), rel=0, abs=bound)
        assert set(grads) == set(PARAMS)


def test_backprop_buffers_are_reused_but_gradient_returns_copies(batch100):
    x, t = batch100
    net = TwoLayerNet(784, 20, 10, seed=0)
    _, first = net.loss_and_gradient(x, t)
    kept = first["W1"].copy()
    _, second = net.loss_and_gradient(x[:50], t[:50])
    assert second["W1"] is first["W1"]  # documented: the layers' own buffers, overwritten
    assert not np.array_equal(first["W1"], kept)
    kept = net.gradient(x[:50], t[:50])
    net.gradient(x[50:], t[50:])
    assert not np.array_equal(kept["W1"], net.gradient(x[50:], t[50:])["W1"])
    assert kept["W1"] is not net.layers["Affine1"].dW
    # the first layer's input is the data: no one needs its gradient, so none is computed
    assert net.layers["Affine1"].dx is None


def test_the_layer_stack_holds_the_nets_own_parameters():
    """As in the book, the layers work on the arrays in params, so a layer used directly
    computes with the net's weights."""
    net = TwoLayerNet(6, 4, 3, seed=0)
    assert net.layers["Affine1"].W is net.params["W1"] and net.layers["Affine1"].b is \
        net.params["b1"]
    assert net.layers["Affine2"].W is net.params["W2"] and net.layers["Affine2"].b is \
        net.params["b2"]


def test_numerical_gradient_steps_by_1e_4_by_default(batch100):
    net = TwoLayerNet(784, 5, 10, seed=0)
    x, t = batch100[0][:3], batch100[1][:3]
    default = net.numerical_gradient(x, t)
    for name, grad in net.numerical_gradient(x, t, h=1e-4).items():
        np.testing.assert_array_equal(default[name], grad)  # the same computation, bit for bit


def test_backprop_sees_replaced_parameters(batch100):
    x, t = batch100
    net = TwoLayerNet(784, 20, 10, seed=0)
    net.gradient(x, t)
    other = TwoLayerNet(784, 20, 10, init="he", seed=1)
    net.params = {k: v.copy() for k, v in other.params.items()}
    for name in PARAMS:
        np.testing.assert_array_equal(net.gradient(x, t)[name], other.gradient(x, t)[name])


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_float32_backprop_and_autograd_stay_float32_and_match_float64(batch100, activation):
    x, t = batch100
    net64 = TwoLayerNet(784, 50, 10, seed=0, activation=activation)
    net32 = TwoLayerNet(784, 50, 10, seed=0, dtype=np.float32, activation=activation)
    x32 = x.astype(np.float32)
    g64 = net64.gradient(x, t)
    # float32 rounds the parameters (not the pixels: k / 255 in float32 either way), then
    # every step; worst case, the sums over 100 samples and ~150 lit pixels: ~1e-5 relative
    # (tolerances.two_layer_bounds, for the sigmoid net)
    in32 = two_layer_bounds(net64.params, x, t, dtype=np.float32, params_rounded=True)
    in64 = two_layer_bounds(net64.params, x, t)
    for method in ("backprop", "autograd"):
        loss32, g32 = net32.loss_and_gradient(x32, t, method)
        for name in PARAMS:
            assert g32[name].dtype == np.float32
        if activation == "sigmoid":
            assert loss32 == pytest.approx(net64.loss(x, t), rel=0, abs=in32.loss + in64.loss)
            for name in PARAMS:
                assert relative_error(g32[name], g64[name]) <= relative_error_bound(
                    in32.gradient[name] + in64.gradient[name], g32[name], g64[name])
            continue
        # ReLU: float32 rounding (6e-8) grown by sums of up to 784 terms, ~1e-6 relative at
        # worst for the loss; two more products for the gradients (a pre-activation within
        # float32 rounding of 0, which could flip the mask, is ~1e-6 likely per unit here)
        assert loss32 == pytest.approx(net64.loss(x, t), rel=1e-6, abs=0)
        for name in PARAMS:
            assert relative_error(g32[name], g64[name]) < 1e-5


def test_backprop_matches_the_analytic_gradient_of_the_output_layer(batch100):
    x, t = batch100
    net = TwoLayerNet(784, 50, 10, seed=0)
    p = net.params
    hidden = 1 / (1 + np.exp(-(x @ p["W1"] + p["b1"])))
    delta = (softmax(hidden @ p["W2"] + p["b2"]) - np.eye(10)[t]) / len(t)
    grads = net.gradient(x, t)
    # the same arithmetic in another arrangement: each side within two_layer_bounds of exact
    bounds = two_layer_bounds(p, x, t)
    assert_within(grads["W2"], hidden.T @ delta, 2 * bounds.gradient["W2"])
    assert_within(grads["b2"], delta.sum(axis=0), 2 * bounds.gradient["b2"])
    assert net.loss(x, t) == pytest.approx(softmax_cross_entropy(hidden @ p["W2"] + p["b2"], t),
                                           rel=0, abs=2 * bounds.loss)


@pytest.mark.parametrize("name", PARAMS)
def test_vectorized_numerical_matches_backprop_on_real_mnist(full_net_gradients, full_net_bounds,
                                                             name):
    """The issue's pin on the full 784-50-10 net with the book's init, batch 100, float64:
    1e-7, above the bound of h^2 truncation and both paths' rounding."""
    g, b = full_net_gradients, full_net_bounds
    bound = relative_error_bound(b.gradient[name] + b.difference[name] + b.vectorized[name],
                                 g["numerical"][name], g["backprop"][name])
    assert relative_error(g["numerical"][name], g["backprop"][name]) <= bound <= 1e-7


@pytest.mark.parametrize("name", PARAMS)
def test_autograd_matches_backprop_on_real_mnist(full_net_gradients, full_net_bounds, name):
    """The pin 1e-12 is above both paths' worst-case rounding (sums over 784 pixels, 50 hidden
    units, 10 classes and 100 samples); they agree to ~1e-16."""
    g, b = full_net_gradients, full_net_bounds
    bound = relative_error_bound(2 * b.gradient[name], g["autograd"][name], g["backprop"][name])
    assert relative_error(g["autograd"][name], g["backprop"][name]) <= bound <= 1e-12


@pytest.mark.parametrize("name", PARAMS)
def test_five_point_stencil_matches_backprop_to_1e_11(batch100, full_net_gradients, name):
    """The issue's pin for order 4 on the full sigmoid net (h = 3e-4, the gradcheck default)."""
    net = TwoLayerNet(784, 50, 10, seed=0)
    five_point = net.numerical_gradient(*batch100, h=3e-4, order=4)
    # truncation C h^4 plus the rounding of the stored step p + h (~ulp(p) / h relative) are
    # each ~1e-15 here (README); 1e-11 is the pin
    assert relative_error(five_point[name], full_net_gradients["backprop"][name]) <= 1e-11
    # the central difference misses by its h^2 truncation, ~1e-9 (the sigmoid's and softmax's
    # third derivatives): order 4 is a real improvement, not a tie
    assert relative_error(full_net_gradients["numerical"][name],
                          full_net_gradients["backprop"][name]) >= 1e-10


@pytest.mark.parametrize("name", PARAMS)
def test_relu_autograd_matches_backprop_on_real_mnist(relu_net, name):
    _, g, _ = relu_net
    # the same products summed in other orders: a few ulp (~1e-16 relative); 1e-13 is the pin
    assert relative_error(g["autograd"][name], g["backprop"][name]) <= 1e-13


def test_relu_vectorized_matches_backprop_except_at_the_counted_kinks(batch100, relu_net):
    net, g, numerical = relu_net
    # a +-1e-4 step moves some sample's hidden pre-activation across 0 for these entries only;
    # W2 and b2 move no hidden unit
    assert numerical.kink_counts == {"W1": 379, "b1": 3, "W2": 0, "b2": 0}
    for name in PARAMS:
        keep = ~numerical.kinks[name]
        # elsewhere the loss is smooth along the step: h^2 truncation of the softmax's curvature,
        # ~1e-9 relative at h = 1e-4; 1e-8 is the pin
        assert relative_error(numerical.grads[name][keep], g["backprop"][name][keep]) <= 1e-8
    for name in ("W1", "b1"):  # with the kinks the quotients are no derivatives: ~1e-3 off
        assert relative_error(numerical.grads[name], g["backprop"][name]) >= 1e-5
    by_net = net.gradient(*batch100, method="numerical")  # the net passes its activation on
    for name in PARAMS:
        np.testing.assert_array_equal(by_net[name], numerical.grads[name])


def test_a_few_backprop_steps_lower_the_loss(mnist):
    (x_train, t_train), _ = mnist
    x, t = x_train[:1000], t_train[:1000]
    net = TwoLayerNet(784, 50, 10, dtype=np.float32, seed=0)
    before = net.loss(x, t)
    for step in range(60):
        rows = slice(100 * (step % 10), 100 * (step % 10) + 100)
        _, grads = net.loss_and_gradient(x[rows], t[rows])
        for name in PARAMS:
            net.params[name] -= 0.5 * grads[name]
    assert net.loss(x, t) < before - 0.1


# --- save / load ---


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_save_load_round_trip(tmp_path, dtype):
    net = TwoLayerNet(12, 5, 3, init="he", dtype=dtype, seed=3)
    path = tmp_path / "model.npz"
    net.save(path, metadata={"epochs": 3, "note": "round trip"})
    loaded = TwoLayerNet.load(path)
    assert (loaded.input_size, loaded.hidden_size, loaded.output_size) == (12, 5, 3)
    assert loaded.dtype == np.dtype(dtype)
    assert loaded.metadata == {"epochs": 3, "note": "round trip"}
    for name in PARAMS:
        np.testing.assert_array_equal(loaded.params[name], net.params[name])
        assert loaded.params[name].dtype == np.dtype(dtype)
    x = np.random.default_rng(0).random((4, 12))
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary left


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_relu_net_is_saved_as_version_2_and_loads_as_relu(tmp_path, dtype):
    net = TwoLayerNet(12, 5, 3, init="he", dtype=dtype, seed=3, activation="relu")
    path = tmp_path / "relu.npz"
    net.save(path)
    with np.load(path) as archive:
        assert int(archive["format_version"]) == 2 and str(archive["activation"]) == "relu"
    loaded = TwoLayerNet.load(path)
    assert loaded.activation == "relu" and list(loaded.layers)[1] == "Relu1"
    x = np.random.default_rng(0).standard_normal((6, 12))
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    x, t = x.astype(dtype), np.arange(6) % 3
    for name, g in loaded.gradient(x, t).items():
        np.testing.assert_array_equal(g, net.gradient(x, t)[name])


def test_a_sigmoid_net_is_still_saved_as_version_1(tmp_path):
    """An older reader (version 1 only) then reads it right, and refuses a ReLU file rather
    than running it as sigmoid."""
    TwoLayerNet(6, 4, 3, seed=0).save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as archive:
        assert int(archive["format_version"]) == 1 and str(archive["activation"]) == "sigmoid"


def test_a_file_written_before_the_activation_was_recorded_loads_as_sigmoid(tmp_path):
    net = TwoLayerNet(6, 4, 3, init="he", seed=5)
    path = tmp_path / "old.npz"
    with open(path, "wb") as handle:  # exactly the members the old save wrote
        np.savez(handle, format_version=np.array(1, dtype=np.int64),
                 sizes=np.array([6, 4, 3], dtype=np.int64), dtype=np.array("float64"),
                 metadata=np.array('{"epochs": 2}'), **net.params)
    loaded = TwoLayerNet.load(path)
    assert loaded.activation == "sigmoid" and loaded.metadata == {"epochs": 2}
    x = np.random.default_rng(1).random((4, 6))
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))


def test_save_uses_the_nets_metadata_by_default(tmp_path):
    net = TwoLayerNet(4, 3, 2, seed=0)
    net.metadata = {"source": "test"}
    net.save(tmp_path / "m.npz")
    assert TwoLayerNet.load(tmp_path / "m.npz").metadata == {"source": "test"}


def saved_arrays(tmp_path) -> dict[str, np.ndarray]:
    path = tmp_path / "good.npz"
    TwoLayerNet(6, 4, 3, seed=0).save(path, metadata={"a": 1})
    with np.load(path) as archive:
        return {k: archive[k] for k in archive.files}


def write(tmp_path, arrays: dict[str, np.ndarray], allow_pickle: bool = False):
    path = tmp_path / "bad.npz"
    with open(path, "wb") as handle:
        np.savez(handle, allow_pickle=allow_pickle, **arrays)
    return path


@pytest.mark.parametrize(("change", "message"), [
    (lambda a: a.pop("W2"), "missing W2"),
    (lambda a: a.update(W1=np.zeros((6, 5))), r"W1 has shape \(6, 5\), expected \(6, 4\)"),
    (lambda a: a.update(b1=np.zeros(4, dtype=np.float32)), "b1 has dtype float32"),
    (lambda a: a["W2"].__setitem__((0, 0), np.nan), "W2 contains NaN"),
    (lambda a: a.update(b2=np.array([1.0, np.inf, 0.0])), "b2 contains NaN or infinite"),
    (lambda a: a.update(format_version=np.array(3)),
     "format version 3 is not supported \\(this version reads 1 to 2\\)"),
    (lambda a: [a.pop(key) for key in ("b1", "W2")], "missing b1, W2;"),
    (lambda a: a.update(format_version=np.array(2)) or a.pop("activation"),
     ": missing activation;"),
    (lambda a: a.update(activation=np.array("tanh")),
     "activation 'tanh' is not one of sigmoid, relu;"),
    (lambda a: a.update(activation=np.array(["relu"])), "activation"),
    (lambda a: a.update(format_version=np.array("1")), "format_version is not an integer"),
    (lambda a: a.update(sizes=np.array([6, 4])), "sizes must be 3 positive integers"),
    (lambda a: a.update(sizes=np.array([6, 0, 3])),
     r"sizes must be 3 positive integers, got array\(\[6, 0, 3\]\)"),
    (lambda a: a.update(dtype=np.array("float16")), "'float16' is not float32 or float64"),
    (lambda a: a.update(metadata=np.array("{not json")), "metadata is not valid JSON"),
    (lambda a: a.update(metadata=np.array("[1, 2]")), ": metadata is not a JSON object;"),
])
def test_load_names_what_is_wrong(tmp_path, change, message):
    arrays = saved_arrays(tmp_path)
    change(arrays)
    path = write(tmp_path, arrays)
    with pytest.raises(CheckpointError, match=message) as info:
        TwoLayerNet.load(path)
    assert str(path) in str(info.value)


def test_a_net_of_size_1_everywhere_round_trips(tmp_path):
    net = TwoLayerNet(1, 1, 1, seed=0)
    net.save(tmp_path / "m.npz")
    loaded = TwoLayerNet.load(tmp_path / "m.npz")
    for name in PARAMS:
        np.testing.assert_array_equal(loaded.params[name], net.params[name])


def test_load_of_a_single_npy_says_it_is_not_a_saved_model(tmp_path):
    path = tmp_path / "w.npz"
    path.write_bytes(_npy(np.zeros(3)))
    with pytest.raises(CheckpointError) as info:
        TwoLayerNet.load(path)
    assert str(info.value) == f"{path}: holds a single .npy array, not a saved model (.npz)"


def test_save_logs_what_it_wrote(tmp_path, caplog):
    with caplog.at_level("INFO", logger="mnist_twolayer.network"):
        TwoLayerNet(4, 3, 2, seed=0).save(tmp_path / "m.npz")
    assert caplog.messages == [f"saved TwoLayerNet(4, 3, 2, activation='sigmoid', "
                               f"dtype=float64) to {tmp_path / 'm.npz'}"]


def test_load_refuses_object_arrays(tmp_path):
    arrays = saved_arrays(tmp_path)
    arrays["metadata"] = np.array([{"a": 1}], dtype=object)
    path = write(tmp_path, arrays, allow_pickle=True)
    with pytest.raises(CheckpointError, match="'metadata' cannot be read without pickle"):
        TwoLayerNet.load(path)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.0])
def test_load_of_a_truncated_file(tmp_path, keep):
    good = tmp_path / "good.npz"
    TwoLayerNet(30, 20, 10, seed=0).save(good)
    data = good.read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="cut.npz: not a readable .npz"):
        TwoLayerNet.load(path)


def test_load_of_a_missing_file_and_of_a_damaged_member(tmp_path):
    with pytest.raises(CheckpointError, match="nothing.npz: no such file"):
        TwoLayerNet.load(tmp_path / "nothing.npz")
    # a valid zip whose W1 member is not an .npy
    path = tmp_path / "odd.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for key, value in saved_arrays(tmp_path).items():
            archive.writestr(f"{key}.npy", b"garbage" if key == "W1" else _npy(value))
    with pytest.raises(CheckpointError, match="odd.npz"):
        TwoLayerNet.load(path)


def _npy(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_save_refuses_metadata_json_cannot_hold(tmp_path):
    net = TwoLayerNet(4, 3, 2, seed=0)
    net.metadata = {"note": "kept"}
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        net.save(tmp_path / "m.npz", metadata={"loss": float("nan")})
    assert list(tmp_path.iterdir()) == []  # no file, not even a temporary one
    assert net.metadata == {"note": "kept"}
    net.save(tmp_path / "m.npz")  # its own metadata is still what a save writes
    assert TwoLayerNet.load(tmp_path / "m.npz").metadata == {"note": "kept"}
