"""IDX reading and writing."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest

from mtlkit.data import DataError, read_idx, sha256_of_payload, write_idx

ARRAYS = [
    np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
    np.array([-128, -1, 0, 127], dtype=np.int8),
    np.arange(-6, 6, dtype=np.int16).reshape(3, 4),
    np.array([[-(2**31), 2**31 - 1]], dtype=np.int32),
    np.linspace(-1, 1, 10, dtype=np.float32).reshape(2, 5, 1),
    np.array([np.pi, -np.e], dtype=np.float64),
    np.zeros((0, 28, 28), dtype=np.uint8),
]


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{a.shape}")
def test_round_trip(tmp_path, array, compress):
    path = tmp_path / "a.idx"
    write_idx(path, array, compress=compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    back = read_idx(path)
    assert back.dtype == array.dtype.newbyteorder("=")
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_big_endian_layout_and_header(tmp_path):
    path = tmp_path / "a.idx"
    write_idx(path, np.array([[1, 258]], dtype=np.int16), compress=False)
    assert path.read_bytes() == bytes([0, 0, 0x0B, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 1, 2])


def test_payload_digest_ignores_compression(tmp_path):
    array = np.arange(100, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", array, compress=True)
    write_idx(tmp_path / "a", array, compress=False)
    plain_digest = hashlib.sha256((tmp_path / "a").read_bytes()).hexdigest()
    assert sha256_of_payload(tmp_path / "a.gz") == sha256_of_payload(tmp_path / "a") == plain_digest


def test_written_gzip_is_deterministic(tmp_path):
    array = np.arange(100, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", array, compress=True)
    write_idx(tmp_path / "b.gz", array, compress=True)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_unsupported_dtype_refused_and_nothing_written(tmp_path):
    with pytest.raises(DataError, match="dtype uint16"):
        write_idx(tmp_path / "a", np.zeros(3, dtype=np.uint16), compress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "two zero bytes"),
        (b"", "empty file"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "data-type code 0x07"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "truncated: the header declares 2 dimensions"),
        (
            b"\x00\x00\x08\x01\x00\x00\x00\x04\x01\x02",
            "truncated: expected 4 bytes of data, found 2 ",
        ),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "1 unexpected bytes"),
    ],
)
@pytest.mark.parametrize("compress", [True, False])
def test_malformed_files_name_the_file(tmp_path, data, message, compress):
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DataError, match=message) as caught:
        read_idx(path)
    assert str(path) in str(caught.value)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "a.gz"
    write_idx(path, np.arange(1000, dtype=np.int32), compress=True)
    path.write_bytes(path.read_bytes()[:-20])
    for load in (read_idx, sha256_of_payload):
        with pytest.raises(DataError, match="corrupt or truncated gzip") as caught:
            load(path)
        assert str(path) in str(caught.value)


def test_corrupt_gzip_stream(tmp_path):
    path = tmp_path / "a.gz"
    data = bytearray(gzip.compress(bytes(range(256)) * 40))
    data[20:30] = b"\xff" * 10
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=str(path)):
        read_idx(path)
