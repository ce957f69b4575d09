"""Strict reader and writer for the IDX format that MNIST-layout datasets use.

An IDX file is a 4-byte magic (two zero bytes, an element-type code, the rank), ``rank``
big-endian uint32 dimensions, then the elements in C order. The reader checks every header
field against the real length of the payload *before* building an array, so a lying header
costs nothing and every damaged file becomes a :class:`DatasetError` that names it.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .fileio import atomic_path

#: IDX element-type codes and their (big-endian) NumPy dtypes.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}

#: Refuse to decompress more than this many bytes (a gzip bomb stops here, not in swap).
MAX_PAYLOAD_BYTES = 1 << 30

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


def _describe(dims: tuple[int, ...], dtype: np.dtype) -> str:
    shape = " x ".join(str(d) for d in dims) or "scalar"
    return f"{shape} {dtype.newbyteorder('=').name}"


def parse_idx(data: bytes | bytearray | memoryview, source: str = "<bytes>") -> np.ndarray:
    """Parse an uncompressed IDX payload into an array in native byte order.

    Single-byte arrays are views of ``data`` (writable when ``data`` is a bytearray), so no
    copy of a large payload is made. ``source`` names the file in error messages.
    """
    view = memoryview(data).cast("B")
    size = len(view)
    if size < 4:
        raise DatasetError(f"{source}: truncated IDX file ({size} bytes, the magic alone is 4)")
    zero1, zero2, code, rank = view[0], view[1], view[2], view[3]
    if zero1 or zero2:
        raise DatasetError(
            f"{source}: not an IDX file (magic starts {zero1:02x} {zero2:02x}, expected 00 00)"
        )
    if code not in IDX_DTYPES:
        raise DatasetError(f"{source}: unknown IDX element type 0x{code:02x}")
    if rank == 0:
        raise DatasetError(f"{source}: IDX rank is 0; expected at least one dimension")
    header = 4 + 4 * rank
    if size < header:
        raise DatasetError(
            f"{source}: truncated IDX header (rank {rank} needs {header} bytes, file has {size})"
        )
    dims = struct.unpack(f">{rank}I", view[4:header])
    dtype = IDX_DTYPES[code]
    count = 1
    for dim in dims:
        count *= dim  # Python ints: a huge claimed size cannot overflow
    expected = count * dtype.itemsize
    actual = size - header
    if actual < expected:
        raise DatasetError(
            f"{source}: truncated IDX data: header says {_describe(dims, dtype)} = {expected} "
            f"bytes, file has {actual}"
        )
    if actual > expected:
        raise DatasetError(
            f"{source}: {actual - expected} trailing bytes after the IDX data "
            f"({_describe(dims, dtype)} = {expected} bytes)"
        )
    array = np.frombuffer(view, dtype=dtype, count=count, offset=header).reshape(dims)
    if dtype.itemsize > 1:
        array = array.astype(dtype.newbyteorder("="))
    return array


def read_payload(path: str | os.PathLike[str], max_bytes: int = MAX_PAYLOAD_BYTES) -> bytearray:
    """Return the bytes of an IDX file, decompressed when it is gzip (detected by its magic).

    A damaged gzip stream (bad CRC, cut short, not gzip at all) is a DatasetError naming the
    file; so is a payload larger than ``max_bytes``.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            data = bytearray()
            while chunk := stream.read(_CHUNK):
                data += chunk
                if len(data) > max_bytes:
                    raise DatasetError(
                        f"{path}: payload is larger than {max_bytes} bytes; refusing to read it"
                    )
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: damaged gzip file ({exc})") from None
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return data


def read_idx(path: str | os.PathLike[str], max_bytes: int = MAX_PAYLOAD_BYTES) -> np.ndarray:
    """Read an IDX file (plain or gzip) into a writable array in native byte order."""
    return parse_idx(read_payload(path, max_bytes), str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """Return the IDX bytes of ``array`` (uint8, int8, int16, int32, float32 or float64)."""
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODES:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got {array.ndim}")
    if any(dim >= 1 << 32 for dim in array.shape):
        raise ValueError(f"IDX dimensions must fit in 32 bits, got {array.shape}")
    code = _CODES[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as IDX to ``path`` atomically, gzip-compressed when it ends in ``.gz``.

    The gzip header carries no name or time, so the same array always gives the same bytes.
    """
    data = encode_idx(array)
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".gz":
            with open(tmp, "wb") as raw, gzip.GzipFile(
                filename="", mode="wb", fileobj=raw, mtime=0
            ) as out:
                out.write(data)
        else:
            tmp.write_bytes(data)
