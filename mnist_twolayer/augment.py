"""Distortions of training digits, drawn fresh for every batch so the net never sees the same
image twice: vectorized over the batch, every random number from the run's batch Generator so
an augmented run resumes bit for bit.

Three kinds, as in Simard, Steinkraus & Platt (2003), "Best practices for convolutional neural
networks applied to visual document analysis":

- **shift**: each digit moved by whole pixels (dy, dx), each uniform in [-max_shift, max_shift].
- **affine**: each digit rotated, scaled, sheared (slanted) and moved by amounts drawn
  uniformly within limits, then resampled by bilinear interpolation.
- **elastic**: a displacement field per digit, uniform in [-1, 1] at every pixel, smoothed by a
  Gaussian of width ``sigma`` and scaled by ``alpha`` (pixels), then resampled bilinearly.
  A small sigma gives random jitter, a large one an almost rigid shift; sigma 4 and alpha 34
  (the paper's values) bend strokes the way different hands do.

``affine+elastic`` composes the two into one resampling. The image is square (side x side,
flattened in rows); pixels brought in from outside the image take the ``background`` value.
Arithmetic stays in the images' dtype (float32 images give float32 results).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import DTypeLike

AUGMENTATIONS = ("none", "shift", "affine", "elastic", "affine+elastic")


@dataclass(frozen=True)
class Distortions:
    """One kind of distortion and its limits: angles in degrees, lengths in pixels, ``max_scale``
    as a fraction (0.15: between 85% and 115% of the size)."""

    kind: str = "none"
    max_shift: float = 2.0
    max_rotation: float = 15.0
    max_scale: float = 0.15
    max_shear: float = 15.0
    elastic_alpha: float = 34.0
    elastic_sigma: float = 4.0

    @property
    def affine(self) -> bool:
        return self.kind in ("affine", "affine+elastic")

    @property
    def elastic(self) -> bool:
        return self.kind in ("elastic", "affine+elastic")

    def describe(self) -> str:
        """The kind and its limits in words, e.g. for a figure's title."""
        parts = []
        if self.kind == "shift":
            parts.append(f"shift by whole pixels, up to ±{self.max_shift:g}")
        if self.affine:
            parts.append(f"affine: rotation ±{self.max_rotation:g}°, scale "
                         f"±{100 * self.max_scale:g}%, shear ±{self.max_shear:g}°, shift "
                         f"±{self.max_shift:g} px")
        if self.elastic:
            parts.append(f"elastic: alpha {self.elastic_alpha:g} px, sigma "
                         f"{self.elastic_sigma:g} px")
        return " + ".join(parts) or "none"

    def apply(self, x: np.ndarray, rng: np.random.Generator, background: float) -> np.ndarray:
        """The rows of ``x`` (flattened square images), each distorted by its own draw.

        Draw order (part of what makes a run reproducible): affine parameters, then the
        elastic fields, each for the whole batch.
        """
        if self.kind == "none":
            return x
        if self.kind == "shift":
            return shift_images(x, int(self.max_shift), rng, background)
        n, side = len(x), _side(x)
        dtype = x.dtype
        rows, cols = pixel_grid(side, dtype)
        rows, cols = np.broadcast_to(rows, (n, side, side)), np.broadcast_to(cols, (n, side, side))
        affine_params = draw_affine(n, rng, self.max_rotation, self.max_scale, self.max_shear,
                                    self.max_shift) if self.affine else None
        if self.elastic:
            dy, dx = elastic_displacements(n, side, self.elastic_alpha, self.elastic_sigma, rng,
                                           dtype)
            rows, cols = rows + dy, cols + dx
        if affine_params is not None:
            rows, cols = affine_sources(rows, cols, *affine_params, side=side)
        return sample_bilinear(x.reshape(n, side, side), rows, cols, background).reshape(n, -1)


def _side(x: np.ndarray) -> int:
    side = math.isqrt(x.shape[1])
    if x.ndim != 2 or side * side != x.shape[1]:
        raise ValueError(f"images must be (N, side * side), got {x.shape}")
    return side


