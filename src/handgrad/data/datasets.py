"""Where MNIST and Fashion-MNIST live on disk, and how a missing file gets there.

Each dataset is its four original gzip'd IDX files in a folder named after it
(``mnist/``, ``fashion-mnist/``).  Folders are searched in this order:

1. the ``data_dir`` argument (``--data-dir`` on the command line),
2. ``$HANDGRAD_DATA``,
3. the per-user cache, ``$XDG_CACHE_HOME/handgrad`` or ``~/.cache/handgrad``.

A file found in none of them is downloaded (when allowed) from the dataset's
mirrors, checked against the SHA-256 in :data:`DATASETS`, and moved into the
cache atomically (:func:`handgrad.io.files.atomic_write`): it is written to a
temporary file beside its final name, flushed to disk, and renamed, so an
interrupted download never leaves a file that looks complete.  ``$HANDGRAD_MIRROR`` (or ``mirror=``) replaces the
mirrors with one base URL laid out like the data folder
(``<base>/mnist/train-images-idx3-ubyte.gz``).

Files found locally are not hashed: their content is validated when read (see
:mod:`handgrad.data.idx`), so a re-compressed copy of the same data still works.
"""

import hashlib
import http.client
import logging
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from handgrad.errors import DataError
from handgrad.io.files import CHUNK, UnwritableFolder, atomic_write, os_error_message

logger = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = 30.0  # seconds without data before a mirror counts as unreachable
# What a failing server or connection raises (HTTPError is a URLError).
NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, socket.timeout, ConnectionError)


@dataclass(frozen=True)
class IdxDataset:
    """An IDX dataset: its folder name, mirrors, and ``role -> (file name, sha256)``."""

    folder: str
    mirrors: tuple
    files: dict
    class_names: tuple


DATASETS = {
    "mnist": IdxDataset(
        folder="mnist",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        files={
            "train_images": ("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
            "train_labels": ("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
            "test_images": ("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
            "test_labels": ("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        },
        class_names=tuple(str(d) for d in range(10)),
    ),
    "fashion-mnist": IdxDataset(
        folder="fashion-mnist",
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        files={
            "train_images": ("train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
            "train_labels": ("train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
            "test_images": ("t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
            "test_labels": ("t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
        },
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
}


def cache_dir():
    """The per-user cache folder: ``$XDG_CACHE_HOME/handgrad`` or ``~/.cache/handgrad``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "handgrad"


def search_dirs(data_dir=None):
    """The folders searched for dataset files, in order (see the module docstring)."""
    dirs = [Path(data_dir)] if data_dir is not None else []
    if os.environ.get("HANDGRAD_DATA"):
        dirs.append(Path(os.environ["HANDGRAD_DATA"]))
    dirs.append(cache_dir())
    return dirs


def locate(name, *, data_dir=None, download=True, mirror=None, timeout=DOWNLOAD_TIMEOUT, roles=None):
    """Find (or fetch) the files of dataset ``name``: all four, or those of ``roles``.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist"}
    data_dir : str or Path, optional
        Searched first; holds ``<name>/`` folders.
    download : bool
        Fetch missing files into the cache; otherwise report them missing.
    mirror : str, optional
        Base URL replacing the dataset's mirrors; defaults to ``$HANDGRAD_MIRROR``.
    timeout : float
        Seconds a mirror may stay silent before it counts as unreachable.
    roles : iterable of str, optional
        Only these files (e.g. ``("test_images", "test_labels")`` for a
        command that needs the test split), so nothing else is fetched or
        reported missing.

    Returns
    -------
    dict
        ``{"train_images": Path, "train_labels": ..., "test_images": ..., "test_labels": ...}``,
        restricted to ``roles``.
    """
    if name not in DATASETS:
        raise DataError(f"no IDX dataset named {name!r}; choose from {', '.join(DATASETS)}")
    spec = DATASETS[name]
    roles = list(spec.files) if roles is None else list(roles)
    unknown = [role for role in roles if role not in spec.files]
    if unknown:
        raise DataError(f"unknown file role {unknown[0]!r}; choose from {', '.join(spec.files)}")
    dirs = search_dirs(data_dir)
    found = {role: _find(dirs, spec.folder, spec.files[role][0]) for role in roles}
    missing = [role for role, path in found.items() if path is None]
    if missing and download:
        failures = _download_missing(spec, missing, found, _mirror_urls(spec, mirror), timeout)
        missing = [role for role, path in found.items() if path is None]
        if missing:
            raise DataError(_missing_message(name, spec, missing, dirs, reason=f"download failed: {failures[0]}"))
    elif missing:
        raise DataError(_missing_message(name, spec, missing, dirs, reason="downloads are off"))
    return found


def _find(dirs, folder, file_name):
    for directory in dirs:
        candidate = directory / folder / file_name
        if candidate.is_file():
            return candidate
    return None


def _mirror_urls(spec, mirror):
    mirror = mirror or os.environ.get("HANDGRAD_MIRROR")
    if mirror:
        return [mirror.rstrip("/") + "/" + spec.folder + "/"]
    return list(spec.mirrors)


def _missing_message(name, spec, missing, dirs, reason):
    files = ", ".join(spec.files[role][0] for role in missing)
    folders = ", ".join(str(d / spec.folder) for d in dirs)
    return (f"{name} files missing ({reason}): {files}; put the original .gz files in one of: {folders} "
            f"(or pass --data-dir / set HANDGRAD_DATA to a folder holding {spec.folder}/)")


def _download_missing(spec, missing, found, urls, timeout):
    """Download each missing file into the cache, filling ``found``; return the failures.

    A mirror that cannot be reached at all is not asked again for the next
    file, so an offline machine fails after one timeout per mirror, not one per file.
    """
    target = cache_dir() / spec.folder
    unreachable, failures = set(), []
    for role in missing:
        file_name, sha256 = spec.files[role]
        for base in urls:
            if base in unreachable:
                continue
            url = base + file_name
            try:
                found[role] = download(url, target / file_name, sha256, timeout=timeout)
                break
            except NETWORK_ERRORS as exc:
                failures.append(f"{url}: {getattr(exc, 'reason', exc)}")
                if not isinstance(exc, urllib.error.HTTPError):
                    unreachable.add(base)
    return failures


def download(url, destination, sha256, *, timeout=DOWNLOAD_TIMEOUT):
    """Fetch ``url`` into ``destination`` if its SHA-256 is ``sha256``; return the path.

    The bytes go to a temporary file in the destination's folder, are flushed
    to disk, and only then renamed onto ``destination`` (an atomic step on
    POSIX and Windows), so readers see either no file or the whole verified one.
    The file gets the permissions of any new file (``0o666 & ~umask``).

    Raises
    ------
    DataError
        The content's hash differs (the temporary file is deleted first).
        Also when the destination folder cannot be written.
    NETWORK_ERRORS
        The server could not be reached or stopped answering.
    """
    destination = Path(destination)

    def write(tmp):
        logger.info("downloading %s", url)
        actual = _copy_hashing(url, tmp, timeout)
        if actual != sha256:        # raised inside the write: the temporary file is removed, nothing is renamed
            raise DataError(f"{destination.name} from {url} has sha256 {actual} but {sha256} was expected; "
                            f"the download is corrupt or the mirror is wrong, try again or use another mirror")

    try:
        atomic_write(destination, write, make_folder=True)
    except UnwritableFolder as exc:
        raise DataError(f"cannot write into {os_error_message(exc)}; or set XDG_CACHE_HOME to a writable folder, "
                        f"or put the files in --data-dir yourself") from None
    return destination


def _copy_hashing(url, out, timeout):
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        while chunk := response.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()
