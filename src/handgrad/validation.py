"""Checks on user input, done before any parameter changes.

Each function returns a clean array or raises :class:`~handgrad.errors.DataError`
naming the problem and the remedy.
"""

import numpy as np

from handgrad.errors import DataError


def resolve_dtype(dtype):
    """Return ``np.float32`` or ``np.float64`` for a dtype-like value."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise DataError(f"unknown dtype {dtype!r}; use 'float32' or 'float64'") from exc
    if dt not in (np.float32, np.float64):
        raise DataError(f"dtype {dt} is not supported; use 'float32' or 'float64'")
    return dt.type


def is_sparse(X):
    """True for a SciPy sparse matrix or array (checked without importing SciPy)."""
    return not isinstance(X, np.ndarray) and hasattr(X, "tocsr") and hasattr(X, "nnz")


def check_features(X, dtype, n_features=None, name="X"):
    """Return ``X`` as a finite, non-empty, C-contiguous 2-D array of ``dtype``.

    A SciPy sparse matrix or array stays sparse: it comes back in CSR form
    (whose rows minibatches slice cheaply) with its stored values in
    ``dtype``; only those values are checked, never a dense copy made.
    """
    if is_sparse(X):
        return _check_sparse_features(X, dtype, n_features, name)
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise DataError(f"{name} cannot be read as an array ({exc}); pass a 2-D numeric array") from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise DataError(f"{name} has dtype {arr.dtype}; pass numbers (int or float), not {arr.dtype.kind!r} data")
    if arr.ndim != 2:
        raise DataError(f"{name} must be 2-D (samples x features), got shape {arr.shape}; reshape it, e.g. X.reshape(len(X), -1)")
    if arr.shape[0] == 0:
        raise DataError(f"{name} is empty (0 samples); pass at least one sample")
    if arr.shape[1] == 0:
        raise DataError(f"{name} has no features (shape {arr.shape}); pass at least one column")
    if n_features is not None and arr.shape[1] != n_features:
        raise DataError(f"{name} has {arr.shape[1]} features but the model expects {n_features}; pass data with the same columns as in training")
    with np.errstate(over="ignore"):        # finite values beyond float32's range are reported below
        out = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(out).all():
        row, col = np.argwhere(~np.isfinite(out))[0]
        if np.isfinite(arr[row, col]):
            raise DataError(f"{name} holds {arr[row, col]:g} at row {row}, column {col}, too large for "
                            f"{np.dtype(dtype).name}; rescale the features or train in float64")
        raise DataError(f"{name} contains NaN or inf (first at row {row}, column {col}); remove or impute those values")
    return out


def _check_sparse_features(X, dtype, n_features, name):
    if X.ndim != 2:
        raise DataError(f"{name} must be 2-D (samples x features), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{name} has shape {X.shape}; pass at least one sample and one feature")
    if n_features is not None and X.shape[1] != n_features:
        raise DataError(f"{name} has {X.shape[1]} features but the model expects {n_features}; pass data with the "
                        "same columns as in training")
    if X.dtype.kind not in "biuf":
        raise DataError(f"{name} has dtype {X.dtype}; pass numbers (int or float)")
    X = X.tocsr()
    if X.dtype != dtype:
        with np.errstate(over="ignore"):
            X = X.astype(dtype)
    if not np.isfinite(X.data).all():
        raise DataError(f"{name} contains NaN or inf (or values too large for {np.dtype(dtype).name}) among its "
                        "stored entries; remove, impute or rescale them")
    return X


def check_targets(y, n_samples, n_classes, dtype):
    """Return integer labels of shape (n,) or a float target matrix of shape (n, C).

    Labels must lie in ``0 .. n_classes-1``; a target matrix must be finite,
    non-negative, and have ``n_classes`` columns.
    """
    try:
        arr = np.asarray(y)
    except Exception as exc:
        raise DataError(f"y cannot be read as an array ({exc}); pass labels of shape (n,) or targets of shape (n, C)") from None
    if arr.ndim == 0 or arr.ndim > 2:
        raise DataError(f"y must be labels of shape (n,) or a target matrix (n, C), got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise DataError(f"X has {n_samples} samples but y has {arr.shape[0]}; pass one target per sample")
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise DataError(f"y has dtype {arr.dtype}; encode class labels as integers 0..{n_classes - 1} (hg.MLPClassifier accepts strings)")
    if arr.ndim == 1:
        return _check_labels(arr, n_classes)
    if arr.shape[1] != n_classes:
        raise DataError(f"target matrix has {arr.shape[1]} columns but the model has {n_classes} outputs; one column per class")
    out = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(out).all() or (out < 0).any():
        raise DataError("target matrix must be finite and non-negative; use one-hot rows or class probabilities")
    return out


def _check_labels(arr, n_classes):
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise DataError("y holds non-integer values; pass integer class labels 0..C-1")
    # The range is checked before the cast to intp: 1e30 or 2**63 would not
    # survive the cast (a RuntimeWarning, then a wrapped, misleading value).
    low, high = arr.min(), arr.max()
    if low < 0 or high >= n_classes:
        raise DataError(f"labels must lie in 0..{n_classes - 1} for a model with {n_classes} outputs, found {low:g}..{high:g}")
    return arr.astype(np.intp)


def one_hot(labels, n_classes, dtype):
    """Rows of the identity: ``Y[i, labels[i]] = 1``."""
    Y = np.zeros((labels.shape[0], n_classes), dtype=dtype)
    Y[np.arange(labels.shape[0]), labels] = 1
    return Y


def check_regression_targets(y, n_samples, n_outputs, dtype):
    """Return real targets as a finite (n, K) array of ``dtype``; (n,) is read as one column when K is 1."""
    arr = _numeric_targets(y, n_samples, "real targets of shape (n,) or (n, K)")
    arr = _as_columns(arr, n_outputs, "regression targets")
    with np.errstate(over="ignore"):        # values beyond float32's range are reported below
        out = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(out).all():
        raise DataError(f"regression targets must be finite numbers representable in {np.dtype(dtype).name}; "
                        "remove or impute NaN/inf targets, or rescale them")
    return out


def check_multilabel_targets(y, n_samples, n_outputs, dtype):
    """Return a (n, K) target matrix in [0, 1] (1: label present, 0: absent, or a probability)."""
    arr = _numeric_targets(y, n_samples, "a 0/1 target matrix of shape (n, K)")
    arr = _as_columns(arr, n_outputs, "multilabel targets")
    out = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(out).all() or (out < 0).any() or (out > 1).any():
        raise DataError("multilabel targets must lie in [0, 1], one column per label (1 present, 0 absent, "
                        "or a probability); rescale or binarise them")
    return out


def _numeric_targets(y, n_samples, expected):
    try:
        arr = np.asarray(y)
    except Exception as exc:
        raise DataError(f"y cannot be read as an array ({exc}); pass {expected}") from None
    if arr.ndim not in (1, 2):
        raise DataError(f"y must be {expected}, got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise DataError(f"X has {n_samples} samples but y has {arr.shape[0]}; pass one target per sample")
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise DataError(f"y has dtype {arr.dtype}; pass {expected} of numbers")
    return arr


def _as_columns(arr, n_outputs, what):
    if arr.ndim == 1:
        if n_outputs != 1:
            raise DataError(f"{what} of shape (n,) need a model with one output, this one has {n_outputs}; "
                            f"pass targets of shape (n, {n_outputs})")
        return arr.reshape(-1, 1)
    if arr.shape[1] != n_outputs:
        raise DataError(f"{what} have {arr.shape[1]} columns but the model has {n_outputs} outputs; "
                        "one column per output")
    return arr
