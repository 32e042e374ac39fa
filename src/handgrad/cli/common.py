"""Helpers the commands share: output paths, atomic text files, applying a saved model."""

import os
from pathlib import Path

import numpy as np

from handgrad.cli.interrupts import guard
from handgrad.errors import DataError, HandgradError
from handgrad.files import atomic_write
from handgrad.nn.layers import Activation


def check_writable(path, what, folder=False):
    """Fail now, before any work, if ``path`` could not be written later.

    Nothing is created: the check walks up to the nearest existing folder.
    """
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        kind = "a file" if folder else "a folder"
        raise HandgradError(f"{what} {path} is {kind}; choose another path")
    parent = path if folder else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise HandgradError(f"{what} {path} cannot be created because {parent} is a file; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise HandgradError(f"{what} {path} cannot be written (no permission in {parent}); choose another path")


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