def shift_images(x: np.ndarray, max_shift: int, rng: np.random.Generator,
                 background: float) -> np.ndarray:
    """Each square image (a row of ``x``) moved by its own random (dy, dx) in
    [-max_shift, max_shift]; pixels moved in from outside take the value ``background``.

    The draw is (2, n) integers in [0, 2 max_shift]: row 0 the offset of the window in y, row 1
    in x, so an image moves by (max_shift - draw) pixels down and right.
    """
    n = len(x)
    side = _side(x)
    padded = np.pad(x.reshape(n, side, side), ((0, 0), (max_shift,) * 2, (max_shift,) * 2),
                    constant_values=background)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (side, side), axis=(1, 2))
    dy, dx = rng.integers(0, 2 * max_shift + 1, size=(2, n))
    return windows[np.arange(n), dy, dx].reshape(n, -1)


@lru_cache(maxsize=8)
def pixel_grid(side: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols): the row and column index of every pixel, each (side, side)."""
    rows, cols = np.indices((side, side)).astype(dtype)
    rows.flags.writeable = cols.flags.writeable = False
    return rows, cols


# --- affine ---


def draw_affine(n: int, rng: np.random.Generator, max_rotation: float, max_scale: float,
                max_shear: float, max_shift: float) -> tuple[np.ndarray, ...]:
    """Per image: rotation and shear angles (radians), scale factor, shift in y and x (pixels),
    each uniform within its limit; drawn as one (5, n) array in that order."""
    low = np.array([-max_rotation, 1 - max_scale, -max_shear, -max_shift, -max_shift])
    high = np.array([max_rotation, 1 + max_scale, max_shear, max_shift, max_shift])
    u = rng.random((5, n))
    angle, scale, shear, shift_y, shift_x = low[:, None] + (high - low)[:, None] * u
    return np.radians(angle), scale, np.radians(shear), shift_y, shift_x


def affine_sources(rows: np.ndarray, cols: np.ndarray, angle: np.ndarray, scale: np.ndarray,
                   shear: np.ndarray, shift_y: np.ndarray, shift_x: np.ndarray, *,
                   side: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each output pixel (rows, cols), shape (n, side, side), reads its input when image
    i is slanted by ``shear[i]`` (x += tan(shear) * height above the centre), scaled by
    ``scale[i]`` and rotated counterclockwise by ``angle[i]`` about the image centre, then moved
    by (shift_y[i], shift_x[i]): the inverse of that map, applied to the output pixels."""
    centre = (side - 1) / 2
    cos, sin, tan = np.cos(angle), np.sin(angle), np.tan(shear)
    # forward, on (dx, dy) from the centre, y pointing down: rotate(shear(scale * d)), with
    # rotate = [[cos, sin], [-sin, cos]] and shear = [[1, -tan], [0, 1]]. Its inverse is
    # (1 / scale) * [[1, tan], [0, 1]] @ [[cos, -sin], [sin, cos]].
    inv = np.stack([np.stack([cos + tan * sin, tan * cos - sin]),
                    np.stack([sin, cos])]) / scale  # (2, 2, n): [out coord][in coord][image]
    dtype = rows.dtype
    inv, shift_y, shift_x = inv.astype(dtype), shift_y.astype(dtype), shift_x.astype(dtype)
    dx = cols - (dtype.type(centre) + shift_x[:, None, None])
    dy = rows - (dtype.type(centre) + shift_y[:, None, None])
    src_x = inv[0, 0, :, None, None] * dx + inv[0, 1, :, None, None] * dy + dtype.type(centre)
    src_y = inv[1, 0, :, None, None] * dx + inv[1, 1, :, None, None] * dy + dtype.type(centre)
    return src_y, src_x


# --- elastic ---


