"""Reading and writing IDX files (the MNIST file format), plain or gzip-compressed.

An IDX file is a 4-byte magic number (two zero bytes, a data-type code, the number of
dimensions), one big-endian uint32 per dimension, then the array in C order, big-endian.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from mtlkit.atomic import atomic_output
from mtlkit.data.errors import DataError
from mtlkit.data.paths import PathLike

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_FIX = "Delete the file and fetch it again."


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed or plain, told apart by its first bytes).

    Returns:
        The array with its declared shape, in native byte order, writable.

    Raises:
        DataError: the file is not IDX, is truncated or has trailing bytes, or its gzip
            stream is corrupt.
    """
    path = Path(path)
    payload = _read_payload(path)
    dtype, shape, offset = _parse_header(payload, path)
    expected = math.prod(shape) * dtype.itemsize
    found = len(payload) - offset
    if found < expected:
        raise DataError(
            f"{path}: truncated: expected {expected} bytes of data, found {found} "
            f"(declared shape {shape}). {_FIX}"
        )
    if found > expected:
        raise DataError(
            f"{path}: {found - expected} unexpected bytes after the {expected} bytes of data "
            f"declared for shape {shape}. {_FIX}"
        )
    array = np.frombuffer(payload, dtype=dtype, count=math.prod(shape), offset=offset)
    return array.astype(dtype.newbyteorder("=")).reshape(shape)


def write_idx(path: PathLike, array: np.ndarray, compress: bool) -> None:
    """Write ``array`` as an IDX file, gzip-compressed if ``compress``, atomically.

    Supported dtypes: uint8, int8, int16, int32, float32, float64. The gzip header carries no
    timestamp, so equal arrays give byte-identical files.

    Raises:
        DataError: the dtype or shape cannot be stored in IDX.
    """
    path = Path(path)
    array = np.asarray(array)
    code = _dtype_code(array.dtype, path)
    if array.ndim > 255 or any(size >= 2**32 for size in array.shape):
        raise DataError(
            f"{path}: cannot store shape {array.shape} in IDX: at most 255 dimensions of fewer "
            "than 2**32 entries each. Reshape the array before writing it."
        )
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=_CODE_TO_DTYPE[code]).tobytes()
    if compress:
        data = gzip.compress(data, compresslevel=6, mtime=0)
    with atomic_output(path) as temporary:
        temporary.write_bytes(data)


def sha256_of_payload(path: PathLike) -> str:
    """The sha256 hex digest of the file's decompressed bytes (of the bytes, if plain).

    A gzip-compressed file and its plain copy therefore have the same digest.

    Raises:
        DataError: the gzip stream is corrupt or truncated.
    """
    path = Path(path)
    digest = hashlib.sha256()
    with _open_payload(path) as stream:
        try:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
        except (OSError, EOFError, zlib.error) as error:
            raise _corrupt_gzip(path, error) from error
    return digest.hexdigest()


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as stream:
        return stream.read(2) == _GZIP_MAGIC


def _open_payload(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if _is_gzip(path) else path.open("rb")


def _read_payload(path: Path) -> bytes:
    data = path.read_bytes()
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise _corrupt_gzip(path, error) from error


def _corrupt_gzip(path: Path, error: BaseException) -> DataError:
    return DataError(f"{path}: corrupt or truncated gzip data ({error}). {_FIX}")


def _parse_header(payload: bytes, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    if len(payload) < 4 or payload[0] != 0 or payload[1] != 0:
        raise DataError(
            f"{path}: not an IDX file: the magic number must start with two zero bytes, found "
            f"{payload[:4].hex(' ') or 'an empty file'}. {_FIX}"
        )
    code, ndim = payload[2], payload[3]
    if code not in _CODE_TO_DTYPE:
        known = ", ".join(f"0x{c:02X}" for c in _CODE_TO_DTYPE)
        raise DataError(f"{path}: unknown IDX data-type code 0x{code:02X} (known: {known}). {_FIX}")
    offset = 4 + 4 * ndim
    if len(payload) < offset:
        raise DataError(
            f"{path}: truncated: the header declares {ndim} dimensions ({offset} header bytes) "
            f"but the file has {len(payload)} bytes. {_FIX}"
        )
    shape = struct.unpack(f">{ndim}I", payload[4:offset])
    return _CODE_TO_DTYPE[code], shape, offset


def _dtype_code(dtype: np.dtype, path: Path) -> int:
    for code, idx_dtype in _CODE_TO_DTYPE.items():
        if dtype.kind == idx_dtype.kind and dtype.itemsize == idx_dtype.itemsize:
            return code
    raise DataError(
        f"{path}: cannot store dtype {dtype} in IDX (supported: uint8, int8, int16, int32, "
        "float32, float64). Convert the array with .astype(...) first."
    )
