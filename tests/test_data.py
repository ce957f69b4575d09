"""data.py: what a run trains on (split, subset, standardization) and the model export."""

from __future__ import annotations

import numpy as np
from tolerances import EPS32, gamma, numpy_rel, sigmoid_rel

from mnist_twolayer.config import config_from_preset
from mnist_twolayer.data import export_model, prepare_data
from mnist_twolayer.network import TwoLayerNet


def test_export_folds_standardization_into_the_first_layer():
    rng = np.random.default_rng(3)
    net = TwoLayerNet(784, 20, 10, init="xavier", seed=1)
    x = rng.random((50, 784))
    mean, std = 0.13, 0.31
    exported = export_model(net, mean, std)
    # layer 1 either way, x @ (W1 / std) + (b1 - mean / std sum(W1)) or ((x - mean) / std) @ W1
    # + b1, rounds <= 788 times terms summing to (|x| + mean) @ |W1| / std + |b1|; then
    # sigmoid' <= 1/4 and sigmoid's own error, 21 roundings in layer 2 (|hidden| <= 1); softmax
    # moves each p by <= 2 p max |d logit| and rounds by 2 exp + gamma_10, on each side
    p = net.params
    hidden_error = gamma(788) * ((np.abs(x) + mean) @ np.abs(p["W1"]) / std + np.abs(p["b1"]))
    logit_error = ((hidden_error / 4 + sigmoid_rel(numpy_rel("exp"))) @ np.abs(p["W2"])
                   + gamma(21) * (np.abs(p["W2"]).sum(axis=0) + np.abs(p["b2"])))
    np.testing.assert_allclose(exported.predict(x), net.predict((x - mean) / std),
                               rtol=4 * np.max(logit_error) + 2 * (2 * numpy_rel("exp")
                                                                   + gamma(10)))


def test_standardized_data_keeps_the_raw_test_images(mnist):
    """The saved model is measured on the test images evaluate loads, not on a rebuilt copy:
    (x - mean) / std * std + mean is not x again in float32."""
    data = prepare_data(config_from_preset("default"))
    raw = mnist[1][0]
    np.testing.assert_array_equal(data.x_test_raw, raw)
    # float32: mean and std rounded (u mean / std), each pixel's subtraction and division
    # (2 u of its standardized value <= m); the float64 mean of them all
    m = float(np.abs(data.x_train).max())
    assert abs(float(data.x_train.mean(dtype=np.float64))) <= (
        EPS32 / 2 * (data.mean / data.std + 2 * m) + gamma(data.x_train.size) * m)
    rebuilt = data.x_test * np.float32(data.std) + np.float32(data.mean)
    assert not np.array_equal(rebuilt, raw)
