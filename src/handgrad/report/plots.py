"""PNG figures of a training run: learning curves, confusion matrix, first-layer weights.

Figures are built on :class:`matplotlib.figure.Figure` directly, never through
``pyplot``, so drawing needs no display, no backend choice and no global
figure registry: this works the same on a headless server and inside a
notebook.  Each file is written atomically (:func:`handgrad.files.atomic_write`:
a temporary file in the same folder, then :func:`os.replace`), so a crash
never leaves a half-written PNG over a good one.
"""

import math

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from handgrad.errors import DataError, HandgradError
from handgrad.files import UnwritableFolder, atomic_write
from handgrad.report.metrics import check_confusion_matrix

_DPI = 100


def plot_learning_curves(records, path):
    """Loss and accuracy per epoch, training and validation, in two panels.

    Parameters
    ----------
    records : list of dicts, as in ``hg.History.records``: each with
        ``epoch``, ``train_loss``, ``train_accuracy`` and, when the run had
        validation data, ``val_loss`` and ``val_accuracy``.
    path : where to write the PNG.
    """
    records = list(records)
    if not records:
        raise HandgradError("no epochs to plot: the history is empty; train for at least one epoch first")
    for key in ("epoch", "train_loss", "train_accuracy"):
        if any(key not in r for r in records):
            raise HandgradError(f"history records lack {key!r}; pass hg.History.records from hg.fit")
    epochs = np.array([r["epoch"] for r in records]) + 1     # records count from 0, people from 1
    fig = Figure(figsize=(10, 4), dpi=_DPI, layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, metric, title in ((loss_ax, "loss", "loss"), (acc_ax, "accuracy", "accuracy")):
        _plot_series(ax, epochs, records, f"train_{metric}", "training")
        _plot_series(ax, epochs, records, f"val_{metric}", "validation")
        ax.set(title=title, xlabel="epoch", ylabel=title)
        ax.grid(alpha=0.3)
        ax.legend()
    # Whole epochs only: a run of three epochs should not be labelled 1.5, 2.5.
    loss_ax.xaxis.get_major_locator().set_params(integer=True)
    acc_ax.xaxis.get_major_locator().set_params(integer=True)
    _save(fig, path)


def _plot_series(ax, epochs, records, key, label):
    """Draw ``key`` against epoch where the records hold it (validation may be absent)."""
    values = np.array([np.nan if r.get(key) is None else r[key] for r in records], dtype=np.float64)
    if np.isnan(values).all():
        return
    ax.plot(epochs, values, marker="o" if len(epochs) <= 30 else None, markersize=3, label=label)


def plot_confusion_matrix(cm, class_names, path):
    """The confusion matrix as a heat map with each cell's count written in it.

    Parameters
    ----------
    cm : array of shape (K, K) of counts; rows are true classes.
    class_names : K names for the axes' tick labels.
    path : where to write the PNG.
    """
    cm = check_confusion_matrix(cm)
    names = [str(name) for name in class_names]
    k = cm.shape[0]
    if len(names) != k:
        raise DataError(f"{len(names)} class names for a {k}x{k} confusion matrix; pass one name per class")
    side = min(4 + 0.45 * k, 30)
    fig = Figure(figsize=(side + 1.2, side), dpi=_DPI, layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(cm.max(), 1))
    fig.colorbar(image, ax=ax, shrink=0.8, label="samples")
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted class", ylabel="true class",
           title=f"confusion matrix (accuracy {np.trace(cm) / max(cm.sum(), 1):.3f})")
    long_names = max(map(len, names)) > 3
    ax.set_xticklabels(names, rotation=45 if long_names else 0, ha="right" if long_names else "center")
    ax.set_yticklabels(names)
    _annotate_counts(ax, cm)
    _save(fig, path)


def _annotate_counts(ax, cm):
    """Write each count in its cell, white on dark cells and black on light ones."""
    k = cm.shape[0]
    fontsize = max(4, min(10, 160 / k))
    threshold = cm.max() / 2
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=fontsize,
                    color="white" if cm[i, j] > threshold else "black")


