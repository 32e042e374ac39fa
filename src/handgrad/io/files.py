"""Files written whole or not at all, and ``.npy`` members of zip archives read without trust.

Everything handgrad writes (model files, checkpoints, plots, logs, downloaded
datasets) goes through :func:`atomic_write`, and everything it reads from an
``.npz`` archive (model files, the user's ``X``/``y`` tables) through
:func:`open_npy`.  This module sits at the base of the package, beside
:mod:`handgrad.errors`, so every layer above may use it.
"""

import errno
import os
import re
import secrets
import tempfile
import time
import warnings
import zipfile
import zlib
from math import prod
from pathlib import Path

import numpy as np

# Bytes per read when streaming a download, a gzip stream or an archive member:
# buffers stay this small whatever size a file or a header claims.
CHUNK = 1 << 20

# What zipfile, zlib and NumPy's header parser raise on damaged or forged
# archives, and what code walking a damaged archive's decoded contents can
# raise.  Readers turn each of these into their own one-line error.
ARCHIVE_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, ValueError, TypeError,
                  LookupError, AttributeError, ArithmeticError, RuntimeError, SyntaxError)


# -- what an OSError means -------------------------------------------------------

# What to do about each error a file operation can meet; the one table every message about
# an OSError reads (the command line, the writability probe, plots, downloads, readers).
# EPIPE is not here: a closed pipe ends the command quietly, where it is written to.
_REMEDIES = {
    errno.ENOSPC: "free some space on that disk or choose another disk",
    errno.EDQUOT: "free some space within your quota or choose another disk",
    errno.EFBIG: "the file would exceed the size the system allows; choose another disk or raise the limit",
    errno.EACCES: "check its permissions (and its folder's) or choose another path",
    errno.EPERM: "check its permissions (and its folder's) or choose another path",
    errno.EROFS: "that file system is read-only; choose another path",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
    errno.EISDIR: "it is a folder; pass a file",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.EIO: "the disk reported an input/output error; check the disk or choose another one",
    errno.EMFILE: "too many files are open; close some programs and try again",
    errno.ENFILE: "too many files are open; close some programs and try again",
}

# The errors of writing into a file that say where it went wrong only by the file they are about:
# atomic_write attaches its target to these.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS, errno.EACCES,
                           errno.EPERM})


def os_error_message(exc, path=None):
    """One line for an ``OSError``: the path it concerns, what went wrong, and what to do.

    Parameters
    ----------
    exc : OSError
    path : str or Path, optional
        The path to name when the error carries none (``exc.filename`` wins).

    Returns
    -------
    str
        ``"<path>: no space left on device; free some space on that disk or
        choose another disk"``.

    Examples
    --------
    >>> import errno
    >>> os_error_message(OSError(errno.EROFS, "Read-only file system", "/mnt/cd/model.npz"))
    '/mnt/cd/model.npz: read-only file system; that file system is read-only; choose another path'
    """
    where = exc.filename if exc.filename is not None else path
    reason = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    reason = reason[:1].lower() + reason[1:]
    remedy = _REMEDIES.get(exc.errno, "check the path and try again")
    return f"{where}: {reason}; {remedy}" if where is not None else f"{reason}; {remedy}"


# -- writing -------------------------------------------------------------------

class UnwritableFolder(OSError):
    """The folder of a file to be written cannot be created, or a file cannot be created in it.

    Raised by :func:`atomic_write` before ``write`` is called; ``filename`` is
    the folder and ``strerror`` the system's reason.
    """


