"""The IDX reader is strict: every malformed header or payload is a DatasetError naming the
file, decided before any large allocation."""

from __future__ import annotations

import gzip
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mnist_twolayer import idx
from mnist_twolayer.errors import DatasetError

DATA = Path(__file__).resolve().parent.parent / "data" / "mnist"


def header(code: int, *dims: int) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]),
    shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
))
def test_encode_parse_round_trip(array: np.ndarray) -> None:
    back = idx.parse_idx(idx.encode_idx(array))
    assert back.dtype == array.dtype and back.dtype.isnative
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)


# The format's definition, independent of our encoder: magic 00 00 TYPE RANK, big-endian
# uint32 dimensions, then big-endian elements in C order. The bytes below are written by hand.
HAND_WRITTEN = [
    # uint8 2x3
    (b"\x00\x00\x08\x02" b"\x00\x00\x00\x02\x00\x00\x00\x03" b"\x00\x01\x7f\x80\xfe\xff",
     np.array([[0, 1, 127], [128, 254, 255]], dtype=np.uint8)),
    # int8 (4,): -1 is 0xff, -128 is 0x80
    (b"\x00\x00\x09\x01" b"\x00\x00\x00\x04" b"\xff\x80\x7f\x00",
     np.array([-1, -128, 127, 0], dtype=np.int8)),
    # int16 (3,): 1, -2, 300 = 0x012c
    (b"\x00\x00\x0b\x01" b"\x00\x00\x00\x03" b"\x00\x01" b"\xff\xfe" b"\x01\x2c",
     np.array([1, -2, 300], dtype=np.int16)),
    # int32 (2,): 16909060 = 0x01020304, -2
    (b"\x00\x00\x0c\x01" b"\x00\x00\x00\x02" b"\x01\x02\x03\x04" b"\xff\xff\xff\xfe",
     np.array([16909060, -2], dtype=np.int32)),
    # float32 (2,): 1.5 = 0x3fc00000, -2.0 = 0xc0000000
    (b"\x00\x00\x0d\x01" b"\x00\x00\x00\x02" b"\x3f\xc0\x00\x00" b"\xc0\x00\x00\x00",
     np.array([1.5, -2.0], dtype=np.float32)),
    # float64 1x2: 0.1 = 0x3fb999999999999a, -3.0 = 0xc008000000000000
    (b"\x00\x00\x0e\x02" b"\x00\x00\x00\x01\x00\x00\x00\x02"
     b"\x3f\xb9\x99\x99\x99\x99\x99\x9a" b"\xc0\x08\x00\x00\x00\x00\x00\x00",
     np.array([[0.1, -3.0]], dtype=np.float64)),
]


@pytest.mark.parametrize(("data", "expected"), HAND_WRITTEN,
                         ids=[str(array.dtype) for _, array in HAND_WRITTEN])
def test_bytes_written_by_hand_parse_to_the_values_the_format_defines(data, expected) -> None:
    array = idx.parse_idx(data)
    assert array.dtype == expected.dtype and array.dtype.isnative
    assert array.shape == expected.shape
    np.testing.assert_array_equal(array, expected)
    assert idx.encode_idx(expected) == data  # and our encoder writes exactly those bytes
    assert idx.encode_idx(expected.astype(expected.dtype.newbyteorder(">"))) == data


