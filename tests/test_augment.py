"""augment.py: distortions of training digits."""

from __future__ import annotations

import numpy as np

from mnist_twolayer.augment import shift_images


def test_shift_images_moves_each_digit_within_bounds():
    image = np.zeros((1, 784), dtype=np.float32)
    image[0, 14 * 28 + 14] = 1.0
    rng = np.random.default_rng(0)
    shifted = shift_images(np.repeat(image, 200, axis=0), 2, rng, background=0.0)
    rows, cols = np.divmod(shifted.argmax(axis=1), 28)
    assert shifted.sum(axis=1).tolist() == [1.0] * 200
    assert set(rows.tolist()) == set(range(12, 17)) and set(cols.tolist()) == set(range(12, 17))
