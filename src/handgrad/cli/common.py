"""Helpers the commands share: output paths, atomic text files, applying a saved model."""

import os
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handgrad.cli.console import warn
from handgrad.cli.interrupts import guard
from handgrad.errors import DataError, HandgradError, ModelFileError
from handgrad.io.files import atomic_write, os_error_message
from handgrad.nn.activations import Activation
from handgrad.nn.batchnorm import BatchNorm
from handgrad.nn.dropout import Dropout
from handgrad.nn.losses import PoissonDeviance, SquaredError


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
        # The probe's own name would mislead: the error is about the folder.
        reason = os_error_message(OSError(exc.errno, exc.strerror or str(exc)), existing)
        raise HandgradError(f"{what} {path} cannot be written ({reason})") from None


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


def draw_plots(folder, jobs, debug=False):
    """Draw a command's plots into ``folder``; a plot that cannot be drawn is a warning, never an error.

    ``jobs()`` returns ``([(file name, draw), ...], owned)``: ``draw(path)``
    writes one PNG (or returns False when the plot does not apply to the
    data), ``owned`` are the plot names the command may write (see
    :func:`remove_stale_plots`).  Commands call this after their
    results are printed and their files written, so a figure that fails
    (matplotlib missing or broken, data a plot cannot show, a full disk)
    costs that figure alone: the others are drawn, the command exits with
    its own code, and stderr says which one is missing and why.  A signal
    (Ctrl-C) still stops it.  Returns ``(written, owned)``: the names drawn.
    """
    try:
        plots, owned = jobs()
    except Exception as exc:        # noqa: BLE001 - any failure to prepare the plots only costs the plots
        _plot_warning("no plots were drawn", exc, debug)
        return [], ()
    written = []
    for name, draw in plots:
        try:
            drawn = draw(Path(folder) / name) is not False
        except Exception as exc:    # noqa: BLE001 - any failure of one figure only costs that figure
            _plot_warning(f"{name} was not drawn", exc, debug)
        else:
            if drawn:
                written.append(name)
    return written, owned


def _plot_warning(what, exc, debug):
    if debug:
        traceback.print_exc()
    reason = " ".join(str(exc).split()) or "no message"
    warn(f"{what} ({type(exc).__name__}: {reason[:300]}); the results above are complete and the files written")


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
    """``"64-128-10 relu"``: layer widths and the hidden activation (``", batch norm, dropout 0.2"`` with those)."""
    widths = model.layer_sizes
    acts = sorted({layer.name for layer in model.layers if isinstance(layer, Activation) and layer.name})
    text = "-".join(map(str, widths)) + (f" {'/'.join(acts)}" if acts else "")
    if any(isinstance(layer, BatchNorm) for layer in model.layers):
        text += ", batch norm"
    rates = sorted({layer.p for layer in model.layers if isinstance(layer, Dropout)})
    if rates:
        text += ", dropout " + "/".join(f"{p:g}" for p in rates)
    return text


@dataclass
class TargetScaling:
    """How ``handgrad train`` rescales squared-error regression targets: ``y'_k = (y_k − mean_k) / scale_k``.

    Each target column is centred on its training mean and divided by its
    own training standard deviation (1 for a constant column), so every
    column the network learns lies near 0 with a spread near 1, whatever its
    units: a price in the thousands and an age in decades weigh alike in the
    loss, and the learning rates of the presets suit them both.  (One common
    scale for all columns, as models written before per-column scales have,
    lets the widest column drown the others: the diabetes table's ``age``
    beside its disease score scored R² −33,501.)  Predictions are mapped
    back by ``mean_k + scale_k · output_k``, so every prediction, RMSE and
    MAE is in the targets' own units; R² does not change.
    """

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, Y):
        Y = np.asarray(Y, dtype=np.float64).reshape(len(Y), -1)
        std = Y.std(axis=0)
        usable = np.isfinite(std) & (std > 0)
        return cls(Y.mean(axis=0), np.where(usable, std, 1.0))

    def transform(self, Y):
        return (np.asarray(Y, dtype=np.float64) - self.mean) / self.scale

    def invert(self, P):
        return np.asarray(P, dtype=np.float64) * self.scale + self.mean

    def to_dict(self):
        return {"mean": [float(m) for m in self.mean], "scale": [float(s) for s in self.scale]}

    @classmethod
    def of_model(cls, loaded):
        """The scaling a model file stores (``extra["target_scaling"]``), or None; a damaged entry is refused.

        ``scale`` is a list of one positive number per output, or (files
        written before per-column scales) one number that every output shares.
        """
        entry = loaded.metadata.get("extra", {}).get("target_scaling")
        if entry is None:
            return None
        k = loaded.model.n_outputs
        try:
            mean = np.asarray(entry["mean"], dtype=np.float64)
            stored = entry["scale"]
            shared = isinstance(stored, (int, float)) and not isinstance(stored, bool)
            each = isinstance(stored, list) and all(isinstance(s, (int, float)) and not isinstance(s, bool)
                                                    for s in stored)
            scale = np.broadcast_to(np.asarray(stored, dtype=np.float64), (k,)).copy() if shared or each else None
            good = (scale is not None and (shared or len(stored) == k) and mean.shape == (k,)
                    and np.isfinite(mean).all() and np.isfinite(scale).all() and (scale > 0).all())
        except (TypeError, KeyError, ValueError, OverflowError):
            good = False
        if not good:
            raise ModelFileError(f"the model file's target scaling is damaged (it needs a finite mean and a "
                                 f"positive scale per output, {k} here); train the model again")
        return cls(mean, scale)


