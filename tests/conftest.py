"""Shared fixtures: the real MNIST once per session, and local HTTP servers for download tests."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_twolayer.datasets import load_mnist


@pytest.fixture(scope="session")
def mnist() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``load_mnist()`` defaults: float32 in [0, 1], (N, 784) images, uint8 labels.

    Shared by the whole session, so the arrays are read-only: an in-place edit fails loudly
    instead of leaking into other tests.
    """
    data = load_mnist()
    for split in data:
        for array in split:
            array.setflags(write=False)
    return data