def plot_first_layer_weights(W, image_shape, path, max_units=64):
    """Each hidden unit's incoming weights drawn as an image, in a grid.

    Column ``j`` of ``W`` holds the weights from every input pixel to hidden
    unit ``j``; reshaped to ``image_shape`` it shows the pattern that unit
    responds to.  Each tile is scaled by its own largest ``|w|`` on a
    diverging colour map centred at 0 (red positive, blue negative), so weak
    and strong units are equally readable.

    Parameters
    ----------
    W : array of shape (n_in, n_hidden), ``n_in = prod(image_shape)``.
    image_shape : (height, width) of one input image.
    path : where to write the PNG.
    max_units : draw at most this many units (the first ones).
    """
    W = np.asarray(W)
    shape = _check_image_shape(image_shape)
    if W.ndim != 2 or W.dtype.kind not in "biuf":
        raise DataError(f"W must be a 2-D numeric array (inputs x hidden units), got shape {W.shape}")
    if W.shape[0] != shape[0] * shape[1]:
        raise DataError(f"W has {W.shape[0]} inputs but image_shape {shape} holds {shape[0] * shape[1]} pixels; "
                        "pass the shape of the images the model was trained on")
    if not isinstance(max_units, (int, np.integer)) or isinstance(max_units, bool) or max_units < 1:
        raise HandgradError(f"max_units must be a positive integer, got {max_units!r}")
    n_units = min(W.shape[1], int(max_units))
    if n_units == 0:
        raise DataError("W has no hidden units (0 columns); pass a layer's weight matrix")
    mosaic, cols = _weight_mosaic(W[:, :n_units].astype(np.float64), shape)
    rows = -(-n_units // cols)
    tile_inches = 0.9
    fig = Figure(figsize=(max(cols * tile_inches, 3) + 1.0, max(rows * tile_inches, 2) + 0.6),
                 dpi=_DPI, layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(mosaic, cmap=_diverging_cmap(), vmin=-1, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"first-layer weights: {n_units} of {W.shape[1]} hidden units")
    fig.colorbar(image, ax=ax, shrink=0.8, label="w / max |w| of the unit")
    _save(fig, path)


def _check_image_shape(image_shape):
    try:
        shape = tuple(int(s) for s in image_shape)
    except (TypeError, ValueError):
        raise DataError(f"image_shape must be (height, width), got {image_shape!r}") from None
    if len(shape) != 2 or min(shape) < 1:
        raise DataError(f"image_shape must be (height, width) with positive sizes, got {image_shape!r}")
    return shape


def _weight_mosaic(W, shape):
    """Tile the columns of ``W`` (each scaled to [-1, 1]) into one image with NaN gaps.

    One ``imshow`` of a mosaic draws in milliseconds where a subplot per unit
    would take seconds for 64 units.
    """
    n_units = W.shape[1]
    cols = math.ceil(math.sqrt(n_units))
    rows = -(-n_units // cols)
    h, w = shape
    gap = max(1, min(h, w) // 8)
    mosaic = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan)
    scale = np.abs(W).max(axis=0)
    scale[scale == 0] = 1.0                  # an all-zero unit stays 0, not 0/0
    for unit in range(n_units):
        r, c = divmod(unit, cols)
        tile = (W[:, unit] / scale[unit]).reshape(h, w)
        mosaic[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tile
    return mosaic, cols


def _diverging_cmap():
    """Red-white-blue with the NaN gaps between tiles drawn light grey."""
    return colormaps["RdBu_r"].with_extremes(bad="0.85")


def _save(fig, path):
    """Write ``fig`` as PNG to ``path`` atomically, creating the folder if needed."""
    try:
        atomic_write(path, lambda handle: fig.savefig(handle, format="png"), make_folder=True)
    except UnwritableFolder as exc:
        raise HandgradError(f"cannot write {path}: {exc.strerror}; choose a folder you can write to") from None
    finally:
        fig.clear()                          # drop the artists now rather than at garbage collection
