"""data.py: what a run trains on (split, subset, standardization) and the model export."""

from __future__ import annotations

import numpy as np

from mnist_twolayer.config import config_from_preset
from mnist_twolayer.data import export_model, prepare_data
from mnist_twolayer.network import TwoLayerNet


def test_export_folds_standardization_into_the_first_layer():
    rng = np.random.default_rng(3)
    net = TwoLayerNet(784, 20, 10, init="xavier", seed=1)
    x = rng.random((50, 784))
    mean, std = 0.13, 0.31
    exported = export_model(net, mean, std)
    np.testing.assert_allclose(exported.predict(x), net.predict((x - mean) / std),
                               rtol=1e-10, atol=1e-12)


def test_standardized_data_keeps_the_raw_test_images(mnist):
    """The saved model is measured on the test images evaluate loads, not on a rebuilt copy:
    (x - mean) / std * std + mean is not x again in float32."""
    data = prepare_data(config_from_preset("default"))
    raw = mnist[1][0]
    np.testing.assert_array_equal(data.x_test_raw, raw)
    assert abs(float(data.x_train.mean(dtype=np.float64))) < 1e-6
    rebuilt = data.x_test * np.float32(data.std) + np.float32(data.mean)
    assert not np.array_equal(rebuilt, raw)
