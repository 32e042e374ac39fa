"""PNG figures of a training run: learning curves, confusion matrix, first-layer weights, misclassified
images; for regression predicted against true values, for multilabel classification the scores per label.

Figures are built on :class:`matplotlib.figure.Figure` directly, never through
``pyplot``, so drawing needs no display, no backend choice and no global
figure registry: this works the same on a headless server and inside a
notebook.  The margins are fixed in inches, from the sizes of the texts around
the axes (the ones whose length the data decides are measured), rather than
found by matplotlib's constrained layout: that measured every artist twice
before the real draw and cost as much as drawing, about 0.15 s a figure.
Each file is written atomically (:func:`handgrad.io.files.atomic_write`:
a temporary file in the same folder, then :func:`os.replace`), so a crash
never leaves a half-written PNG over a good one.
"""

import math
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import text_to_path

from handgrad import tasks
from handgrad.errors import DataError, HandgradError
from handgrad.io.files import UnwritableFolder, atomic_write, os_error_message
from handgrad.report.metrics import check_confusion_matrix, confusion_matrix, multilabel_scores

_DPI = 100

# The file names the command line gives these figures.  A folder handgrad writes
# plots into may hold stale ones from an earlier run; only these names are ever
# removed from it, so the user's own files there are safe.
PLOT_FILES = {
    "learning_curves": "learning_curves.png",
    "confusion_matrix": "confusion_matrix.png",
    "first_layer_weights": "first_layer_weights.png",
    "misclassified": "misclassified.png",
    "predicted_vs_true": "predicted_vs_true.png",
    "label_scores": "label_scores.png",
}

# What each curve measures: the training figures are running means over the
# epoch's minibatches (the weights change during the epoch), the validation
# ones come from samples the run never trains on.
TRAINING_LABEL = "training (running mean over the epoch's minibatches)"
VALIDATION_LABEL = "validation (held out from training)"
# The training loss is the objective each step minimised, so it carries the L2 term; the validation loss does
# not.  Where the records say how much of it is the L2 term (``l2_term``), the panel draws the training loss
# without it, so the two curves compare like with like, and the term on its own: a strong penalty (the file
# preset's 0.03) would otherwise lift the training curve far above the validation one.
TRAINING_LOSS_LABEL = "training: minibatch mean, any L2 term included"
TRAINING_DATA_LOSS_LABEL = "training: loss only (mean over the minibatches)"
L2_TERM_LABEL = "L2 term (λ/2)·Σ‖W‖², right axis (part of the objective)"
VALIDATION_LOSS_LABEL = "validation: loss only (held out)"


