"""Checks on user input, done before any parameter changes.

Each function returns a clean array or raises :class:`~handgrad.errors.DataError`
naming the problem and the remedy.
"""

import numpy as np

from handgrad.arrays import is_foreign, ops_for, to_numpy
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
    An array of another array API namespace (a torch tensor, a CuPy array)
    is checked where it is and comes back in its namespace and on its
    device, in that namespace's ``dtype``.
    """
    if is_sparse(X):
        return _check_sparse_features(X, dtype, n_features, name)
    if is_foreign(X):
        return _check_foreign_features(X, dtype, n_features, name)
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise DataError(f"{name} cannot be read as an array ({exc}); pass a 2-D numeric array") from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise DataError(f"{name} has dtype {arr.dtype}; pass numbers (int or float), not {arr.dtype.kind!r} data")
    _check_shape(arr.shape, n_features, name)
    with np.errstate(over="ignore"):        # finite values beyond float32's range are reported below
        out = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(out).all():
        row, col = np.argwhere(~np.isfinite(out))[0]
        if np.isfinite(arr[row, col]):
            raise DataError(f"{name} holds {arr[row, col]:g} at row {row}, column {col}, too large for "
                            f"{np.dtype(dtype).name}; rescale the features or train in float64")
        raise DataError(f"{name} contains NaN or inf (first at row {row}, column {col}); remove or impute those values")
    return out


def _check_shape(shape, n_features, name):
    if len(shape) != 2:
        raise DataError(f"{name} must be 2-D (samples x features), got shape {shape}; reshape it, e.g. X.reshape(len(X), -1)")
    if shape[0] == 0:
        raise DataError(f"{name} is empty (0 samples); pass at least one sample")
    if shape[1] == 0:
        raise DataError(f"{name} has no features (shape {shape}); pass at least one column")
    if n_features is not None and shape[1] != n_features:
        raise DataError(f"{name} has {shape[1]} features but the model expects {n_features}; pass data with the same columns as in training")


def _check_foreign_features(X, dtype, n_features, name):
    """:func:`check_features` for an array of another namespace, on its device: only a failing check looks
    at the values on the host, to say where they fail."""
    ops = ops_for(X)
    if not ops.xp.isdtype(X.dtype, ("bool", "integral", "real floating")):
        raise DataError(f"{name} has dtype {X.dtype}; pass numbers (int or float)")
    _check_shape(tuple(X.shape), n_features, name)
    out = ops.astype(X, dtype, copy=False)
    if not ops.all_finite(out):
        check_features(to_numpy(X), dtype, n_features, name)     # raises, naming the first bad entry
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
