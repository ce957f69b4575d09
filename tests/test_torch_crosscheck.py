"""PyTorch as an outside reference: torch.autograd in float64 must agree with backprop.

Skipped when torch is not installed; CI installs it, so there it runs.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import mnist_batch

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
    for name in PARAMS:
        assert theirs[name].dtype == np.float64
        assert relative_error(ours[name], theirs[name]) <= 1e-12, name


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
    assert net.loss(x, t) == pytest.approx(float(expected), rel=1e-14)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_float32_backprop_is_within_float32_rounding_of_torch(batch100, activation):
    x, t = batch100
    net = TwoLayerNet(784, 50, 10, dtype=np.float32, seed=0, activation=activation)
    ours = net.gradient(x.astype(np.float32), t)
    theirs = torch_gradient(net.params, x.astype(np.float32), t, activation)
    for name in PARAMS:
        assert relative_error(ours[name], theirs[name]) <= 1e-5, name


def test_gradcheck_includes_torch_when_installed(mnist):
    (x_train, t_train), _ = mnist
    result = run_gradcheck(x_train[:8], t_train[:8], hidden=7,
                           methods=["backprop", "torch"])
    assert "torch" in result.timings
    for name in PARAMS:
        assert result.find("backprop", "torch", name).rel_error <= 1e-12
    one_hot = run_gradcheck(x_train[:8], np.eye(10)[t_train[:8]], hidden=7,
                            methods=["backprop", "torch"])
    for name in PARAMS:
        assert one_hot.find("backprop", "torch", name).rel_error <= 1e-12
    relu = run_gradcheck(x_train[:8], t_train[:8], hidden=7, activation="relu",
                         methods=["backprop", "torch"])
    for name in PARAMS:  # float64 sums in other orders, a few ulp; the ReLU pin
        assert relu.find("backprop", "torch", name).rel_error <= 1e-13