def plot_learning_curves(records, path, title=None, kept_epoch=None, note=None):
    """The loss and the task's figures per epoch, training and validation, one panel each.

    The figures are those of the task whose figures the records hold (see
    :attr:`handgrad.tasks.Task.figures`): accuracy for classification (two
    panels), R² and RMSE for regression, label and subset accuracy for
    multilabel classification (three panels).  A figure no record holds a
    value of (the RMSE of several targets in different units) gets no panel.
    With an L2 penalty (records holding ``l2_term``), the loss panel draws
    the training loss without the penalty, beside the penalty itself.

    Parameters
    ----------
    records : list of dicts, as in ``hg.History.records``: each with
        ``epoch``, ``train_loss``, the task's training figures
        (``train_accuracy``; ``train_r2`` and ``train_rmse``;
        ``train_label_accuracy`` and ``train_subset_accuracy``) and, when
        the run had validation data, ``val_loss`` and the same ``val_`` figures.
    path : where to write the PNG.
    title : what was trained, e.g. ``"digits, 64-128-10 relu"``; prefixes each panel's title.
    kept_epoch : the epoch whose weights the model kept (early stopping), marked on every panel.
    note : a line under the title, e.g. why and when early stopping ended the run.
    """
    records = list(records)
    if not records:
        raise HandgradError("no epochs to plot: the history is empty; train for at least one epoch first")
    for key in ("epoch", "train_loss"):
        if any(key not in r for r in records):
            raise HandgradError(f"history records lack {key!r}; pass hg.History.records from hg.fit")
    figures = {key: label for key, label in _task_figures(records).items()
               if any(r.get(f"{prefix}_{key}") is not None for r in records for prefix in ("train", "val"))}
    epochs = np.array([r["epoch"] for r in records])         # counted from 1, as the console shows them
    panels = {"loss": "loss", **figures}
    fig = Figure(figsize=(5 * len(panels), 4), dpi=_DPI)
    heading = "\n".join(part for part in (title, note) if part)
    # Top and bottom first: the y axes' tick labels (measured below for the sides) follow from their height.
    _set_margins(fig, top=_EDGE + _heading_height(heading) + _heading_height(panels["loss"]), bottom=_X_AXIS)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    twins = []
    for ax, (metric, label) in zip(axes, panels.items()):
        twin = None
        if metric == "loss":
            twin = _plot_losses(ax, epochs, records)
        else:
            _plot_series(ax, epochs, records, f"train_{metric}", TRAINING_LABEL)
            _plot_series(ax, epochs, records, f"val_{metric}", VALIDATION_LABEL)
        if kept_epoch is not None:
            ax.axvline(kept_epoch, color="0.35", linestyle=":", linewidth=1.2,
                       label=f"weights kept: epoch {kept_epoch}")
        ax.set(title=label, xlabel="epoch", ylabel=label)
        if metric == "r2":
            _clip_r2_axis(ax, records)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if twin is not None:                    # the L2 term's line, on its own axis, in the same legend
            more = twin.get_legend_handles_labels()
            handles, labels = handles + more[0], labels + more[1]
        ax.legend(handles, labels, fontsize="small")
        # Whole epochs only: a run of three epochs should not be labelled 1.5, 2.5.
        ax.xaxis.get_major_locator().set_params(integer=True)
        if len(epochs) == 1:
            ax.set_xticks(epochs)       # one epoch: its number alone, not 0.96 ... 1.04 around it
        twins.append(twin)
    _suptitle(fig, heading)         # once for the figure: a long network description fits the whole width
    # Each gap holds the right axis of the panel before it (the L2 term's, if any) and the y axis after it.
    lefts = [_y_axis_width(ax) for ax in axes]
    rights = [_y_axis_width(twin) if twin is not None else _X_OVERHANG for twin in twins]
    gaps = [right + left for right, left in zip(rights, lefts[1:])]
    _set_margins(fig, left=lefts[0], right=rights[-1], gap=max(gaps, default=0), columns=len(panels))
    _save(fig, path)


def _plot_losses(ax, epochs, records):
    """The loss panel: training and validation loss, the training one without the L2 term where it is known.

    The L2 term then goes on an axis of its own, on the right (returned): on
    the losses' axis a strong penalty (3.0 at the start of an iris run with
    the file preset) would flatten both loss curves against the bottom.
    """
    if any(r.get("l2_term") is None for r in records):
        _plot_series(ax, epochs, records, "train_loss", TRAINING_LOSS_LABEL)
        _plot_series(ax, epochs, records, "val_loss", VALIDATION_LOSS_LABEL)
        return None
    data_loss = [{"loss": r["train_loss"] - r["l2_term"]} for r in records]
    _plot_series(ax, epochs, data_loss, "loss", TRAINING_DATA_LOSS_LABEL)
    _plot_series(ax, epochs, records, "val_loss", VALIDATION_LOSS_LABEL)
    twin = ax.twinx()
    _plot_series(twin, epochs, records, "l2_term", L2_TERM_LABEL, linestyle="--", color="0.5")
    # From 0, so a small term that grows does not look like a large one; its curve kept to the lower part of
    # the panel, where the losses have come down to, so the legend finds a free corner above it.
    top = max(r["l2_term"] for r in records)
    twin.set_ylim(0, 2.5 * top if top > 0 else 1.0)
    twin.set_ylabel("L2 term (right axis)", color="0.4")
    twin.tick_params(axis="y", colors="0.4")
    return twin


def _clip_r2_axis(ax, records):
    """R² runs from −∞ to 1: an early epoch far below 0 would flatten every later one against the top, so
    the axis stops at −1, and says so."""
    values = [r.get(key) for r in records for key in ("train_r2", "val_r2") if r.get(key) is not None]
    if values and min(values) < -1:
        ax.set_ylim(-1, 1.05)
        ax.set_ylabel("R² (axis cut at −1)")


