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

Speed: a batch's distortion should cost little next to the net's matrix products. The work is a
few passes over arrays of the batch's size, so the passes write into arrays kept from the last
batch (a :class:`Scratch`): allocating fresh ones of this size each time costs more in page
faults than the arithmetic itself on a VM.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from numpy.typing import DTypeLike

AUGMENTATIONS = ("none", "shift", "affine", "elastic", "affine+elastic")


class Scratch:
    """Named arrays reused from call to call while their shape and dtype stay the same. Not for
    two threads at once."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: DTypeLike,
            fill: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
        """Array ``name``; a new one when the shape or dtype changed, then given to ``fill``
        (for a constant written out once, e.g. each image's start)."""
        array = self._arrays.get(name)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = self._arrays[name] = np.empty(shape, dtype)
            if fill is not None:
                fill(array)
        return array


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
    # not an init field, so dataclasses.replace gives the new limits a scratch of their own
    # (it keeps arrays written for these limits, e.g. the elastic origin)
    scratch: Scratch = field(default_factory=Scratch, init=False, compare=False, repr=False)

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
        """The rows of ``x`` (flattened square images), each distorted by its own draw, as a new
        array (``x`` itself when the kind is none).

        Draw order (part of what makes a run reproducible): affine parameters, then the
        elastic fields, each for the whole batch.
        """
        if self.kind == "none":
            return x
        if self.kind == "shift":
            return shift_images(x, int(self.max_shift), rng, background)
        n, side, scratch = len(x), _side(x), self.scratch
        dtype = x.dtype
        rows, cols = pixel_grid(side, dtype)
        affine_params = draw_affine(n, rng, self.max_rotation, self.max_scale, self.max_shear,
                                    self.max_shift) if self.affine else None
        # positions are computed where the bilinear sampling wants them, in the framed image
        # (FRAME pixels added), unless an affine map still has to move them
        frame = 0 if self.affine else FRAME
        if self.elastic:
            smoothed = _smoothed_uniforms(n, side, self.elastic_alpha, self.elastic_sigma, rng,
                                          dtype, scratch)
            base = _elastic_origin(side, float(self.elastic_sigma), float(self.elastic_alpha),
                                   dtype, frame)
            # written out per image once (a pass reading a broadcast array takes half again as
            # long), in this instance's scratch rather than a module cache: a call on 60,000
            # images would otherwise pin its copy for the life of the process
            origin = scratch.get("origin", (2, n, side, side), dtype,
                                 fill=lambda array: np.copyto(array, base[:, None]))
            rows, cols = np.subtract(smoothed, origin, out=smoothed)  # in place, one pass
        if affine_params is not None:
            rows, cols = affine_sources(rows, cols, *affine_params, side=side, scratch=scratch,
                                        plus=FRAME)
        return _sample_framed(x.reshape(n, side, side), rows, cols, background,
                              scratch).reshape(n, -1)


def _side(x: np.ndarray) -> int:
    side = math.isqrt(x.shape[1]) if x.ndim == 2 else 0
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
    """(rows, cols): the row and column index of every pixel, each (side, side), read-only."""
    rows, cols = np.indices((side, side)).astype(dtype)
    rows.flags.writeable = cols.flags.writeable = False
    return rows, cols


# --- affine ---


def draw_affine(n: int, rng: np.random.Generator, max_rotation: float, max_scale: float,
                max_shear: float, max_shift: float) -> tuple[np.ndarray, ...]:
    """Per image: rotation and shear angles (radians), scale factor, shift in y and x (pixels),
    each uniform within its limit; drawn as one (5, n) float64 array in that order."""
    low = np.array([-max_rotation, 1 - max_scale, -max_shear, -max_shift, -max_shift])
    high = np.array([max_rotation, 1 + max_scale, max_shear, max_shift, max_shift])
    u = rng.random((5, n))
    angle, scale, shear, shift_y, shift_x = low[:, None] + (high - low)[:, None] * u
    return np.radians(angle), scale, np.radians(shear), shift_y, shift_x


def affine_sources(rows: np.ndarray, cols: np.ndarray, angle: np.ndarray, scale: np.ndarray,
                   shear: np.ndarray, shift_y: np.ndarray, shift_x: np.ndarray, *, side: int,
                   scratch: Scratch | None = None, plus: float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Where each output pixel at (rows, cols) (each (side, side) or (n, side, side)) reads its
    input when image i is slanted by ``shear[i]`` (x += tan(shear) * height above the centre),
    scaled by ``scale[i]`` and rotated counterclockwise by ``angle[i]`` about the image centre,
    then moved by (shift_y[i], shift_x[i]): the inverse of that map, applied to the output
    pixels. Returns (n, side, side) arrays (``scratch``'s, when given), with ``plus`` added."""
    scratch = scratch or Scratch()
    n, centre, dtype = len(angle), (side - 1) / 2, rows.dtype
    cos, sin, tan = np.cos(angle), np.sin(angle), np.tan(shear)
    # forward, on (dx, dy) from the centre, y pointing down: rotate(shear(scale * d)), with
    # rotate = [[cos, sin], [-sin, cos]] and shear = [[1, -tan], [0, 1]]. Its inverse is
    # (1 / scale) * [[1, tan], [0, 1]] @ [[cos, -sin], [sin, cos]], here per image as
    # src_x = a dx + b dy + e and src_y = c dx + d dy + f, with (dx, dy) from the centre
    # before the shift: the shift and the centre are folded into e and f.
    a, b = (cos + tan * sin) / scale, (tan * cos - sin) / scale
    c, d = sin / scale, cos / scale
    e = centre + plus - a * (centre + shift_x) - b * (centre + shift_y)
    f = centre + plus - c * (centre + shift_x) - d * (centre + shift_y)
    a, b, c, d, e, f = (v.astype(dtype)[:, None, None] for v in (a, b, c, d, e, f))
    shape = (n, side, side)
    src_x, src_y = scratch.get("src_x", shape, dtype), scratch.get("src_y", shape, dtype)
    term = scratch.get("term", shape, dtype)
    np.multiply(a, cols, out=src_x)
    src_x += np.multiply(b, rows, out=term)
    src_x += e
    np.multiply(c, cols, out=src_y)
    src_y += np.multiply(d, rows, out=term)
    src_y += f
    return src_y, src_x


# --- elastic ---


@lru_cache(maxsize=8)
def gaussian_matrix(side: int, sigma: float) -> np.ndarray:
    """The (side, side) matrix G with (G @ F @ G.T) = F convolved with a normalized Gaussian of
    width ``sigma``, zero outside the image (float64, read-only; G is symmetric)."""
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

    The uniforms are 16-bit: U = (k + 1/2) / 2**16 * 2 - 1 for k from 0 .. 65535 (the Gaussian
    averages hundreds of them, so finer levels would change nothing but cost twice the random
    bits), cut from the bit generator's raw words (:func:`_levels`). They fill one array K of
    shape (2, n, side, side) in order: the field of image i along y is K[0, i], along x
    K[1, i].
    """
    dtype = np.dtype(dtype)
    smoothed = _smoothed_uniforms(n, side, alpha, sigma, rng, dtype, Scratch())
    offset = _smoothing(side, float(sigma), float(alpha), dtype)[2]
    return smoothed[0] - offset, smoothed[1] - offset


def _smoothed_uniforms(n: int, side: int, alpha: float, sigma: float, rng: np.random.Generator,
                       dtype: np.dtype, scratch: Scratch) -> np.ndarray:
    """left @ K @ right for the uniforms K of :func:`elastic_displacements`: its fields plus
    the offset of :func:`_smoothing`, as ``scratch``'s (2, n, side, side) array."""
    left, right, _ = _smoothing(side, float(sigma), float(alpha), dtype)
    shape = (2 * n, side, side)
    count = math.prod(shape)
    k = _levels(rng, count).reshape(shape)
    uniform = scratch.get("uniform", shape, dtype)
    np.copyto(uniform, k)
    # left @ F, one small product per field, then all the batch's rows times right at once:
    # the result comes out (2, n, side, side), no transposed copy (two products of the whole
    # batch, G @ K then rows @ G, would leave each field's rows strided across the batch)
    rows_smoothed = np.matmul(left, uniform, out=scratch.get("rows_smoothed", shape, dtype))
    smoothed = np.matmul(rows_smoothed.reshape(2 * n * side, side), right,
                         out=scratch.get("smoothed", (2 * n * side, side), dtype))
    return smoothed.reshape(2, n, side, side)


_WORDS_OF_64_BITS = (np.random.PCG64, np.random.PCG64DXSM, np.random.Philox, np.random.SFC64)


def _levels(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` uniform 16-bit levels. With a bit generator of 64-bit words (PCG64, the one
    ``default_rng`` makes, and the others above), its raw words cut four ways, least
    significant 16 bits first on every machine: the levels ``integers(0, 2**16,
    dtype=np.uint16)`` would take from the same words (when no half word is left over from an
    earlier draw), in one bulk copy instead of its loop, 1.8 times faster. Any other bit
    generator (MT19937's raw words are 32-bit) goes through ``integers``."""
    if not isinstance(rng.bit_generator, _WORDS_OF_64_BITS):
        return rng.integers(0, 1 << 16, size=count, dtype=np.uint16)
    words = rng.bit_generator.random_raw(-(-count // 4))
    return words.astype("<u8", copy=False).view("<u2")[:count]


@lru_cache(maxsize=8)
def _smoothing(side: int, sigma: float, alpha: float, dtype: np.dtype
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left, right, offset) with alpha G (2 (K + 1/2) / 2**16 - 1) G =
    left @ K @ right - offset: the scale and the centring of the 16-bit uniforms K folded into
    the small matrices, so the batch's arrays see one product each way and one subtraction."""
    g = gaussian_matrix(side, sigma)
    left = (alpha / 32768 * g).astype(dtype)
    offset = (alpha * (1 - 2.0**-16) * g @ np.ones((side, side)) @ g).astype(dtype)
    right = g.astype(dtype)
    for matrix in (left, right, offset):
        matrix.flags.writeable = False
    return left, right, offset


@lru_cache(maxsize=8)
def _elastic_origin(side: int, sigma: float, alpha: float, dtype: np.dtype, plus: int
                    ) -> np.ndarray:
    """What to subtract from an image's smoothed uniforms (2, side, side) to get positions
    (pixel + displacement + ``plus``) in one pass: [offset - rows - plus, offset - cols - plus]
    (read-only)."""
    offset = _smoothing(side, sigma, alpha, dtype)[2]
    origin = offset - np.stack(pixel_grid(side, dtype)) - dtype.type(plus)
    origin.flags.writeable = False
    return origin


# --- resampling ---


FRAME = 2
"""Background pixels around each image in the bilinear sampling: positions clipped to
[-1, side] then have all four neighbours inside the framed image."""


def sample_bilinear(images: np.ndarray, rows: np.ndarray, cols: np.ndarray, background: float
                    ) -> np.ndarray:
    """``images`` (n, side, side) read at the real-valued positions (rows, cols), each
    (n, height, width), by bilinear interpolation: four gathers and a weighted sum, as a new
    (n, height, width) array. Outside the image the value is ``background``, blending into the
    border pixels over the last pixel."""
    scratch, dtype = Scratch(), images.dtype
    shape = np.broadcast_shapes(rows.shape, cols.shape)
    r = np.add(rows, dtype.type(FRAME), out=scratch.get("rows", shape, dtype))
    c = np.add(cols, dtype.type(FRAME), out=scratch.get("cols", shape, dtype))
    return _sample_framed(images, r, c, background, scratch)


def _sample_framed(images: np.ndarray, r: np.ndarray, c: np.ndarray, background: float,
                   scratch: Scratch) -> np.ndarray:
    """:func:`sample_bilinear` at positions (r, c) in the framed image (FRAME added), which it
    overwrites."""
    n, side, _ = images.shape
    shape, dtype = r.shape, images.dtype
    width = side + 2 * FRAME
    framed = scratch.get("framed", (n, width, width), dtype)
    framed.fill(background)
    framed[:, FRAME:-FRAME, FRAME:-FRAME] = images
    # clipped to [-1, side] (plus the frame), positions are positive: converting to int
    # truncates, which is floor there
    np.clip(r, FRAME - 1, side + FRAME, out=r)
    np.clip(c, FRAME - 1, side + FRAME, out=c)
    r0, c0 = scratch.get("r0", shape, dtype), scratch.get("c0", shape, dtype)
    np.floor(r, out=r0)
    np.floor(c, out=c0)
    r -= r0  # now the fractions
    c -= c0
    # the flat index r0 * width + c0 + the image's start, summed in floating point where that
    # is exact (float32: up to 2**24, 16384 framed 28 x 28 images), converted once
    size = n * width * width
    if size > np.iinfo(np.int32).max:
        raise ValueError(f"{n} images of {side} x {side} are too many for one call: the flat "
                         f"indices must stay below 2**31")
    sums = r0 if size <= _exact_integers(dtype) else scratch.get("sums", shape, np.float64)
    np.multiply(r0, width, out=sums)
    sums += c0
    # each image's start, written out once per shape (a broadcast read is slower)
    sums += scratch.get("starts", shape, sums.dtype, fill=lambda array: np.copyto(
        array, (np.arange(n) * (width * width)).astype(sums.dtype)[:, None, None]))
    # through int32 (every index below 2**31: 8 GiB of framed float32 images): converting
    # float to int64 directly takes twice as long
    index32 = scratch.get("index32", shape, np.int32)
    np.copyto(index32, sums, casting="unsafe")
    index = scratch.get("index", shape, np.intp)
    np.copyto(index, index32)
    flat = framed.reshape(-1)
    top_left, top_right, bottom_left, bottom_right = (
        # the same indices into views that start one pixel right, one row down, or both; all
        # in range, so "wrap" never wraps: it is just the mode with the cheapest check
        np.take(flat[start:], index, out=scratch.get(name, shape, dtype), mode="wrap")
        for name, start in (("tl", 0), ("tr", 1), ("bl", width), ("br", width + 1)))
    top_right -= top_left  # top = top_left + fc (top_right - top_left), likewise bottom
    top_right *= c
    top_right += top_left
    bottom_right -= bottom_left
    bottom_right *= c
    bottom_right += bottom_left
    bottom_right -= top_right  # out = top + fr (bottom - top)
    bottom_right *= r
    return np.add(bottom_right, top_right)


def _exact_integers(dtype: np.dtype) -> int:
    """Integers up to this are exact in ``dtype`` (2**24 in float32, 2**53 in float64)."""
    return 2 ** (np.finfo(dtype).nmant + 1)


