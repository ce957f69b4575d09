"""Distortions of training digits, drawn fresh for every batch so the net never sees the same
image twice: vectorized over the batch, every random number from the run's batch Generator so
an augmented run resumes bit for bit."""

from __future__ import annotations

import math

import numpy as np


def shift_images(x: np.ndarray, max_shift: int, rng: np.random.Generator,
                 background: float) -> np.ndarray:
    """Each square image (a row of ``x``) moved by its own random (dy, dx) in
    [-max_shift, max_shift]; pixels moved in from outside take the value ``background``."""
    n = len(x)
    side = int(math.isqrt(x.shape[1]))
    padded = np.pad(x.reshape(n, side, side), ((0, 0), (max_shift,) * 2, (max_shift,) * 2),
                    constant_values=background)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (side, side), axis=(1, 2))
    dy, dx = rng.integers(0, 2 * max_shift + 1, size=(2, n))
    return windows[np.arange(n), dy, dx].reshape(n, -1)
