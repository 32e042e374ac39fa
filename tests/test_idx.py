"""The IDX reader: the real MNIST files, every type byte, and every way a file can be broken."""

import gzip
import struct
import tracemalloc

import numpy as np
import pytest

from handgrad.data.idx import IDX_DTYPES, read_idx
from handgrad.errors import DataError

CODE_OF = {dtype.str[1:]: code for code, dtype in IDX_DTYPES.items()}


def idx_bytes(array, type_code=None, dims=None):
    """Encode ``array`` as IDX: magic, big-endian dims (``dims`` overrides the true ones), payload."""
    array = np.asarray(array)
    if type_code is None:
        type_code = CODE_OF[array.dtype.str[1:]]
    dims = array.shape if dims is None else dims
    header = bytes([0, 0, type_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    return header + array.astype(IDX_DTYPES[type_code]).tobytes()


def write(path, data, compress=False):
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def test_reads_mnist_test_images_and_labels(shared_data):
    images = read_idx(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert images.max() == 255 and images.min() == 0
    # The four corners of every MNIST digit are background.
    assert not images[:, [0, -1]][:, :, [0, -1]].any()
    assert set(np.unique(labels)) == set(range(10))


def test_raw_and_gzipped_copies_read_the_same(shared_data, tmp_path):
    compressed = shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz"
    raw = write(tmp_path / "t10k-labels-idx1-ubyte", gzip.decompress(compressed.read_bytes()))
    np.testing.assert_array_equal(read_idx(raw), read_idx(compressed))


@pytest.mark.parametrize("dtype", [">u1", ">i1", ">i2", ">i4", ">f4", ">f8"])
@pytest.mark.parametrize("compress", [False, True])
def test_every_type_byte_round_trips(tmp_path, rng, dtype, compress):
    values = (rng.normal(size=(3, 4, 2)) * 50).astype(dtype)
    path = write(tmp_path / ("a.idx.gz" if compress else "a.idx"), idx_bytes(values), compress)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(back, values)


def test_zero_length_dimension_gives_an_empty_array(tmp_path):
    path = write(tmp_path / "empty.idx", idx_bytes(np.zeros((0, 28, 28), np.uint8)))
    assert read_idx(path).shape == (0, 28, 28)


BAD_FILES = {
    "bad magic": (b"\x12\x34\x08\x01" + struct.pack(">I", 2) + b"\x01\x02", "not an IDX file"),
    "empty file": (b"", "not an IDX file"),
    "unknown type byte": (b"\x00\x00\x0a\x01" + struct.pack(">I", 2) + b"\x01\x02", "unknown IDX type byte 0x0a"),
    "no dimensions": (b"\x00\x00\x08\x00\x01", "no dimensions"),
    "truncated header": (b"\x00\x00\x08\x03" + struct.pack(">I", 2), "ends inside its IDX header"),
    "truncated payload": (idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))[:-5], "truncated"),
    "trailing bytes": (idx_bytes(np.arange(12, dtype=np.uint8)) + b"\x00", "bytes after"),
}


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_broken_files_raise_data_error(tmp_path, case, compress):
    data, message = BAD_FILES[case]
    path = write(tmp_path / ("f.gz" if compress else "f.idx"), data, compress)
    with pytest.raises(DataError, match=message):
        read_idx(path)


def test_gz_name_without_gzip_content_is_refused(tmp_path):
    path = write(tmp_path / "labels.gz", idx_bytes(np.arange(4, dtype=np.uint8)))
    with pytest.raises(DataError, match="not a gzip file"):
        read_idx(path)


@pytest.mark.parametrize("damage", ["truncate", "flip crc", "garbage after"])
def test_damaged_gzip_streams_raise_data_error(tmp_path, damage):
    data = bytearray(gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8)), mtime=0))
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip crc":
        data[-8] ^= 0xFF
    else:
        data += b"not gzip"
    path = write(tmp_path / "f.gz", bytes(data))
    with pytest.raises(DataError, match="damaged gzip"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True])
def test_absurd_header_claim_does_not_allocate_the_claim(tmp_path, compress):
    # 4e9 images of 28x28 bytes would be 3 TB; the file holds 784 bytes of pixels.
    data = idx_bytes(np.zeros((1, 28, 28), np.uint8), dims=(4_000_000_000, 28, 28))
    path = write(tmp_path / ("big.gz" if compress else "big.idx"), data, compress)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="truncated"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000


def test_missing_file_and_folder_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nope.gz")
    with pytest.raises(DataError, match="is a folder"):
        read_idx(tmp_path)