def _task_figures(records):
    """The ``{figure: axis label}`` of the task whose training figures every record holds (the one with the
    most figures, where one task's figures include another's)."""
    held = [task for task in tasks.all_tasks() if all(f"train_{f.key}" in r for f in task.figures for r in records)]
    if held:
        return {f.key: f.label for f in max(held, key=lambda task: len(task.figures)).figures}
    wanted = " or ".join("/".join(f"train_{f.key}" for f in task.figures) for task in tasks.all_tasks())
    missing = next(f"train_{f.key}" for f in tasks.CLASSIFICATION.figures
                   if any(f"train_{f.key}" not in r for r in records))
    raise HandgradError(f"history records lack {missing!r} (or another task's figures: {wanted}); "
                        "pass hg.History.records from hg.fit")


def _plot_series(ax, epochs, records, key, label, linestyle="-", color=None):
    """Draw ``key`` against epoch where the records hold it (validation may be absent).

    Training curves take the first colour of the cycle and validation ones the second, on every panel.
    """
    values = np.array([np.nan if r.get(key) is None else r[key] for r in records], dtype=np.float64)
    if np.isnan(values).all():
        return
    if color is None:
        color = "C1" if key.startswith("val_") else "C0"
    ax.plot(epochs, values, marker="o" if len(epochs) <= 30 else None, markersize=3, label=label,
            linestyle=linestyle, color=color)


def plot_confusion_matrix(cm, class_names, path, title=None):
    """The confusion matrix as a heat map with each cell's count written in it.

    Each row is normalised by its class's size.  The diagonal (the share of
    the class recognised) is drawn in blue on a 0-1 scale; the off-diagonal
    cells (the share mistaken for another class) in red on their own scale,
    whose top is the largest error share.  On one linear scale a model at 98%
    accuracy would leave every error cell as white as an empty one.

    Parameters
    ----------
    cm : array of shape (K, K) of counts; rows are true classes.
    class_names : K names for the axes' tick labels.
    path : where to write the PNG.
    title : what was evaluated, e.g. ``"fashion-mnist test split, 784-512-256-10 relu"``.
    """
    cm = check_confusion_matrix(cm)
    names = [str(name) for name in class_names]
    k = cm.shape[0]
    if len(names) != k:
        raise DataError(f"{len(names)} class names for a {k}x{k} confusion matrix; pass one name per class")
    side = min(4 + 0.45 * k, 30)
    fig = Figure(figsize=(side + 1.2, side), dpi=_DPI)
    heading = f"confusion matrix, accuracy {np.trace(cm) / max(cm.sum(), 1):.3f}"
    heading = f"{title}\n{heading}" if title else heading
    long_names = max(map(len, names)) > 3
    # The class names decide the left and the bottom margin, the colour bar's axis the right one.
    _set_margins(fig, left=_EDGE + _LABEL + _TICKS + _text_width(names), top=_EDGE + _heading_height(heading),
                 bottom=_EDGE + _LABEL + _TICKS + _x_names_height(names, rotated=long_names))
    ax = fig.subplots()
    colours, error_scale = cell_colours(cm)
    ax.imshow(colours, interpolation="nearest")
    mappable = _error_mappable(error_scale)
    _colour_bar(fig, mappable, ax, "errors: share of the true class (red scale)")
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted class", ylabel="true class", title=heading)
    ax.set_xticklabels(names, rotation=45 if long_names else 0, ha="right" if long_names else "center")
    ax.set_yticklabels(names)
    _annotate_counts(ax, cm, colours)
    _save(fig, path)


def cell_colours(cm):
    """RGBA of each cell (K, K, 4), and the row share that the error scale's top stands for.

    Diagonal: ``Blues`` of the class's recall on [0, 1].  Off-diagonal: the
    middle of ``Reds`` (see :func:`_error_cmap`) for the cell's share of its
    row on [0, largest off-diagonal share], so the worst confusion is a strong
    red however rare errors are, and a single error is still tinted; cells
    without a sample stay white.
    """
    cm = check_confusion_matrix(cm)
    rows = cm.sum(axis=1, keepdims=True).astype(np.float64)
    shares = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    diagonal = np.eye(cm.shape[0], dtype=bool)
    errors = np.where(diagonal, 0.0, shares)
    scale = max(float(errors.max()), 1e-12)
    colours = _error_cmap()(errors / scale)
    colours[diagonal] = colormaps["Blues"](shares[diagonal])
    colours[(cm == 0) & ~diagonal] = (1.0, 1.0, 1.0, 1.0)
    return colours, scale


