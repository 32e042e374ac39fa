"""Helpers the commands share: output paths, atomic text files, applying a saved model."""

import os
import tempfile
from pathlib import Path

import numpy as np

from handgrad.cli.interrupts import guard
from handgrad.errors import DataError, HandgradError
from handgrad.files import atomic_write
from handgrad.nn.layers import Activation


def check_writable(path, what, folder=False):
    """Fail now, before any work, if ``path`` could not be written later.

    The check walks up to the nearest existing folder and creates, then
    removes, a hidden probe there: a file where the folder already exists, a
    folder where folders will have to be made.  Permission bits alone would
    not do: root passes ``os.access`` everywhere, yet cannot create anything
    in ``/proc`` or on a read-only mount.
    """
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        kind = "a file" if folder else "a folder"
        raise HandgradError(f"{what} {path} is {kind}; choose another path")
    parent = path if folder else path.parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise HandgradError(f"{what} {path} cannot be created because {existing} is a file; choose another path")
    try:
        _probe(existing, make_folder=existing != parent)
    except OSError as exc:
        raise HandgradError(f"{what} {path} cannot be written ({exc.strerror or exc} in {existing}); "
                            "choose another path") from None


def _probe(folder, make_folder):
    """Create and remove a hidden file (or folder) in ``folder``; raise OSError if that is impossible."""
    if make_folder:
        os.rmdir(tempfile.mkdtemp(prefix=".handgrad-probe-", dir=folder))
        return
    fd, name = tempfile.mkstemp(prefix=".handgrad-probe-", dir=folder)
    os.close(fd)
    os.unlink(name)


def remove_stale_plots(folder, written, owned):
    """Delete the plot files in ``folder`` that this command may write (``owned``) but did not (``written``).

    Only handgrad's own plot names are candidates, so a run's folder shows
    that run's plots and never loses a file the user put there.
    """
    for name in sorted(set(owned) - set(written)):
        path = Path(folder) / name
        if path.is_file():
            path.unlink()


def class_names(loaded):
    """What to call each of a saved model's classes: the names stored with it, else its labels as text.

    Models trained before names were stored, on a dataset whose labels are
    codes (Fashion-MNIST's 0..9), get the dataset's names.
    """
    labels = [str(c) for c in loaded.classes]
    stored = loaded.metadata.get("extra", {}).get("class_names")
    if isinstance(stored, list) and len(stored) == len(labels) and all(isinstance(n, str) for n in stored):
        return stored
    from handgrad.data.datasets import DATASETS

    dataset = loaded.settings.get("dataset")
    known = DATASETS[dataset].class_names if isinstance(dataset, str) and dataset in DATASETS else None
    if known is not None and labels == [str(i) for i in range(len(known))]:
        return list(known)
    return labels


def write_text(path, text):
    """Write ``text`` to ``path`` atomically, creating its folder; signals wait until it is done."""
    path = Path(path)
    with guard.deferred():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def describe(model):
    """``"64-128-10 relu"``: layer widths and the hidden activation."""
    widths = [model.n_features] + [layer.n_out for layer in model.layers if hasattr(layer, "n_out")]
    acts = sorted({layer.name for layer in model.layers if isinstance(layer, Activation) and layer.name})
    return "-".join(map(str, widths)) + (f" {'/'.join(acts)}" if acts else "")


def model_features(loaded, X, source):
    """``X`` (raw features) checked against the model's input width and preprocessed."""
    n_features = loaded.model.n_features
    if X.shape[1] != n_features:
        raise DataError(f"{source} has {X.shape[1]} features but the model expects {n_features}; "
                        "pass data with the same columns as in training")
    if loaded.preprocessor is None:
        return np.ascontiguousarray(X, dtype=loaded.model.dtype)
    return loaded.preprocessor.transform(X, dtype=loaded.model.dtype)


def labels_in_model_order(y, dataset_classes, model_classes, source):
    """Re-index labels from the dataset's classes to the model's output units."""
    position = {label: i for i, label in enumerate(model_classes)}
    mapping = np.empty(len(dataset_classes), dtype=np.intp)
    for i, label in enumerate(dataset_classes):
        if label not in position:
            raise DataError(f"{source} has class {label!r}, which the model does not know (its classes: "
                            f"{', '.join(map(str, model_classes))}); evaluate on data with the same labels")
        mapping[i] = position[label]
    return mapping[y]
