"""A digest of the C sources in ``csrc/``, built into the extension and checked when it is loaded.

An editable install keeps the extension it was built with when ``csrc/``
changes (a ``git pull``): the old module would be called with the new
arguments.  The build records this digest in ``handgrad._kernels.SOURCES``;
``handgrad._compiled`` compares it with the sources beside the package and
runs NumPy's code, saying how to rebuild, when they differ.  Standard
library only: ``setup.py`` runs this file before handgrad can be imported.
"""

import hashlib
from pathlib import Path

SUFFIXES = (".c", ".h")


def digest(folder):
    """The first 16 hex digits of the SHA-256 of every C source and header in ``folder``, in name order."""
    sha = hashlib.sha256()
    for path in sorted(p for p in Path(folder).iterdir() if p.suffix in SUFFIXES):
        sha.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()[:16]
