"""Metrics: for classification the confusion matrix and what is read off it; for regression R², RMSE and
MAE; for multilabel classification label and subset accuracy.

Everything here starts from the confusion matrix ``C`` of shape (K, K), whose
rows are the true classes and columns the predicted ones, so
``C[i, j]`` counts samples of class ``i`` predicted as ``j``::

    precision_j = C[j, j] / Σ_i C[i, j]      (column j: everything predicted as j)
    recall_i    = C[i, i] / Σ_j C[i, j]      (row i: everything that truly is i)
    accuracy    = Σ_i C[i, i] / Σ C

Regression (:func:`regression_scores`), per target column ``k`` with
``SSE_k = Σ (p − y)²`` and ``SST_k = Σ (y − ȳ_k)²``: ``R²_k = 1 − SSE_k/SST_k``
(a constant column scores 1 when predicted exactly, else 0), averaged over
the columns as scikit-learn's ``r2_score`` does; RMSE and MAE over all
entries.  Multilabel (:func:`multilabel_scores`): the share of (sample,
label) entries right, and of samples with every label right.  Both agree
with the figures ``hg.fit`` reports per epoch (:meth:`handgrad.tasks.Task.tally`).
"""

import numpy as np

from handgrad.errors import DataError


def confusion_matrix(y_true, y_pred, n_classes):
    """Count (true class, predicted class) pairs.

    Parameters
    ----------
    y_true, y_pred : integer labels of shape (n,), each in ``0 .. n_classes-1``.
    n_classes : K, the number of classes (classes absent from both arrays
        still get their row and column).

    Returns
    -------
    np.ndarray of shape (K, K), dtype int64; rows are true classes.
    """
    if not isinstance(n_classes, (int, np.integer)) or isinstance(n_classes, bool) or n_classes < 1:
        raise DataError(f"n_classes must be a positive integer, got {n_classes!r}")
    y_true = _check_labels(y_true, n_classes, "y_true")
    y_pred = _check_labels(y_pred, n_classes, "y_pred")
    if y_true.shape != y_pred.shape:
        raise DataError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}; pass one prediction per sample")
    # Pair (i, j) becomes the single index i*K + j, so one bincount fills the matrix.
    counts = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).astype(np.int64)


def _check_labels(labels, n_classes, name):
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise DataError(f"{name} must be a 1-D array of labels, got shape {arr.shape}")
    if arr.size and arr.dtype.kind == "f" and (~np.isfinite(arr) | (arr != np.round(arr))).any():
        raise DataError(f"{name} holds non-integer values; pass integer class labels 0..{n_classes - 1}")
    if arr.size and arr.dtype.kind not in "biuf":
        raise DataError(f"{name} has dtype {arr.dtype}; encode class labels as integers 0..{n_classes - 1}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise DataError(f"{name} must lie in 0..{n_classes - 1}, found {arr.min()}..{arr.max()}; "
                        "check n_classes or the label encoding")
    return arr


