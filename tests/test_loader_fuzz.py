"""Hostile files: every load of a mutated IDX, NPZ or CSV file succeeds or raises DataError.

Each property starts from a small valid file, damages it (truncation, flipped
and inserted bytes, forged magic numbers and dimensions, wrong dtypes, object
arrays, huge strings) and checks that the loader either returns a result that
satisfies the documented contract or raises :class:`DataError` with a one-line
message.  Any other exception fails the test.  Loads run under ``tracemalloc``
and must stay within a bound set by the file's size, never by what its
header claims.
"""

import csv
import gzip
import io
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from handgrad.data.idx import read_idx
from handgrad.data.loaders import Dataset, load_dataset, load_features
from handgrad.errors import DataError
from support import count

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Dimensions a forger would pick: zero, one, the uint32 maximum, and counts
# whose product with 28x28 pixels runs to terabytes (10^12 bytes and beyond).
ABSURD_U32 = st.sampled_from([0, 1, 2, 3, 28, 255, 256, 10**6, 2**31 - 1, 2**31, 4_000_000_000, 2**32 - 1])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


# -- the checks shared by every property --------------------------------------

def load_within_memory_bound(load, path):
    """Run ``load(path)``; return its result, or None after a DataError.

    Peak traced memory may be at most 1100x the file size (the most that
    deflate can expand data) plus 4 MB for buffers: proportional to what the
    file holds, whatever its header says.
    """
    size = path.stat().st_size
    tracemalloc.start()
    try:
        result = load(path)
    except DataError as exc:
        message = str(exc)
        assert message and "\n" not in message
        result = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak <= 1100 * size + 4_000_000, f"peak {peak} B for a {size} B file"
    return result


def assert_valid_features(X):
    # float64 for tables; MNIST-style images keep their stored uint8 pixels
    assert isinstance(X, np.ndarray) and X.dtype in (np.float64, np.uint8) and X.ndim == 2
    assert X.shape[0] > 0 and X.shape[1] > 0 and np.isfinite(X).all()


def assert_valid_dataset(ds):
    assert isinstance(ds, Dataset)
    assert_valid_features(ds.X_train)
    assert ds.X_test.dtype == ds.X_train.dtype and ds.X_test.shape[1] == ds.X_train.shape[1]
    assert np.isfinite(ds.X_test).all()
    assert len(ds.classes) >= 2
    for X, y in ((ds.X_train, ds.y_train), (ds.X_test, ds.y_test)):
        assert y.dtype == np.intp and y.shape == (len(X),)
        assert ((y >= 0) & (y < len(ds.classes))).all()
    if ds.feature_names is not None:
        assert len(ds.feature_names) == ds.X_train.shape[1]


# -- byte-level damage ---------------------------------------------------------

# One edit: (what, where, a byte mask, bytes to insert, a forged uint32).  The
# position is taken modulo the current length when the edit is applied.
EDIT = st.tuples(
    st.sampled_from(["truncate", "flip", "insert", "delete", "append", "forge"]),
    st.integers(0, 1 << 16), st.integers(1, 255), st.binary(min_size=1, max_size=32), ABSURD_U32,
)
EDITS = st.lists(EDIT, min_size=1, max_size=4)


def apply_edits(data, edits, header_offsets=()):
    """``data`` after ``edits``; "forge" writes a uint32 at one of ``header_offsets``."""
    data = bytearray(data)
    for what, where, mask, chunk, value in edits:
        at = where % (len(data) + 1)
        if what == "truncate":
            del data[at:]
        elif what == "flip" and at < len(data):
            data[at] ^= mask
        elif what == "insert":
            data[at:at] = chunk
        elif what == "delete":
            del data[at:at + mask % 17]
        elif what == "append":
            data += chunk
        elif what == "forge" and header_offsets:
            offset = header_offsets[where % len(header_offsets)]
            data[offset:offset + 4] = struct.pack(">I", value)
    return bytes(data)


# -- IDX -----------------------------------------------------------------------

def idx_bytes(array, type_code=0x08):
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


