"""PyTorch as an outside reference: torch.autograd in float64 must agree with backprop.

Skipped when torch is not installed; CI installs it, so there it runs.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import mnist_batch
from tolerances import TORCH_ULP, relative_error_bound, two_layer_bounds

torch = pytest.importorskip("torch")

from mnist_twolayer.gradcheck import relative_error, run_gradcheck, torch_gradient  # noqa: E402
from mnist_twolayer.network import PARAM_NAMES as PARAMS  # noqa: E402
from mnist_twolayer.network import TwoLayerNet  # noqa: E402


@pytest.fixture(scope="module")
def batch100(mnist):
    return mnist_batch(mnist, 100, 1)


@pytest.mark.parametrize("init", ["normal", "xavier"])
def test_backprop_matches_torch_on_real_mnist(batch100, init):
    x, t = batch100
    net = TwoLayerNet(784, 50, 10, init=init, seed=0)
    ours = net.gradient(x, t)
    theirs = torch_gradient(net.params, x, t)
    # each path's worst-case rounding (NumPy's kernels, torch's SLEEF ones), below the
    # README's 1e-12; they agree to ~1e-16
    ours_b = two_layer_bounds(net.params, x, t).gradient
    theirs_b = two_layer_bounds(net.params, x, t, ulp=TORCH_ULP).gradient
    for name in PARAMS:
        assert theirs[name].dtype == np.float64
        assert relative_error(ours[name], theirs[name]) <= relative_error_bound(
            ours_b[name] + theirs_b[name], ours[name], theirs[name]) <= 1e-12, name


@pytest.mark.parametrize("init", ["normal", "he"])
def test_relu_backprop_and_autograd_match_torch_on_real_mnist(batch100, init):
    x, t = batch100
    net = TwoLayerNet(784, 50, 10, init=init, seed=0, activation="relu")
    theirs = torch_gradient(net.params, x, t, "relu")
    assert (x @ net.params["W1"] <= 0).mean() > 0.2  # both sides of the kink are used
    for method in ("backprop", "autograd"):
        ours = net.gradient(x, t, method)
        for name in PARAMS:
            # float64, the same products summed in other orders: a few ulp (~1e-16 relative);
            # torch's relu backward is 0 at 0 as ours. 1e-13 is the pin
            assert relative_error(ours[name], theirs[name]) <= 1e-13, (method, name)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_loss_matches_torch(batch100, activation):
    x, t = batch100
    net = TwoLayerNet(784, 50, 10, init="he", seed=2, activation=activation)
    p = {k: torch.from_numpy(v) for k, v in net.params.items()}
    act = torch.relu if activation == "relu" else torch.sigmoid
    logits = act(torch.from_numpy(x) @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
    expected = torch.nn.functional.cross_entropy(logits, torch.from_numpy(t.astype(np.int64)))
    if activation == "relu":  # float64 sums in other orders and log-sum-exp: a few ulp
        assert net.loss(x, t) == pytest.approx(float(expected), rel=1e-14, abs=0)
        return
    bound = (two_layer_bounds(net.params, x, t).loss
             + two_layer_bounds(net.params, x, t, ulp=TORCH_ULP).loss)
    assert net.loss(x, t) == pytest.approx(float(expected), rel=0, abs=bound)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_float32_backprop_is_within_float32_rounding_of_torch(batch100, activation):
    x, t = batch100
    net = TwoLayerNet(784, 50, 10, dtype=np.float32, seed=0, activation=activation)
    ours = net.gradient(x.astype(np.float32), t)
    theirs = torch_gradient(net.params, x.astype(np.float32), t, activation)
    if activation == "relu":
        # float32 rounding grown by sums of up to 784 terms (tolerances.two_layer_bounds covers
        # the sigmoid net): ~1e-5 relative at worst
        for name in PARAMS:
            assert relative_error(ours[name], theirs[name]) <= 1e-5, name
        return
    # torch in float64 on the same float32 numbers; ours within float32's worst case (~1e-5)
    params = {k: v.astype(np.float64) for k, v in net.params.items()}
    ours_b = two_layer_bounds(params, x, t, dtype=np.float32).gradient
    theirs_b = two_layer_bounds(params, x, t, ulp=TORCH_ULP).gradient
    for name in PARAMS:
        assert relative_error(ours[name], theirs[name]) <= relative_error_bound(
            ours_b[name] + theirs_b[name], ours[name], theirs[name]), name


def test_gradcheck_includes_torch_when_installed(mnist):
    (x_train, t_train), _ = mnist
    result = run_gradcheck(x_train[:8], t_train[:8], hidden=7,
                           methods=["backprop", "torch"])
    assert "torch" in result.timings
    # the net run_gradcheck builds from seed 0 (its backprop gradient, bit for bit)
    net, x, t = TwoLayerNet(784, 7, 10, seed=0), x_train[:8].astype(np.float64), t_train[:8]
    ours = net.gradient(x, t)
    ours_b = two_layer_bounds(net.params, x, t).gradient
    theirs_b = two_layer_bounds(net.params, x, t, ulp=TORCH_ULP).gradient
    one_hot = run_gradcheck(x_train[:8], np.eye(10)[t_train[:8]], hidden=7,
                            methods=["backprop", "torch"])
    for name in PARAMS:
        np.testing.assert_array_equal(result.gradients["backprop"][name], ours[name])
        bound = relative_error_bound(ours_b[name] + theirs_b[name], ours[name],
                                     result.gradients["torch"][name])
        assert result.find("backprop", "torch", name).rel_error <= bound <= 1e-12
        assert one_hot.find("backprop", "torch", name).rel_error <= bound
    relu = run_gradcheck(x_train[:8], t_train[:8], hidden=7, activation="relu",
                         methods=["backprop", "torch"])
    for name in PARAMS:  # float64 sums in other orders, a few ulp; the ReLU pin
        assert relu.find("backprop", "torch", name).rel_error <= 1e-13
