"""The arrays a run trains on: the validation split, the training subset, the standardization,
and the export that folds the standardization back into the model.

Inputs may be standardized for training (a sigmoid net learns several times faster on centred
inputs); the exported model folds that shift and scale into W1 and b1, so it takes the book's
[0, 1] images like any other model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import TrainConfig, seed_streams
from .datasets import load_mnist
from .network import PARAM_NAMES, TwoLayerNet

EVAL_CHUNK = 10000
"""Rows per forward pass when a whole split is measured: bounds the hidden activations' memory."""


@dataclass
class Data:
    """Arrays in the training space (standardized if asked), and how they got there."""

    x_train: np.ndarray
    t_train: np.ndarray
    x_val: np.ndarray | None
    t_val: np.ndarray | None
    x_test: np.ndarray
    t_test: np.ndarray
    x_test_raw: np.ndarray  # the [0, 1] test images, as evaluate gives them to a saved model
    mean: float = 0.0
    std: float = 1.0


def prepare_data(config: TrainConfig, data_dir: str | Path | None = None) -> Data:
    """Load the dataset, split off validation, take the training subset, standardize."""
    config.validate()  # before the data loads: a wrong setting should not wait for it
    dtype = np.dtype(config.dtype)
    (x_train, t_train), (x_test, t_test) = load_mnist(
        normalize=True, flatten=True, dataset=config.dataset, data_dir=data_dir, dtype=dtype)
    config.validate(len(x_train))
    x_val = t_val = None
    if config.val_size or config.train_size:
        order = seed_streams(config.seed).split.permutation(len(x_train))
        val_idx, train_idx = order[:config.val_size], order[config.val_size:]
        if config.train_size:
            train_idx = train_idx[:config.train_size]
        if config.val_size:
            x_val, t_val = x_train[val_idx], t_train[val_idx]
        x_train, t_train = x_train[train_idx], t_train[train_idx]
    # (x - mean) / std cannot be undone exactly in float32, so the saved model is measured on
    # a copy of the test images taken before standardizing
    data = Data(x_train, t_train, x_val, t_val, x_test, t_test,
                x_test.copy() if config.standardize else x_test)
    if config.standardize:
        data.mean, data.std = mean_and_std(x_train)
        for x in (data.x_train, data.x_val, data.x_test):
            if x is not None:
                x -= dtype.type(data.mean)
                x /= dtype.type(data.std)
    return data


def mean_and_std(x: np.ndarray, rows: int = EVAL_CHUNK) -> tuple[float, float]:
    """Mean and standard deviation of all of ``x`` in float64, a chunk of rows at a time
    (``x.std(dtype=np.float64)`` would hold a float64 copy of the whole training set)."""
    mean = float(x.mean(dtype=np.float64))
    squares = sum(float(np.square(np.subtract(x[i:i + rows], mean, dtype=np.float64)).sum())
                  for i in range(0, len(x), rows))
    return mean, math.sqrt(squares / x.size) or 1.0


def export_model(net: TwoLayerNet, mean: float, std: float) -> TwoLayerNet:
    """A copy of ``net`` that takes raw [0, 1] inputs: the standardization folded into layer 1.

    ((x - mean) / std) @ W1 + b1  ==  x @ (W1 / std) + (b1 - (mean / std) * W1.sum(axis=0))
    """
    exported = TwoLayerNet(net.input_size, net.hidden_size, net.output_size,
                           dtype=net.dtype, seed=0, activation=net.activation)
    for key in PARAM_NAMES:
        exported.params[key][...] = net.params[key]
    if mean != 0.0 or std != 1.0:
        w1 = net.params["W1"].astype(np.float64)
        exported.params["W1"][...] = w1 / std
        exported.params["b1"][...] = net.params["b1"] - (mean / std) * w1.sum(axis=0)
    return exported