IMAGES = idx_bytes(np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3))
LABELS = idx_bytes(np.array([3, 1, 4, 1, 5], dtype=np.uint8))
# Offsets of the magic number and of each dimension in the headers above.
IMAGE_FIELDS = (0, 4, 8, 12)
LABEL_FIELDS = (0, 4)
# Wrong dtypes: the same header shape with each other type byte.
FORGED_TYPES = st.sampled_from([0x00, 0x07, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0xFF])


def idx_file(base, fields, type_code, stage, edits):
    """(bytes, is_gzip): an IDX file with an optional forged type byte, damaged before or after compression."""
    raw = bytearray(base)
    if type_code is not None:
        raw[2] = type_code
    if stage == "raw":
        return apply_edits(raw, edits, fields), False
    if stage == "before gzip":
        return gzip.compress(apply_edits(raw, edits, fields), mtime=0), True
    return apply_edits(gzip.compress(bytes(raw), mtime=0), edits), True


@settings(FUZZ, max_examples=count(ci=2500, dev=100))
@given(base=st.sampled_from([(IMAGES, IMAGE_FIELDS), (LABELS, LABEL_FIELDS)]), type_code=st.none() | FORGED_TYPES,
       stage=st.sampled_from(["raw", "before gzip", "after gzip"]), edits=EDITS)
def test_damaged_idx_files_load_or_raise_data_error(workdir, base, type_code, stage, edits):
    data, is_gzip = idx_file(*base, type_code, stage, edits)
    path = workdir / ("f.idx.gz" if is_gzip else "f.idx")
    path.write_bytes(data)
    array = load_within_memory_bound(read_idx, path)
    if array is not None:
        assert isinstance(array, np.ndarray) and array.ndim >= 1
        assert array.dtype.isnative
    X = load_within_memory_bound(load_features, path)
    if X is not None:
        assert_valid_features(X)


@settings(FUZZ, max_examples=count(ci=300, dev=20))
@given(role=st.sampled_from(["train-images", "train-labels", "t10k-images", "t10k-labels"]), edits=EDITS)
def test_mnist_folder_with_one_damaged_file_loads_or_raises_data_error(workdir, role, edits):
    folder = workdir / "mnist-root" / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train-images", "train-labels", "t10k-images", "t10k-labels"):
        base, fields = (IMAGES, IMAGE_FIELDS) if "images" in name else (LABELS, LABEL_FIELDS)
        content = apply_edits(base, edits, fields) if name == role else base
        (folder / f"{name}-idx{3 if 'images' in name else 1}-ubyte.gz").write_bytes(gzip.compress(content, mtime=0))
    ds = load_within_memory_bound(lambda root: load_dataset("mnist", data_dir=root, download=False), folder.parent)
    if ds is not None:
        assert_valid_dataset(ds)
        assert ds.classes.tolist() == list(range(10)) and ds.X_train.max() <= 255


# -- NPZ -----------------------------------------------------------------------

NPY_DTYPES = st.sampled_from([
    "<f8", ">f4", "<f2", "<i8", "|i1", "<u8", "|b1", "<c16", "<U3", "|S4", "|V4", "<M8[s]", "|O",
])
ARRAYS = st.one_of(
    hnp.arrays(NPY_DTYPES.filter(lambda d: d not in ("|O", "|V4")), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)),
    st.lists(st.one_of(st.integers(), st.text(max_size=5), st.none()), max_size=5).map(lambda v: np.array(v + [None], dtype=object)),
    st.integers(1, 150_000).map(lambda n: np.array(["x" * n, "y"])),
)
FORGED_HEADERS = st.fixed_dictionaries({
    "descr": NPY_DTYPES,
    "fortran_order": st.booleans(),
    "shape": st.lists(st.one_of(ABSURD_U32, st.integers(0, 10**13)), max_size=3).map(tuple),
})


@st.composite
def npy_member(draw):
    """The bytes of one .npy member: a real array, a forged header, or a damaged array."""
    how = draw(st.sampled_from(["array", "forged header", "damaged"]))
    buffer = io.BytesIO()
    if how == "array":
        np.save(buffer, draw(ARRAYS), allow_pickle=True)
        return buffer.getvalue()
    np.lib.format.write_array_header_1_0(buffer, draw(FORGED_HEADERS))
    buffer.write(draw(st.binary(max_size=200)))
    if how == "damaged":
        return apply_edits(buffer.getvalue(), draw(EDITS))
    return buffer.getvalue()


