"""Turn a user's picture of a digit into an MNIST-like 28x28 input for ``predict``.

MNIST digits are white ink on black, fitted into a 20x20 box (aspect kept, anti-aliased) and
placed in a 28x28 field so that the intensity-weighted centre of mass sits at pixel (14, 14).
A network trained on MNIST only recognises digits prepared the same way, so this module repeats
those steps for any PNG or JPEG, and refuses files it cannot read safely with one clear line.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, NoDigitError

MAX_FILE_BYTES = 50 * 1024 * 1024
"""Largest file accepted on disk; a digit photo is a few MB at most."""

MAX_PIXELS = 50_000_000
"""Largest image accepted (width x height), checked from the header before any decoding, so a
small file that claims a huge canvas (a decompression bomb) never allocates it."""

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
"""Formats Pillow may try, where its build has them (WEBP needs libwebp). A short list keeps
plugins that call external programs (EPS) or parse rarely used containers out of reach of an
untrusted file."""

FIELD = 28
BOX = 20
INK_THRESHOLD = 0.1
"""Share of the ink range above the background that counts as ink when cropping."""
MIN_CONTRAST = 0.1
"""An image whose darkest and lightest parts differ by less than this holds no digit."""


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as a 2-D float32 luminance array in [0, 1] (0 black, 1 white).

    Any mode works: transparency is composited on white (a transparent background is paper),
    16-bit images keep their full range, palette and 1-bit images go through their palette.
    The EXIF orientation is applied, so a phone photo is upright. Every failure (missing,
    empty, too large, not an image, truncated, decompression bomb) is an ``ImageError`` whose
    one-line message starts with the file name.
    """
    name = str(path)
    file = Path(path)
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot read the file ({exc.strerror})") from None
    if file.is_dir():
        raise ImageError(f"{name}: is a directory, not an image file")
    if size == 0:
        raise ImageError(f"{name}: empty file (0 bytes), not an image")
    if size > MAX_FILE_BYTES:
        raise ImageError(f"{name}: file is {size / 2**20:.1f} MB, more than the "
                         f"{MAX_FILE_BYTES // 2**20} MB allowed for an image")
    return _decode(file, name)


def load_image_bytes(data: bytes, name: str) -> np.ndarray:
    """:func:`load_image` for an image that is already in memory (an upload to the digit pad):
    the same size, format and decompression-bomb checks, messages starting with ``name``."""
    if not data:
        raise ImageError(f"{name}: empty (0 bytes), not an image")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{name}: {len(data) / 2**20:.1f} MB, more than the "
                         f"{MAX_FILE_BYTES // 2**20} MB allowed for an image")
    return _decode(io.BytesIO(data), name)


def _decode(file: Path | BinaryIO, name: str) -> np.ndarray:
    """Decode an image whose size is known to be acceptable, refusing bombs before decoding."""
    with warnings.catch_warnings():
        # Pillow warns (rather than fails) about some oddities; none of that may reach the
        # user's terminal, and its decompression-bomb warning must become a refusal.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(file, formats=_available_formats()) as im:
                width, height = im.size
                if width * height > MAX_PIXELS:
                    raise ImageError(f"{name}: image is {width}x{height} pixels "
                                     f"({width * height / 1e6:.0f} MP), more than the "
                                     f"{MAX_PIXELS // 10**6} MP allowed")
                im.load()
                return _luminance(ImageOps.exif_transpose(im))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(f"{name}: image claims more than {MAX_PIXELS // 10**6} MP "
                             "(a decompression bomb?); refusing to decode it") from None
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not an image (expected PNG or JPEG)") from None
        except PermissionError as exc:
            raise ImageError(f"{name}: cannot read the file ({exc.strerror})") from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, struct.error):
            # Pillow's plugins signal damaged data with any of these.
            raise ImageError(f"{name}: the image data is truncated or damaged") from None


def _available_formats() -> list[str]:
    Image.init()  # registers the plugins Pillow was built with
    return [name for name in FORMATS if name in Image.OPEN]


def _luminance(im: Image.Image) -> np.ndarray:
    """Grey level in [0, 1] of a decoded image of any mode, transparency shown on white."""
    if im.mode.startswith("I;16") or im.mode == "I":
        # 16-bit greyscale: Pillow's own conversion to "L" clips instead of scaling.
        return (np.asarray(im, dtype=np.float64) / 65535.0).clip(0.0, 1.0).astype(np.float32)
    if im.mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    if im.mode != "L":
        im = im.convert("L")
    return np.asarray(im, dtype=np.float32) / np.float32(255.0)


def prepare_digit(img: np.ndarray) -> np.ndarray:
    """Prepare a greyscale picture of one digit as MNIST did: (28, 28) float32 in [0, 1].

    ``img`` is 2-D, float in [0, 1] or an unsigned integer type over its full range. A light
    background (judged from the border pixels) is inverted to white-on-black; the background
    level is subtracted and the ink stretched to full range; the image is cropped to the ink,
    scaled to fit 20x20 keeping its aspect ratio, and pasted in 28x28 with its centre of mass
    at (14, 14). Raises ``ImageError`` when there is no ink at all.
    """
    gray = _as_unit_float(img)
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    if np.median(border) > 0.5:
        gray = 1.0 - gray
        border = 1.0 - border
    background = float(np.median(border))
    peak = float(gray.max())
    if peak - background < MIN_CONTRAST:
        raise ImageError("no digit found: the image is blank (no ink on the background)")
    ink = np.clip((gray - background) / (peak - background), 0.0, 1.0)
    ink[ink < INK_THRESHOLD] = 0.0
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]

    digit = _fit_box(ink, BOX)
    h, w = digit.shape
    grid_y, grid_x = np.indices(digit.shape)
    mass = digit.sum()
    cy, cx = (grid_y * digit).sum() / mass, (grid_x * digit).sum() / mass
    # Shift by whole pixels as MNIST did, but never push ink off the 28x28 field.
    top = int(np.clip(round(FIELD / 2 - cy), 0, FIELD - h))
    left = int(np.clip(round(FIELD / 2 - cx), 0, FIELD - w))
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    field[top:top + h, left:left + w] = digit
    return field


def _as_unit_float(img: np.ndarray) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise ValueError(f"prepare_digit needs a 2-D greyscale image, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("prepare_digit got NaN or infinite pixel values")
    return np.clip(arr, 0.0, 1.0)


def _fit_box(ink: np.ndarray, box: int) -> np.ndarray:
    """Resize so the longer side is ``box`` pixels, anti-aliased, peak ink back at 1."""
    h, w = ink.shape
    scale = box / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resized = Image.fromarray(ink.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    digit = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    peak = digit.max()
    return digit / peak if peak > 0 else digit


def image_to_mnist(source: str | os.PathLike[str] | bytes, name: str | None = None
                   ) -> np.ndarray:
    """Read an image (a file, or its bytes) and prepare it as one flattened MNIST input:
    (784,) float32 in [0, 1]; ``reshape(28, 28)`` is the picture the network receives.

    ``predict`` and the digit pad both come through here, so they see the same input. Every
    problem is an ``ImageError`` starting with ``name`` (default: the path, or "image"); a
    readable picture with no digit in it is its subclass ``NoDigitError``.
    """
    if isinstance(source, bytes):
        name = name or "image"
        img = load_image_bytes(source, name)
    else:
        name = name or str(source)
        img = load_image(source)
    try:
        return prepare_digit(img).reshape(FIELD * FIELD)
    except ImageError as exc:
        raise NoDigitError(f"{name}: {exc}") from None