def scales_targets(loss):
    """Whether ``handgrad train`` standardises the targets of ``loss``: squared-error regression only.

    The Poisson deviance reads counts through ``μ = e^z``, which a shift of
    the targets would break; classification targets are labels.
    """
    return isinstance(loss, SquaredError)


def predictions(model, loss, X, scaling=None):
    """What ``model`` predicts for preprocessed ``X``, as ``loss`` reads its logits (the largest logit's
    index without a loss), in the targets' units where ``scaling`` standardised them."""
    P = model.predict(X, loss=loss)
    return P if scaling is None else scaling.invert(P)


def refuse_non_finite(loaded, X, model_path, source, *outputs):
    """Refuse, naming the model file, a model whose outputs on ``X`` are not finite.

    The logits are checked (a classifier's predicted labels are indices,
    finite even when every logit is NaN), and so is every array in
    ``outputs`` derived from them (values in the targets' units,
    probabilities).  A file whose weights or settings are finite but
    overflow the model's dtype (weights of 3e38) ends here instead of
    printing figures or writing predictions computed from NaN.
    """
    with np.errstate(all="ignore"):
        finite = np.isfinite(loaded.model(X)).all() and all(np.isfinite(np.asarray(o, dtype=np.float64)).all()
                                                            for o in outputs if o is not None)
    if not finite:
        raise ModelFileError(f"{model_path}: the model's outputs on {source} are not finite numbers (its weights or "
                             f"settings overflow {np.dtype(loaded.model.dtype).name}); nothing was reported or "
                             "written: re-create the model with handgrad train, or restore a good copy")


def model_features(loaded, X, source, images=False):
    """``X`` (raw features) checked against the model's input width and preprocessed.

    ``images``: ``X`` holds images (a built-in dataset, an IDX file).  A
    model file without preprocessing (``hg.save`` of a ``Sequential`` stores
    none) then gets a warning: the pixels go in as they are, which a network
    trained on scaled pixels reads wrongly.
    """
    n_features = loaded.model.n_features
    if X.shape[1] != n_features:
        raise DataError(f"{source} has {X.shape[1]} features but the model expects {n_features}; "
                        "pass data with the same columns as in training")
    if loaded.preprocessor is None:
        if images and len(X):
            warn(f"the model file stores no preprocessing, so the pixels of {source} go into the network as "
                 f"they are (0..{float(np.max(X)):g}); if it was trained on scaled pixels its predictions are "
                 "off: store the scaling in the file (save_model(..., preprocessing=...), docs/model-format.md), "
                 "or train it with handgrad train, which does")
        return np.ascontiguousarray(X, dtype=loaded.model.dtype)
    return loaded.preprocessor.transform(X, dtype=loaded.model.dtype, name=source)


def stored_feature_names(loaded):
    """The feature (column) names a model file stores, or None where it stores none usable."""
    names = loaded.metadata.get("extra", {}).get("feature_names")
    return names if isinstance(names, list) and names and all(isinstance(n, str) for n in names) else None


def columns_not_read(spec, loaded, target):
    """The columns of the CSV ``spec`` that are neither the model's features nor its targets, or None.

    ``evaluate`` (and ``derive --model --check``) leave them out when they
    read the file, as ``predict`` does: a column the run dropped (``--drop``,
    an id that need not even be a number) or one the training file lacked.
    ``target``: the target columns as the command will name them (None: the
    last column).
    """
    features = stored_feature_names(loaded)
    if features is None or not str(spec).lower().endswith(".csv"):
        return None
    from handgrad.data.loaders import target_columns
    from handgrad.data.tabular import read_csv_header

    header = read_csv_header(spec)
    targets = target_columns(target) or header[-1:]
    extra = [name for name in header if name not in features and name not in targets]
    return extra or None


def in_model_order(loaded, dataset, X, source):
    """A table's feature columns ``X`` (in ``dataset.feature_names`` order) put in the model's order, by name."""
    features = stored_feature_names(loaded)
    found = dataset.feature_names
    if features is None or found is None or list(found) == features:
        return X
    absent = [name for name in features if name not in found]
    if absent:
        shown = ", ".join(repr(name) for name in absent[:6]) + (" ..." if len(absent) > 6 else "")
        raise DataError(f"{source} lacks the feature columns {shown}, which the model was trained on; "
                        "pass a table with the training columns")
    return X[:, [list(found).index(name) for name in features]]


def check_count_targets(loss, dataset):
    """Refuse, before training, a negative target for a loss of counts (the Poisson deviance), naming the column."""
    if not isinstance(loss, PoissonDeviance):
        return
    for Y in (dataset.y_train, dataset.y_test):
        if len(Y) and (Y < 0).any():
            column = str(dataset.classes[int(np.argwhere(Y < 0)[0][1])])
            raise DataError(f"{dataset.name}: the target column {column!r} holds a negative value ({Y.min():g}); "
                            f"--loss {loss.name} models counts, which are never negative: use --loss squared-error")
