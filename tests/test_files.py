"""handgrad.io.files: atomic writes with ordinary permissions, and .npy members read without trust."""

import io
import os
import zipfile

import numpy as np
import pytest

from handgrad.io.files import ARCHIVE_ERRORS, NpyError, NpyMember, UnwritableFolder, atomic_write


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


# -- atomic_write --------------------------------------------------------------

def test_a_write_replaces_the_file_whole_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    atomic_write(target, lambda f: f.write(b"new contents"))
    assert target.read_bytes() == b"new contents"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "model.npz"
    target.write_bytes(b"old contents")

    def broken(f):
        f.write(b"half a file")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_written_files_honour_the_umask_like_any_new_file(tmp_path, umask_027):
    atomic_write(tmp_path / "a", lambda f: f.write(b"x"))
    with open(tmp_path / "b", "wb") as f:
        f.write(b"x")
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o640 == (tmp_path / "b").stat().st_mode & 0o777


def test_make_folder_creates_missing_parents(tmp_path):
    target = tmp_path / "new" / "deeper" / "file.txt"
    with pytest.raises(UnwritableFolder):
        atomic_write(target, lambda f: f.write(b"x"))
    atomic_write(target, lambda f: f.write(b"x"), make_folder=True)
    assert target.read_bytes() == b"x"


def test_an_unwritable_folder_is_reported_before_write_is_called(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    calls = []
    with pytest.raises(UnwritableFolder) as info:
        atomic_write(blocker / "out.png", calls.append, make_folder=True)
    assert calls == [] and isinstance(info.value, OSError) and info.value.strerror
    assert info.value.filename == str(blocker)


# -- NpyMember -------------------------------------------------------------------

def _archive(members, compression=zipfile.ZIP_STORED):
    """A zip in memory holding ``name -> bytes``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    buffer.seek(0)
    return zipfile.ZipFile(buffer)


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _header_only(descr, shape, payload=b""):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + payload


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
@pytest.mark.parametrize("array", [
    np.arange(12.0).reshape(3, 4), np.asfortranarray(np.arange(6, dtype=">i4").reshape(2, 3)),
    np.array(["a", "bc"]), np.float32(2.5), np.zeros((0, 3)),
], ids=["float64", "fortran-big-endian", "strings", "scalar", "empty"])
def test_members_read_back_exactly(array, compression):
    with _archive({"x.npy": _npy(array)}, compression) as archive, NpyMember(archive, "x.npy") as member:
        assert member.shape == np.shape(array) and member.dtype == np.asarray(array).dtype
        result = member.read()
    np.testing.assert_array_equal(result, array)
    assert result.dtype == np.asarray(array).dtype and result.flags.writeable


def test_the_header_is_known_before_any_data_is_read():
    with _archive({"x.npy": _header_only("<f8", (10**12, 3))}) as archive, NpyMember(archive, "x.npy") as member:
        assert member.shape == (10**12, 3) and member.nbytes == 24 * 10**12
        with pytest.raises(NpyError, match="0 bytes of data but its header"):
            member.read()


@pytest.mark.parametrize("data, message", [
    (_header_only("<f8", (10**12, 3), b"\0" * 48), r"48 bytes of data but its header \(1000000000000, 3\) float64"),
    (_header_only("<f8", (2,), b"\0" * 24), r"17\+ bytes of data but its header \(2,\) float64 promises 16"),
    (b"\x93NUMPY\x01\x00\x10\x00{'descr': 'f8', ", r"damaged .npy header"),
    (b"not an npy file at all", r"damaged .npy header \(ValueError\)"),
    (_npy(np.zeros(2)).replace(b"\x93NUMPY\x01", b"\x93NUMPY\x07", 1), "format version 7.0"),
])
def test_damaged_members_raise_npy_error(data, message):
    with _archive({"x.npy": data}) as archive:
        with pytest.raises(NpyError, match=message) as info:
            with NpyMember(archive, "x.npy") as member:
                member.read()
    assert not info.value.pickled and "\n" not in str(info.value)


def test_object_arrays_are_refused_at_their_header(tmp_path):
    payload = np.array([1, "a", None], dtype=object)
    buffer = io.BytesIO()
    np.save(buffer, payload, allow_pickle=True)
    with _archive({"y.npy": buffer.getvalue()}) as archive:
        with pytest.raises(NpyError, match="pickled Python objects, which are never unpickled") as info:
            NpyMember(archive, "y.npy")
    assert info.value.pickled


def test_a_corrupted_deflated_member_raises_an_archive_error():
    data = _npy(np.arange(1000.0))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", data)
    raw = bytearray(buffer.getvalue())
    raw[200] ^= 0xFF                     # inside the deflate stream
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as archive:
        with pytest.raises((NpyError, *ARCHIVE_ERRORS)):
            with NpyMember(archive, "x.npy") as member:
                member.read()


def test_a_header_with_an_invalid_escape_is_refused_without_a_warning():
    """NumPy compiles the header's text; an invalid escape there would print a DeprecationWarning."""
    import warnings

    from handgrad.io.files import _npy_header

    text = "{'descr': '<f8\\q', 'fortran_order': False, 'shape': (2,), }"
    text += " " * (118 - len(text)) + "\n"
    data = b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(NpyError, match="damaged .npy header"):
            _npy_header(io.BytesIO(data))
    assert caught == []