@lru_cache(maxsize=8)
def gaussian_matrix(side: int, sigma: float) -> np.ndarray:
    """The (side, side) matrix G with (G @ F @ G.T) = F convolved with a normalized Gaussian of
    width ``sigma``, zero outside the image (float64; G is symmetric)."""
    offsets = np.arange(-side + 1, side)
    kernel = np.exp(-0.5 * (np.arange(-4 * side, 4 * side + 1) / sigma) ** 2)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2) / kernel.sum()
    index = np.arange(side)
    matrix = weights[index[:, None] - index[None, :] + side - 1]
    matrix.flags.writeable = False
    return matrix


def elastic_displacements(n: int, side: int, alpha: float, sigma: float,
                          rng: np.random.Generator, dtype: DTypeLike = np.float32
                          ) -> tuple[np.ndarray, np.ndarray]:
    """(dy, dx), each (n, side, side): per image a field uniform in [-1, 1] at every pixel,
    smoothed by a Gaussian of width ``sigma`` and scaled by ``alpha``.

    The uniforms are 16-bit: U = (k + 1/2) / 2**16 * 2 - 1 for k drawn from 0 .. 65535 (the
    Gaussian averages hundreds of them, so finer levels would change nothing but cost twice the
    random bits). They are drawn as one array K of shape (side, n, 2, side): the field of image
    i along y is K[:, i, 0, :], along x K[:, i, 1, :]. That layout makes the smoothing
    G @ F @ G of every field two plain matrix products over the whole batch.
    """
    dtype = np.dtype(dtype)
    g = gaussian_matrix(side, float(sigma))
    # alpha G (2 (K + 1/2) / 2**16 - 1) G = (2 alpha / 2**16 G) K G - alpha (1 - 2**-16) G 1 G:
    # the scale and the centring folded into the small matrices, so the big arrays see one
    # product each way and one subtraction
    left = (alpha / 32768 * g).astype(dtype)
    offset = (alpha * (1 - 2.0**-16) * g @ np.ones((side, side)) @ g).astype(dtype)
    k = rng.integers(0, 1 << 16, size=(side, n * 2 * side), dtype=np.uint16)
    smoothed = (left @ k.astype(dtype)).reshape(side * n * 2, side) @ g.astype(dtype)
    smoothed = smoothed.reshape(side, n, 2, side).transpose(2, 1, 0, 3)  # (2, n, side, side)
    return smoothed[0] - offset, smoothed[1] - offset


# --- resampling ---


def sample_bilinear(images: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                    background: float) -> np.ndarray:
    """``images`` (n, side, side) read at the real-valued positions (rows, cols) (n, side, side)
    by bilinear interpolation: four gathers and a weighted sum. Outside the image the value is
    ``background``, blending into the border pixels over the last pixel."""
    n, side, _ = images.shape
    dtype = images.dtype
    # On a copy framed by 2 background pixels, positions clipped to [-1, side] have all four
    # neighbours inside, and are positive: converting to int truncates, which is floor there.
    pad = 2
    width = side + 2 * pad
    framed = np.full((n, width, width), background, dtype=dtype)
    framed[:, pad:-pad, pad:-pad] = images
    r = np.clip(rows + dtype.type(pad), pad - 1, side + pad, dtype=dtype)
    c = np.clip(cols + dtype.type(pad), pad - 1, side + pad, dtype=dtype)
    r0, c0 = r.astype(np.int32), c.astype(np.int32)
    fr = np.subtract(r, r0, dtype=dtype)
    fc = np.subtract(c, c0, dtype=dtype)
    r0 *= width
    r0 += c0
    r0 += (np.arange(n, dtype=np.int32) * (width * width))[:, None, None]
    flat = framed.ravel()
    top_left, top_right = flat.take(r0), flat.take(r0 + 1)
    r0 += width
    bottom_left, bottom_right = flat.take(r0), flat.take(r0 + 1)
    top = top_right - top_left
    top *= fc
    top += top_left
    bottom = bottom_right - bottom_left
    bottom *= fc
    bottom += bottom_left
    bottom -= top
    bottom *= fr
    bottom += top
    return bottom
