"""The IDX file format of MNIST and Fashion-MNIST, read without trusting its header.

An IDX file is a 4-byte magic number, one big-endian ``uint32`` per dimension,
then the values in row-major order::

    00 00 <type> <ndim> | dim_0 ... dim_{ndim-1} | payload

``type`` is one of the byte codes in :data:`IDX_DTYPES` (MNIST images and
labels use ``0x08``, unsigned bytes), so an image file starts ``00 00 08 03``
(2051) and a label file ``00 00 08 01`` (2049).  Files are usually gzip'd.

A header can claim anything (``4_000_000_000 x 28 x 28`` bytes), so the reader
never allocates from it: it reads the payload in bounded chunks, at most one
byte more than claimed, and only then compares the length it actually got with
the claim.  Memory therefore follows the file's real content, not its header.
"""

import gzip
import zlib
from math import prod
from pathlib import Path

import numpy as np

from handgrad.errors import DataError
from handgrad.io.files import CHUNK, os_error_message

# IDX type byte -> big-endian dtype of the payload.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

GZIP_MAGIC = b"\x1f\x8b"
# gzip and zlib report a damaged stream through any of these.
_STREAM_ERRORS = (OSError, EOFError, zlib.error)


def read_idx(path):
    """Read an IDX file, gzip'd or raw, into an array of its declared shape.

    Parameters
    ----------
    path : str or Path
        The file.  Content starting with the gzip magic ``1f 8b`` is
        decompressed; a name ending in ``.gz`` must hold gzip data.

    Returns
    -------
    ndarray of shape ``(dim_0, ..., dim_{ndim-1})``
        In native byte order, dtype from the type byte (``uint8`` for MNIST).

    Raises
    ------
    DataError
        Missing or unreadable file, not gzip, bad magic, unknown type byte,
        truncated payload or trailing bytes after it.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            if path.suffix == ".gz" and not compressed:
                raise DataError(f"{path} is not a gzip file although its name ends in .gz; pass the original .gz file or decompress it and drop the suffix")
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            try:
                return _read_stream(stream, path)
            except _STREAM_ERRORS as exc:
                raise DataError(f"{path} is a damaged gzip file ({exc}); download it again") from None
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; check the path") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, not an IDX file; pass the file itself") from None
    except OSError as exc:
        raise DataError(f"cannot read {os_error_message(exc, path)}") from None


def _read_stream(stream, path):
    dtype, ndim = _read_magic(stream, path)
    dims_raw = _read_at_most(stream, 4 * ndim)
    if len(dims_raw) != 4 * ndim:
        raise DataError(f"{path} ends inside its IDX header; the file is truncated, download it again")
    shape = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
    claimed = prod(shape) * dtype.itemsize
    payload = _read_at_most(stream, claimed + 1)
    if len(payload) < claimed:
        raise DataError(f"{path} is truncated: its header {shape} promises {claimed} bytes of data but only {len(payload)} follow; download it again")
    if len(payload) > claimed:
        raise DataError(f"{path} has bytes after the {claimed} its header {shape} promises; the file is damaged or not IDX, download it again")
    values = np.frombuffer(payload, dtype=dtype).reshape(shape)
    return values.astype(dtype.newbyteorder("="), copy=False)


def _read_magic(stream, path):
    """Return the payload dtype and the number of dimensions named by the magic number."""
    magic = _read_at_most(stream, 4)
    if len(magic) < 4 or magic[:2] != b"\x00\x00":
        raise DataError(f"{path} is not an IDX file (magic {magic.hex() or 'missing'}, expected 0000 then type and rank bytes); pass an MNIST-style .gz file")
    type_code, ndim = magic[2], magic[3]
    if type_code not in IDX_DTYPES:
        raise DataError(f"{path} has unknown IDX type byte 0x{type_code:02x}; IDX defines 0x08, 0x09, 0x0b, 0x0c, 0x0d, 0x0e")
    if ndim == 0:
        raise DataError(f"{path} declares an IDX array with no dimensions; the file is damaged, download it again")
    return IDX_DTYPES[type_code], ndim


def _read_at_most(stream, limit):
    """Read up to ``limit`` bytes in bounded chunks, so memory follows the real content."""
    buffer = bytearray()
    while len(buffer) < limit:
        chunk = stream.read(min(CHUNK, limit - len(buffer)))
        if not chunk:
            break
        buffer += chunk
    return buffer