def test_write_read_gz_and_plain(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.int32).reshape(2, 3, 4) - 7
    idx.write_idx(tmp_path / "a.gz", array)
    idx.write_idx(tmp_path / "a", array)
    assert (tmp_path / "a.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress((tmp_path / "a.gz").read_bytes()) == (tmp_path / "a").read_bytes()
    for name in ("a.gz", "a"):
        np.testing.assert_array_equal(idx.read_idx(tmp_path / name), array)


def test_write_is_deterministic(tmp_path: Path) -> None:
    array = np.arange(10, dtype=np.uint8)
    idx.write_idx(tmp_path / "a.gz", array)
    idx.write_idx(tmp_path / "b.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()
    # RFC 1952: magic 1f 8b, method 8 (deflate), flags 0 (so no file name), mtime 0
    assert (tmp_path / "a.gz").read_bytes()[:8] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00"


def test_real_mnist_header_and_first_labels() -> None:
    labels = idx.read_idx(DATA / "train-labels-idx1-ubyte.gz")
    assert labels.shape == (60000,) and labels.dtype == np.uint8
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    images = idx.read_idx(DATA / "t10k-images-idx3-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert images.flags.writeable


def test_encode_refuses_what_idx_cannot_hold() -> None:
    with pytest.raises(ValueError, match="IDX cannot store dtype uint16"):
        idx.encode_idx(np.zeros(3, dtype=np.uint16))
    with pytest.raises(ValueError, match="IDX needs 1 to 255 dimensions, got 0"):
        idx.encode_idx(np.array(3, dtype=np.uint8))
    # an empty array may claim any size: 2^32 does not fit a header's dimension, 2^32 - 1 does
    with pytest.raises(ValueError, match=r"^IDX dimensions must fit in 32 bits, got "
                                         r"\(4294967296, 0\)$"):
        idx.encode_idx(np.empty((1 << 32, 0), dtype=np.uint8))
    assert idx.encode_idx(np.empty((0xFFFFFFFF, 0), dtype=np.uint8)) == (
        b"\x00\x00\x08\x02\xff\xff\xff\xff\x00\x00\x00\x00")


@pytest.mark.parametrize(("data", "message"), [
    (b"", "f: truncated IDX file (0 bytes, the magic alone is 4)"),
    (b"\x00\x00\x08", "f: truncated IDX file (3 bytes, the magic alone is 4)"),
    (b"\x1f\x8b\x08\x00" + bytes(12), "f: not an IDX file (magic starts 1f 8b, expected 00 00)"),
    (b"\x00\x01\x08\x01" + bytes(8), "f: not an IDX file (magic starts 00 01, expected 00 00)"),
    (header(0x0A, 2) + b"ab", "f: unknown IDX element type 0x0a"),
    (b"\x00\x00\x08\x00", "f: IDX rank is 0; expected at least one dimension"),
    (header(0x08, 60000, 28, 28)[:10],
     "f: truncated IDX header (rank 3 needs 16 bytes, file has 10)"),
    (header(0x08, 3, 4) + bytes(11),
     "f: truncated IDX data: header says 3 x 4 uint8 = 12 bytes, file has 11"),
    (header(0x08, 3, 4) + bytes(13),
     "f: 1 trailing bytes after the IDX data (3 x 4 uint8 = 12 bytes)"),
    (header(0x0C, 5) + bytes(5 * 4 - 1),
     "f: truncated IDX data: header says 5 int32 = 20 bytes, file has 19"),
    # lying dimensions: the right byte count for 10 labels, a header claiming 100
    (header(0x08, 100) + bytes(10),
     "f: truncated IDX data: header says 100 uint8 = 100 bytes, file has 10"),
])
def test_malformed_bytes(data: bytes, message: str) -> None:
    with pytest.raises(DatasetError) as info:
        idx.parse_idx(data, "f")
    assert str(info.value) == message


def test_errors_without_a_source_name_say_bytes() -> None:
    with pytest.raises(DatasetError, match=r"^<bytes>: truncated IDX file \(0 bytes"):
        idx.parse_idx(b"")


def test_single_byte_arrays_are_views_of_the_payload() -> None:
    """No copy of a 47 MB image file: uint8 and int8 arrays share the payload's memory."""
    for code in (0x08, 0x09):
        payload = bytearray(header(code, 2, 3) + bytes(range(6)))
        array = idx.parse_idx(payload)
        assert np.shares_memory(array, np.frombuffer(payload, dtype=np.uint8))
        payload[-1] = 42
        assert array[1, 2] == 42
    wider = bytearray(header(0x0B, 3) + bytes(6))
    assert not np.shares_memory(idx.parse_idx(wider), np.frombuffer(wider, dtype=np.uint8))


def test_huge_claimed_size_allocates_nothing() -> None:
    data = header(0x0E, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF) + bytes(64)
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match=r"header says 4294967295 x 4294967295 x "
                                               r"4294967295 float64 = \d+ bytes, file has 64"):
            idx.parse_idx(data, "huge")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_parse_or_raise_dataset_error(data: bytes) -> None:
    try:
        array = idx.parse_idx(data, "fuzz")
    except DatasetError as exc:
        assert str(exc).startswith("fuzz: ")
    else:
        assert array.nbytes == len(data) - 4 - 4 * array.ndim


def test_truncated_gz_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    idx.write_idx(path, np.arange(1000, dtype=np.int32))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DatasetError) as info:
        idx.read_idx(path)
    assert str(info.value) == (f"{path}: damaged gzip file (Compressed file ended before the "
                               "end-of-stream marker was reached)")


def test_gz_with_bad_crc(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    idx.write_idx(path, np.arange(100, dtype=np.uint8))
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"labels\.gz: damaged gzip file \(CRC check failed"):
        idx.read_idx(path)


def test_idx_inside_valid_gz_still_checked(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(header(0x08, 5) + bytes(6)))
    with pytest.raises(DatasetError) as info:
        idx.read_idx(path)
    assert str(info.value) == f"{path}: 1 trailing bytes after the IDX data (5 uint8 = 5 bytes)"


def test_payload_size_cap(tmp_path: Path) -> None:
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(bytes(5 << 20)))
    with pytest.raises(DatasetError) as info:
        idx.read_payload(path, max_bytes=1 << 20)
    assert str(info.value) == f"{path}: payload is larger than 1048576 bytes; refusing to read it"


def test_payload_size_cap_stops_decompressing_there(tmp_path: Path) -> None:
    """A bomb is refused once max_bytes are out, before the rest is inflated: this one's
    damaged trailer, 5 MB in, is never reached. A payload of exactly max_bytes is accepted,
    and read_idx passes its limit on."""
    path = tmp_path / "bomb.gz"
    data = bytearray(gzip.compress(bytes(5 << 20)))
    data[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError) as info:
        idx.read_payload(path, max_bytes=1 << 20)
    assert str(info.value) == f"{path}: payload is larger than 1048576 bytes; refusing to read it"
    exact = tmp_path / "exact.gz"
    idx.write_idx(exact, np.zeros(100, dtype=np.uint8))  # 4 + 4 + 100 bytes
    assert len(idx.read_payload(exact, max_bytes=108)) == 108
    with pytest.raises(DatasetError, match=r"payload is larger than 107 bytes"):
        idx.read_idx(exact, max_bytes=107)


def test_a_folder_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        idx.read_idx(tmp_path)
    assert str(info.value) == f"{tmp_path}: cannot read (Is a directory)"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nope.gz: file not found"):
        idx.read_idx(tmp_path / "nope.gz")