def atomic_write(path, write, *, make_folder=False):
    """Call ``write(file)`` on a new temporary file beside ``path``, then rename it onto ``path``.

    The temporary file has a unique name in the target's folder (so
    concurrent writers never share one and the rename never crosses file
    systems).  After ``write`` returns it is flushed and fsynced, renamed with
    :func:`os.replace` (atomic on POSIX and Windows), and the folder is
    fsynced so that the rename itself survives a crash.  Readers therefore
    see the old file or the complete new one, never a mixture.  If ``write``
    raises (or the process is interrupted), the temporary file is removed and
    the target is left as it was.

    Permissions: the file is created with mode ``0o666 & ~umask``, exactly as
    ``open(path, "w")`` would create it (``tempfile.mkstemp`` would make it
    private to the owner).  Models, plots and datasets are ordinary files,
    shared as the user's umask shares any other.

    Parameters
    ----------
    path : str or Path
    write : callable taking a binary file object open for writing.
    make_folder : create the target's folder (and its parents) when missing.

    Stale temporaries: a process killed outright (SIGKILL, a power cut)
    cannot remove its temporary file.  After a successful write, the
    temporaries of the same target that are over :data:`STALE_SECONDS` old
    are removed; a younger one may belong to a concurrent writer and is left.

    Raises
    ------
    UnwritableFolder
        The folder cannot be created or written; nothing was written.
    OSError
        Writing failed (a full disk, a quota, a file system gone read-only);
        its ``filename`` is ``path`` when the system named none.
    whatever ``write`` raises, after the temporary file is removed.
    """
    path = Path(path)
    fd, tmp = _create_beside(path, make_folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        if exc.filename is None and exc.errno in _WRITE_ERRNOS:
            exc.filename = str(path)       # "No space left on device" alone does not say where
        raise
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_folder(path.parent)
    remove_stale_temporaries(path)


def fallback_paths(path):
    """Where to write what could not be written at ``path``: beside it, then in the temporary folder.

    The name keeps the target's and adds ``.rescued-<local time>-<process
    id>`` before its suffix (``model.npz`` → ``model.rescued-20261201-145501-4242.npz``),
    so a fallback never replaces another file, and shows what it holds.
    """
    path = Path(path)
    name = f"{path.stem}.rescued-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}{path.suffix}"
    return [path.with_name(name), Path(tempfile.gettempdir()) / name]


# A temporary this old belongs to a writer that died: no write of a model, a plot or a
# dataset takes an hour between creating its file and renaming it.
STALE_SECONDS = 3600


def remove_stale_temporaries(path, older_than=STALE_SECONDS):
    """Remove the temporary files of ``path`` (``.<name>.<8 hex>.tmp`` beside it) over ``older_than`` seconds old.

    Returns the paths removed.  Files that vanish or cannot be removed
    meanwhile are skipped: another writer may be cleaning up too.
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{8}}\.tmp")
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime > older_than and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _create_beside(path, make_folder):
    """Create and open a new, uniquely named hidden file in ``path``'s folder: ``(fd, name)``."""
    folder = path.parent
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        if make_folder:
            folder.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            tmp = folder / f".{path.name}.{secrets.token_hex(4)}.tmp"
            try:
                # Mode 0o666: the kernel applies the umask, as for any new file.
                return os.open(tmp, flags, 0o666), tmp
            except FileExistsError:
                continue
        raise FileExistsError(f"no free temporary name beside {path}")
    except OSError as exc:
        raise UnwritableFolder(exc.errno, exc.strerror or str(exc), str(folder)) from None


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_folder(folder):
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, as on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- reading -------------------------------------------------------------------

class NpyError(Exception):
    """A zip member is not a ``.npy`` array that can be read safely.

    The message is one line describing the member's problem, meant to follow
    ``"array 'X' "``; ``pickled`` is true when the member holds Python
    objects (which would need pickle).
    """

    def __init__(self, message, pickled=False):
        super().__init__(message)
        self.pickled = pickled


class NpyMember:
    """One ``.npy`` member of an open zip archive: its header read, its data not yet.

    Opening reads and checks only the header: ``shape``, ``fortran_order``
    and ``dtype`` are then known, so a caller can refuse an array by its
    dtype or shape before reading a byte of its data.  Object arrays are
    refused here (:class:`NpyError` with ``pickled=True``): nothing is ever
    unpickled.  :meth:`read` then reads the data in chunks of :data:`CHUNK`
    bytes and checks that the member holds exactly the bytes the header
    promises, so memory grows with the data actually present, never with
    what a forged header claims: at most the member's real size (for a
    stored member, part of the file; for a deflated one, what the file's
    bytes really decompress to).

    Use as a context manager::

        with NpyMember(archive, "X.npy") as member:
            if member.dtype != np.float32: ...
            X = member.read()

    Damaged archives raise one of :data:`ARCHIVE_ERRORS` (from zipfile and
    zlib) or :class:`NpyError` (a bad header, an object array, a length that
    does not match).
    """

    def __init__(self, archive, member):
        self._fp = archive.open(member)
        try:
            self.shape, self.fortran_order, self.dtype = _npy_header(self._fp)
        except BaseException:
            self._fp.close()
            raise
        if self.dtype.hasobject:
            self._fp.close()
            raise NpyError("holds pickled Python objects, which are never unpickled", pickled=True)
        self.nbytes = prod(self.shape) * self.dtype.itemsize

    def read(self):
        """The array: a new, writable array of ``shape`` and ``dtype``."""
        claimed, data = self.nbytes, bytearray()
        while len(data) <= claimed:            # one byte past the claim reveals trailing data
            chunk = self._fp.read(min(CHUNK, claimed + 1 - len(data)))
            if not chunk:
                break
            data += chunk
        if len(data) != claimed:
            more = "+" if len(data) > claimed else ""
            raise NpyError(f"has {len(data)}{more} bytes of data but its header {self.shape} {self.dtype} "
                           f"promises {claimed}")
        order = "F" if self.fortran_order else "C"
        return np.frombuffer(data, dtype=self.dtype).reshape(self.shape, order=order)

    def close(self):
        self._fp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _npy_header(fp):
    """``(shape, fortran_order, dtype)`` from a ``.npy`` header, or :class:`NpyError`.

    NumPy parses the header's text with ``ast``, and damaged text surfaces as
    whatever that raises (SyntaxError, RecursionError, ...), so every
    exception here means a damaged header.
    """
    try:
        version = np.lib.format.read_magic(fp)
    except Exception as exc:
        raise NpyError(f"has a damaged .npy header ({type(exc).__name__})") from None
    if version not in ((1, 0), (2, 0)):
        raise NpyError(f"uses .npy format version {version[0]}.{version[1]}, which handgrad does not read")
    try:
        # Text that compiles only with a warning (an invalid escape such as "\\q") is damaged too: raised as an
        # error here, not printed as a warning from handgrad's reader.
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            if version == (1, 0):
                return np.lib.format.read_array_header_1_0(fp)
            return np.lib.format.read_array_header_2_0(fp)
    except Exception as exc:
        raise NpyError(f"has a damaged .npy header ({type(exc).__name__})") from None