def _error_mappable(scale):
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    return ScalarMappable(norm=Normalize(0, scale), cmap=_error_cmap())


def _error_cmap():
    """``Reds`` from 20% to 80%: the lightest errors stand out from white, the worst stay readable red."""
    from matplotlib.colors import ListedColormap

    return ListedColormap(colormaps["Reds"](np.linspace(0.2, 0.8, 256)))


def _annotate_counts(ax, cm, colours):
    """Write each count in its cell, white on dark cells and black on light ones."""
    k = cm.shape[0]
    fontsize = max(4, min(10, 160 / k))
    # Perceived lightness of the cell colour (ITU-R BT.601 weights).
    lightness = colours[..., :3] @ np.array([0.299, 0.587, 0.114])
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=fontsize,
                    color="white" if lightness[i, j] < 0.5 else "black")


def plot_first_layer_weights(W, image_shape, path, max_units=64, title=None):
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
    max_units : draw at most this many units: those with the largest
        incoming weight norm, strongest first.  A unit whose weights weight
        decay has shrunk to almost nothing shows only noise once scaled up.
    title : what was trained, e.g. ``"mnist, 784-512-256-10 relu"``.
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
    mosaic, cols = _weight_mosaic(W[:, strongest_units(W, n_units)].astype(np.float64), shape)
    rows = -(-n_units // cols)
    what = (f"first-layer weights of all {n_units} hidden units" if n_units == W.shape[1] else
            f"first-layer weights: the {n_units} of {W.shape[1]} hidden units with the largest norm")
    heading = f"{title}\n{what}" if title else what
    tile_inches = 0.9
    # As wide as the title, which a grid of a few units would cut at both ends.
    width = max(cols * tile_inches, 3, _text_width(heading.split("\n"), "large")) + 1.0
    fig = Figure(figsize=(width, max(rows * tile_inches, 2) + 0.6), dpi=_DPI)
    _set_margins(fig, left=_EDGE, bottom=_EDGE, top=_EDGE + _heading_height(heading))
    ax = fig.subplots()
    image = ax.imshow(mosaic, cmap=_diverging_cmap(), vmin=-1, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(heading)
    _colour_bar(fig, image, ax, "w / max |w| of the unit")
    _save(fig, path)


def strongest_units(W, n_units):
    """Column indices of the ``n_units`` columns of ``W`` with the largest norm, largest first (ties: lower index)."""
    norms = np.linalg.norm(np.asarray(W, dtype=np.float64), axis=0)
    return np.argsort(-norms, kind="stable")[:n_units]


def plot_misclassified(images, true_names, predicted_names, image_shape, path, max_images=36, title=None):
    """A grid of misclassified images, each captioned with its true and its predicted class.

    The grid is one image (the tiles on a white ground) with a caption above
    each tile, drawn on a single axes: a subplot per image made 36 images
    take seconds to draw.

    Parameters
    ----------
    images : array of shape (n, height*width), raw pixel values of the misclassified samples.
    true_names, predicted_names : n class names each.
    image_shape : (height, width) of one image.
    path : where to write the PNG.
    max_images : draw at most this many (the first ones).
    title : what was evaluated.
    """
    images = np.asarray(images)
    shape = _check_image_shape(image_shape)
    if images.ndim != 2 or images.shape[1] != shape[0] * shape[1]:
        raise DataError(f"images must have shape (n, {shape[0] * shape[1]}) for {shape} images, got {images.shape}")
    if not len(true_names) == len(predicted_names) == len(images):
        raise DataError(f"{len(images)} images but {len(true_names)} true and {len(predicted_names)} predicted names; "
                        "pass one of each per image")
    n = min(len(images), int(max_images))
    cols = max(1, min(6, n))
    rows = max(1, -(-n // cols))
    h, w = shape
    # Each cell: a band for the two-line caption, the tile, and a gap to the next cell.
    band, gap = int(np.ceil(0.5 * h)), max(1, w // 4)
    cell_h, cell_w = band + h + gap, w + gap
    mosaic = np.full((rows * cell_h, cols * cell_w - gap), np.nan)
    what = (f"{n} of {len(images)} misclassified images" if len(images) else "no misclassified images")
    heading = f"{title}: {what}" if title else what
    width = 1.3 * cols + 0.4            # inches; the height follows the mosaic's shape, plus the title
    height = width * mosaic.shape[0] / mosaic.shape[1] + 0.7
    fig = Figure(figsize=(max(width, _text_width([heading], "large") + 0.3), height), dpi=_DPI)
    _set_margins(fig, left=_EDGE, right=_EDGE, bottom=_EDGE, top=_EDGE + _heading_height(heading))
    ax = fig.subplots()
    ax.set_axis_off()
    for k in range(n):
        r, c = divmod(k, cols)
        top, left = r * cell_h + band, c * cell_w
        image = images[k].astype(np.float64).reshape(shape)
        span = image.max() - image.min()
        mosaic[top:top + h, left:left + w] = (image - image.min()) / span if span else 0.0
        ax.text(left + w / 2, top - 0.5, f"true {true_names[k]}\npredicted {predicted_names[k]}", fontsize=8,
                ha="center", va="bottom")
    ax.imshow(mosaic, cmap=colormaps["gray_r"].with_extremes(bad="white"), vmin=0, vmax=1,
              interpolation="nearest")
    _suptitle(fig, heading)
    _save(fig, path)


MAX_SCATTER_PANELS = 6      # target columns drawn by plot_predicted_vs_true; more would be unreadable


def plot_predicted_vs_true(y_true, y_pred, target_names, path, title=None):
    """Regression: each sample's predicted value against its true value, one panel per target column.

    A perfect model puts every point on the dashed diagonal ``predicted =
    true``; each panel's title gives the column's R² and RMSE.  At most
    :data:`MAX_SCATTER_PANELS` columns are drawn (the first ones).

    Parameters
    ----------
    y_true, y_pred : arrays of shape (n,) or (n, K), in the targets' units.
    target_names : K names, one per column.
    path : where to write the PNG.
    title : what was evaluated, e.g. ``"houses test split, 8-100-1 relu"``.
    """
    from handgrad.report.metrics import regression_scores

    scores = regression_scores(y_true, y_pred)
    Y = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    P = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
    names = [str(name) for name in target_names]
    if len(names) != Y.shape[1]:
        raise DataError(f"{len(names)} target names for {Y.shape[1]} target columns; pass one name per column")
    k = min(Y.shape[1], MAX_SCATTER_PANELS)
    shown = "" if k == Y.shape[1] else f" (the first {k} of {Y.shape[1]} targets)"
    heading = f"predicted against true values of {len(Y)} samples{shown}"
    heading = f"{title}\n{heading}" if title else heading
    fig = Figure(figsize=(4.5 * k + 0.5, 4.6), dpi=_DPI)
    # Each panel's title is two lines, the column's name over its scores, so that a long name stays over its panel.
    _set_margins(fig, top=_EDGE + _heading_height(heading) + _heading_height("name\nscores"), bottom=_X_AXIS)
    axes = np.atleast_1d(fig.subplots(1, k))
    per = scores["per_target"]
    for j, ax in enumerate(axes):
        ax.scatter(Y[:, j], P[:, j], s=10, alpha=0.6, edgecolors="none")
        low, high = min(Y[:, j].min(), P[:, j].min()), max(Y[:, j].max(), P[:, j].max())
        pad = 0.05 * (high - low) or 1.0
        ax.plot([low - pad, high + pad], [low - pad, high + pad], linestyle="--", color="0.4", linewidth=1,
                label="predicted = true")
        ax.set(xlim=(low - pad, high + pad), ylim=(low - pad, high + pad), aspect="equal",
               xlabel=f"true {names[j]}", ylabel=f"predicted {names[j]}",
               title=f"{names[j]}\nR² {per['r2'][j]:.3f}, RMSE {per['rmse'][j]:.4g}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper left")
    _suptitle(fig, heading)
    lefts = [_y_axis_width(ax) for ax in axes]
    _set_margins(fig, left=lefts[0], right=_X_OVERHANG, gap=_X_OVERHANG + max(lefts[1:], default=0), columns=k)
    _save(fig, path)


def plot_label_scores(scores, label_names, path, title=None):
    """Multilabel classification: accuracy, precision and recall of each label as grouped bars.

    Parameters
    ----------
    scores : :func:`handgrad.report.metrics.multilabel_scores` of the evaluated samples.
    label_names : one name per label.
    path : where to write the PNG.
    title : what was evaluated; the subset and label accuracy follow it.
    """
    per = scores["per_label"]
    names = [str(name) for name in label_names]
    k = len(per["accuracy"])
    if len(names) != k:
        raise DataError(f"{len(names)} label names for {k} labels; pass one name per label")
    long_names = max(map(len, names)) > 6
    heading = (f"label accuracy {scores['label_accuracy']:.3f}, "
               f"subset accuracy {scores['subset_accuracy']:.3f} (every label right)")
    heading = f"{title}\n{heading}" if title else heading
    fig = Figure(figsize=(min(max(6.5, 4 + 0.9 * k), 30) + 1.5, 4.6), dpi=_DPI)
    _set_margins(fig, top=_EDGE + _heading_height(heading), right=_EDGE + _LEGEND_WIDTH,
                 bottom=_EDGE + _TICKS + _x_names_height(names, rotated=long_names))
    ax = fig.subplots()
    x = np.arange(k)
    width = 0.27
    for offset, key in zip((-width, 0, width), ("accuracy", "precision", "recall")):
        ax.bar(x + offset, per[key], width, label=key)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=45 if long_names else 0, ha="right" if long_names else "center")
    ax.set(ylim=(0, 1.05), ylabel="share", title=heading)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))    # beside the bars, never on them
    # A long first name, slanted, reaches left of the axes as far as it reaches down.
    _set_margins(fig, left=max(_y_axis_width(ax), _EDGE + _x_names_height(names[:1], rotated=long_names)))
    _save(fig, path)


# -- held-out predictions, by task ---------------------------------------------------

@dataclass
class HeldOut:
    """Predictions on held-out samples, as the plots of a task draw them.

    ``y`` are the targets as the model's outputs read them (class indices,
    values in the targets' units, 0/1 label rows), ``predicted`` the model's
    predictions in the same form, ``names`` one name per output (class,
    target column or label).  For image data, ``images`` holds the samples'
    raw pixels (rows) and ``image_shape`` the shape of one image.
    """

    y: np.ndarray
    predicted: np.ndarray
    names: list
    images: np.ndarray = None
    image_shape: tuple = None


def plot_held_out(plot, held_out, path, title=None, max_images=36):
    """Draw the plot named ``plot`` (a task's ``test_plots`` entry) of ``held_out`` to ``path``.

    Returns the line to print about it, or None when it does not apply (a
    grid of misclassified images needs images).
    """
    return _HELD_OUT_PLOTS[plot](held_out, path, title, max_images)


def _confusion(held_out, path, title, max_images):
    cm = confusion_matrix(held_out.y, held_out.predicted, len(held_out.names))
    plot_confusion_matrix(cm, held_out.names, path, title=title)
    return f"confusion matrix plot written to {path}"


def _misclassified(held_out, path, title, max_images):
    if held_out.image_shape is None:
        return None
    names, y, predicted = held_out.names, held_out.y, held_out.predicted
    wrong = np.flatnonzero(predicted != y)
    plot_misclassified(held_out.images[wrong], [names[i] for i in y[wrong]], [names[i] for i in predicted[wrong]],
                       held_out.image_shape, path, max_images=max_images, title=title)
    return f"{len(wrong)} misclassified images, {min(len(wrong), max_images)} of them drawn in {path}"


def _predicted_vs_true(held_out, path, title, max_images):
    plot_predicted_vs_true(held_out.y, held_out.predicted, held_out.names, path, title=title)
    return f"predicted against true values plotted in {path}"


def _label_scores(held_out, path, title, max_images):
    plot_label_scores(multilabel_scores(held_out.y, held_out.predicted), held_out.names, path, title=title)
    return f"per-label scores plotted in {path}"


_HELD_OUT_PLOTS = {"confusion_matrix": _confusion, "misclassified": _misclassified,
                   "predicted_vs_true": _predicted_vs_true, "label_scores": _label_scores}


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


# -- margins ---------------------------------------------------------------------------
# In inches, at matplotlib's default font sizes: 10-point tick and axis labels, 12-point titles.

_EDGE = 0.08            # white border around the outermost texts
_TEXT = 0.16            # one line of 10-point text
_TICKS = 0.1            # a tick mark and the pad to its label, 3.5 points each
_LABEL = 0.06 + _TEXT   # an axis label and its pad (4 points)
_LINE = 0.2             # one line of a 12-point title (1.2 line spacing)
_TITLE_PAD = 0.1        # between a title and what it heads
_X_AXIS = _EDGE + _LABEL + _TEXT + _TICKS   # below a panel: the axis label and a row of numbers on the ticks
_X_OVERHANG = 0.2       # right of a panel: half the last tick label, which is centred on the axes' edge
_LEGEND_WIDTH = 1.1     # a small-font legend of "accuracy", "precision", "recall" with its handles


def _set_margins(fig, left=None, right=None, top=None, bottom=None, gap=None, columns=1):
    """Place the figure's subplots ``left`` ... ``bottom`` inches in from its edges (None: as they are), and
    ``gap`` inches apart when there are ``columns`` of them side by side (then ``left`` and ``right`` too)."""
    width, height = fig.get_size_inches()
    fractions = {"left": None if left is None else left / width,
                 "right": None if right is None else 1 - right / width,
                 "top": None if top is None else 1 - top / height,
                 "bottom": None if bottom is None else bottom / height}
    if gap is not None:
        panel = (width - left - right - (columns - 1) * gap) / columns
        fractions["wspace"] = gap / panel         # matplotlib counts the gap in panel widths
    fig.subplots_adjust(**fractions)


def _text_width(texts, size="medium"):
    """Inches the widest of ``texts`` takes at font ``size``: measured from the font, nothing drawn."""
    font = FontProperties(size=size)
    return max((text_to_path.get_text_width_height_descent(text, font, ismath=False)[0]
                for text in texts if text), default=0.0) / 72


def _x_names_height(names, rotated):
    """Inches a row of tick labels ``names`` takes below an axis: slanted at 45° when ``rotated``."""
    return (_text_width(names) + _TEXT) * math.sqrt(0.5) if rotated else _TEXT


def _y_axis_width(ax):
    """Inches the y axis of ``ax`` takes beside it, border included: ticks, the widest tick label, the label.

    The tick labels are those of the axes' present limits and height, so set both first.
    """
    width = _EDGE + _TICKS + _text_width([label.get_text() for label in ax.get_yticklabels()])
    return width + _LABEL if ax.get_ylabel() else width


def _heading_height(text):
    """Inches a (figure or axes) title of ``text`` takes with its pad, one line each; 0 without a title."""
    return (text.count("\n") + 1) * _LINE + _TITLE_PAD if text else 0.0


def _colour_bar(fig, mappable, ax, label):
    """A colour bar of ``mappable`` right of ``ax``, and the right margin its tick labels and ``label`` need.

    Its slot is hardly wider than the bar: matplotlib's default slot, 15% of the width, would shrink the
    image beside it.  Set the top and bottom margins first: they decide the bar's ticks.
    """
    bar = fig.colorbar(mappable, ax=ax, shrink=0.8, fraction=0.05, pad=0.03, label=label)
    _set_margins(fig, right=_y_axis_width(bar.ax))


def _suptitle(fig, text):
    """``text`` as the figure's title, its top :data:`_EDGE` below the figure's (none when ``text`` is empty)."""
    if text:
        fig.suptitle(text, y=1 - _EDGE / fig.get_figheight())


def _save(fig, path):
    """Write ``fig`` as PNG to ``path`` atomically, creating the folder if needed."""
    try:
        atomic_write(path, lambda handle: fig.savefig(handle, format="png"), make_folder=True)
    except UnwritableFolder as exc:
        raise HandgradError(f"cannot write {path} (its folder {os_error_message(exc)})") from None
    finally:
        fig.clear()                          # drop the artists now rather than at garbage collection
