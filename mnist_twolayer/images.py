"""Read a user's picture safely, and turn it into the 28x28 input an MNIST net takes.

Any PNG, JPEG, BMP, GIF or WebP file (or its bytes, from the digit pad) is decoded with its
declared size checked before anything is allocated, in any mode, upright by its EXIF
orientation, as grey levels in [0, 1]; :mod:`preparation` then makes the MNIST digit of it.
``image_to_mnist`` is the one way from a picture to an input: ``predict``, the digit pad and
the out-of-distribution set all come through it. Every failure is an ``ImageError`` whose
one-line message names the picture.
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
from .fileio import atomic_path
from .preparation import FIELD, prepare_digit

__all__ = ["FIELD", "image_to_mnist", "load_image", "load_image_bytes", "prepare_digit",
           "save_prepared"]

MAX_FILE_BYTES = 50 * 1024 * 1024
"""Largest file accepted on disk; a digit photo is a few MB at most."""

MAX_PIXELS = 50_000_000
"""Largest image accepted (width x height), checked from the header before any decoding, so a
small file that claims a huge canvas (a decompression bomb) never allocates it."""

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
"""Formats Pillow may try, where its build has them (WEBP needs libwebp). A short list keeps
plugins that call external programs (EPS) or parse rarely used containers out of reach of an
untrusted file."""

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


def save_prepared(digit: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write a prepared digit (784 or 28x28 values in [0, 1]) as an 8-bit greyscale PNG,
    atomically, so a user sees what the network saw."""
    pixels = np.round(np.clip(np.asarray(digit, dtype=np.float64), 0.0, 1.0) * 255)
    image = Image.fromarray(pixels.astype(np.uint8).reshape(FIELD, FIELD))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)