VALID_X = np.arange(12, dtype=np.float64).reshape(6, 2)
VALID_Y = np.array([0, 1, 0, 1, 0, 1])


def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@st.composite
def npz_file(draw):
    """An archive whose members are each valid, forged, damaged or absent; then maybe damaged whole."""
    members = {}
    for key, valid in (("X", VALID_X), ("y", VALID_Y)):
        choice = draw(st.sampled_from(["valid", "fuzzed", "absent"]))
        if choice == "valid":
            members[key + ".npy"] = npy(valid)
        elif choice == "fuzzed":
            members[key + ".npy"] = draw(npy_member())
    if draw(st.booleans()):
        members["extra.npy"] = draw(npy_member())
    buffer = io.BytesIO()
    compression = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    if draw(st.booleans()):
        return apply_edits(buffer.getvalue(), draw(EDITS))
    return buffer.getvalue()


@settings(FUZZ, max_examples=count(ci=2500, dev=100))
@given(data=npz_file())
def test_hostile_npz_files_load_or_raise_data_error(workdir, data):
    path = workdir / "f.npz"
    path.write_bytes(data)
    ds = load_within_memory_bound(lambda p: load_dataset(p, test_fraction=0.3), path)
    if ds is not None:
        assert_valid_dataset(ds)
    X = load_within_memory_bound(load_features, path)
    if X is not None:
        assert_valid_features(X)


# -- CSV -----------------------------------------------------------------------

CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**30, 10**30).map(str),
    st.sampled_from(["", " ", "nan", "-inf", "1e999", "0x10", "1_0", " 2.5 ", "1,5", '"', "\n", "\x00", "é"]),
    st.text(max_size=8),
    st.integers(100, 150_000).map(lambda n: "9" * n),
    st.integers(100, 150_000).map(lambda n: "z" * n),
)
LABELS_TEXT = st.one_of(st.sampled_from(["a", "b", "0", "1", "2", "", "cat"]), CELLS)


@st.composite
def csv_text(draw):
    """A CSV written by the csv module: fuzzed header, ragged rows, any cell content."""
    n_cols = draw(st.integers(1, 4))
    header = draw(st.one_of(
        st.lists(st.sampled_from(["a", "b", "c", "label", "0", "1", ""]), min_size=n_cols, max_size=n_cols),
        st.lists(st.text(max_size=6), min_size=n_cols, max_size=n_cols),
    ))
    rows = []
    for _ in range(draw(st.integers(0, 8))):
        width = n_cols if draw(st.integers(0, 9)) else draw(st.integers(0, n_cols + 2))
        rows.append([draw(CELLS) for _ in range(max(width - 1, 0))] + ([draw(LABELS_TEXT)] if width else []))
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue(), header


VALID_CSV = "a,b,label\n1,2,x\n3.5,4,y\n5,-6e2,x\n7,8,y\n"


@st.composite
def csv_file(draw):
    """(bytes, target): generated CSV text, or a valid file damaged byte by byte."""
    if draw(st.booleans()):
        text, header = draw(csv_text())
        target = draw(st.one_of(st.none(), st.sampled_from(header), st.text(max_size=4)))
        return text.encode("utf-8"), target
    return apply_edits(VALID_CSV.encode("utf-8"), draw(EDITS)), draw(st.sampled_from([None, "a", "label", "zz"]))


@settings(FUZZ, max_examples=count(ci=2500, dev=100))
@given(file=csv_file())
def test_hostile_csv_files_load_or_raise_data_error(workdir, file):
    data, target = file
    path = workdir / "f.csv"
    path.write_bytes(data)
    ds = load_within_memory_bound(lambda p: load_dataset(p, target=target, test_fraction=0.25), path)
    if ds is not None:
        assert_valid_dataset(ds)
        assert ds.feature_names is not None
    X = load_within_memory_bound(load_features, path)
    if X is not None:
        assert_valid_features(X)