def check_confusion_matrix(cm):
    """Return ``cm`` as a (K, K) int64 array of non-negative counts, or raise DataError."""
    arr = np.asarray(cm)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise DataError(f"a confusion matrix must be square (K, K) with K >= 1, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf" or (arr.dtype.kind == "f" and (arr != np.round(arr)).any()):
        raise DataError("a confusion matrix holds whole-number counts; build it with handgrad.report.metrics.confusion_matrix")
    if (arr < 0).any():
        raise DataError("a confusion matrix holds counts, found a negative entry; build it with "
                        "handgrad.report.metrics.confusion_matrix")
    return arr.astype(np.int64)


def precision_recall(cm):
    """Per-class precision, recall and support from a confusion matrix.

    Parameters
    ----------
    cm : array of shape (K, K), rows are true classes.

    Returns
    -------
    precision, recall : float64 arrays of shape (K,); 0 where the class was
        never predicted (precision) or never occurs (recall), like
        scikit-learn's ``zero_division=0``.
    support : int64 array of shape (K,), the number of true samples per class.
    """
    cm = check_confusion_matrix(cm)
    hits = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    # Divide only where the denominator is non-zero, so no warning is raised and 0/0 stays 0.
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    return precision, recall, support


def accuracy(cm):
    """Share of samples on the diagonal of ``cm`` (0 for an empty matrix)."""
    cm = check_confusion_matrix(cm)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else 0.0


def format_report(cm, class_names):
    """A plain-text report: accuracy, a per-class table and the confusion matrix.

    Parameters
    ----------
    cm : array of shape (K, K), rows are true classes.
    class_names : K names (any objects; shown with ``str``).

    Returns
    -------
    str, several lines without a trailing newline.
    """
    cm = check_confusion_matrix(cm)
    names = [str(name) for name in class_names]
    if len(names) != cm.shape[0]:
        raise DataError(f"{len(names)} class names for a {cm.shape[0]}x{cm.shape[0]} confusion matrix; "
                        "pass one name per class")
    lines = [f"accuracy {accuracy(cm):.4f} ({np.trace(cm)} of {cm.sum()} samples)", ""]
    lines += _class_table(cm, names)
    lines += ["", "confusion matrix (rows: true class, columns: predicted class)"]
    lines += _matrix_text(cm, names)
    return "\n".join(lines)


def _class_table(cm, names):
    precision, recall, support = precision_recall(cm)
    width = max(len("class"), *(len(n) for n in names))
    rows = [f"{'class':<{width}}  precision  recall  support"]
    for name, p, r, s in zip(names, precision, recall, support):
        rows.append(f"{name:<{width}}  {p:9.4f}  {r:6.4f}  {s:7d}")
    return rows


def _matrix_text(cm, names):
    label_width = max(len(n) for n in names)
    cell = max(max(len(n) for n in names), len(str(cm.max())))
    header = " " * label_width + "".join(f"  {n:>{cell}}" for n in names)
    rows = [f"{name:<{label_width}}" + "".join(f"  {v:>{cell}d}" for v in row) for name, row in zip(names, cm)]
    return [header] + rows


# -- regression ------------------------------------------------------------------

def regression_scores(y_true, y_pred):
    """R², RMSE and MAE, over all target columns and per column.

    Parameters
    ----------
    y_true, y_pred : arrays of shape (n,) or (n, K), the same shape.

    Returns
    -------
    dict with ``r2``, ``rmse``, ``mae`` (floats over all columns: R² their
    mean, RMSE and MAE over all entries) and ``per_target``, a dict of the
    same three as float64 arrays of shape (K,).
    """
    Y, P = _paired(y_true, y_pred)
    errors = P - Y
    sse = np.square(errors).sum(axis=0)
    sst = np.square(Y - Y.mean(axis=0)).sum(axis=0)
    constant = sst == 0
    r2 = np.where(constant, np.where(sse == 0, 1.0, 0.0), 1 - sse / np.where(constant, 1, sst))
    rmse = np.sqrt(sse / len(Y))
    mae = np.abs(errors).mean(axis=0)
    return {"r2": float(r2.mean()), "rmse": float(np.sqrt(sse.sum() / errors.size)),
            "mae": float(np.abs(errors).mean()), "per_target": {"r2": r2, "rmse": rmse, "mae": mae}}


def format_regression_report(scores, target_names):
    """R², RMSE and MAE over all targets, then a table with one row per target column."""
    names = [str(name) for name in target_names]
    per = scores["per_target"]
    if len(names) != len(per["r2"]):
        raise DataError(f"{len(names)} target names for {len(per['r2'])} target columns; pass one name per column")
    width = max(len("target"), *(len(n) for n in names))
    lines = [f"R² {scores['r2']:.4f}  RMSE {scores['rmse']:.6g}  MAE {scores['mae']:.6g}", "",
             f"{'target':<{width}}  {'R²':>7}  {'RMSE':>11}  {'MAE':>11}"]
    for name, r2, rmse, mae in zip(names, per["r2"], per["rmse"], per["mae"]):
        lines.append(f"{name:<{width}}  {r2:7.4f}  {rmse:11.6g}  {mae:11.6g}")
    return "\n".join(lines)


# -- multilabel ------------------------------------------------------------------

def multilabel_scores(y_true, y_pred):
    """Label and subset accuracy, and per label its accuracy, precision, recall and support.

    Parameters
    ----------
    y_true, y_pred : 0/1 arrays of shape (n, K) (``y_true`` may hold
        probabilities: above ½ counts as present).

    Returns
    -------
    dict with ``label_accuracy`` (share of the n·K entries right),
    ``subset_accuracy`` (share of samples with all K labels right) and
    ``per_label``: ``accuracy``, ``precision``, ``recall`` (float64, 0 where
    undefined, as scikit-learn's ``zero_division=0``) and ``support`` (int64,
    the samples where the label is present), each of shape (K,).
    """
    Y, P = _paired(y_true, y_pred)
    truth, guess = Y > 0.5, P > 0.5
    right = truth == guess
    hits = (truth & guess).sum(axis=0).astype(np.float64)
    predicted, support = guess.sum(axis=0), truth.sum(axis=0)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    return {"label_accuracy": float(right.mean()), "subset_accuracy": float(right.all(axis=1).mean()),
            "per_label": {"accuracy": right.mean(axis=0), "precision": precision, "recall": recall,
                          "support": support.astype(np.int64)}}


def format_multilabel_report(scores, label_names):
    """Label and subset accuracy, then a table with one row per label."""
    names = [str(name) for name in label_names]
    per = scores["per_label"]
    if len(names) != len(per["accuracy"]):
        raise DataError(f"{len(names)} label names for {len(per['accuracy'])} labels; pass one name per label")
    width = max(len("label"), *(len(n) for n in names))
    lines = [f"label accuracy {scores['label_accuracy']:.4f}  subset accuracy {scores['subset_accuracy']:.4f}", "",
             f"{'label':<{width}}  accuracy  precision  recall  support"]
    for name, a, p, r, s in zip(names, per["accuracy"], per["precision"], per["recall"], per["support"]):
        lines.append(f"{name:<{width}}  {a:8.4f}  {p:9.4f}  {r:6.4f}  {s:7d}")
    return "\n".join(lines)


def _paired(y_true, y_pred):
    """Both arrays as float64 (n, K) of one shape, finite; a one-line DataError otherwise."""
    Y, P = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    if P.ndim == 1:
        P = P[:, None]
    if Y.ndim != 2 or Y.shape != P.shape or len(Y) == 0:
        raise DataError(f"targets of shape {np.shape(y_true)} and predictions of shape {np.shape(y_pred)} do not "
                        "pair up; pass one non-empty row of each per sample")
    if not (np.isfinite(Y).all() and np.isfinite(P).all()):
        raise DataError("targets or predictions hold NaN or infinite values; the model may have diverged")
    return Y, P
