"""Feature scaling fitted on training data and stored with the model.

Two rules, chosen by the kind of data:

``"image"``
    Divide every pixel by one number, the largest absolute value in the
    training data, so pixels land in [0, 1] (or [-1, 1]): ``X' = X / s``.
    MNIST and Fashion-MNIST give ``s = 255``, scikit-learn's digits
    ``s = 16``.  One scale for all pixels keeps images looking like images
    (a per-pixel standardisation would blow up the always-black border).
    All-zero training data gives ``s = 1``.

``"tabular"``
    Standardise each column with the training mean and standard deviation
    (population form, ``ddof=0``): ``X'[:, j] = (X[:, j] - mu_j) / sigma_j``.
    A column that is constant in the training data (``max == min``) gets
    ``sigma_j = 1``, so it maps to 0 instead of dividing by zero.

Storing the fitted numbers (``to_dict``) lets ``handgrad predict`` apply
exactly the transformation that training used.  Their valid ranges are
declared once (:attr:`Preprocessor.constraints`) and applied to fitted and
stored numbers alike, in the model's dtype: a scale must be a normal
positive number there (``1e-300`` is one in float64, but 0 in float32).
"""

import numpy as np

from handgrad.constraints import Integer, Options, Real, Vector, check_settings, float_dtype
from handgrad.errors import DataError, HandgradError, ModelFileError
from handgrad.validation import check_features

KINDS = ("image", "tabular")
_REMEDY = "rescale the feature, or train in float64 (--dtype float64)"


class Preprocessor:
    """An affine map ``X' = (X - offset) / scale``, fitted by :meth:`fit`.

    Attributes
    ----------
    kind : {"image", "tabular"}
    n_features : int
        The ``d`` that :meth:`transform` expects.
    offset : float or ndarray of shape (d,)
        0 for images, the column means for tables.
    scale : float or ndarray of shape (d,)
        The pixel scale for images, the column standard deviations for tables.
    constraints : dict
        The valid range of each stored setting (:mod:`handgrad.constraints`),
        as :meth:`to_dict` names them; :meth:`fit` and :meth:`from_dict`
        apply them in the model's dtype.
    """

    constraints = {
        "kind": Options(*KINDS),
        "n_features": Integer(1, remedy="the width of the model's input"),
        "scale": Real(0, closed="neither", in_dtype=True, meaning="the divisor of every pixel"),
        "mean": Vector(Real(), meaning="the training mean of each column"),
        "std": Vector(Real(0, closed="neither", in_dtype=True),
                      meaning="the training standard deviation of each column, which divides it"),
    }

    def __init__(self, kind, n_features, offset, scale):
        self.kind = kind
        self.n_features = n_features
        self.offset = offset
        self.scale = scale

    @classmethod
    def fit(cls, X, kind, dtype=None, names=None, name="training X"):
        """Fit the rule for ``kind`` on training features ``X`` of shape (n, d).

        Parameters
        ----------
        X : array of shape (n, d)
        kind : {"image", "tabular"}
        dtype : numpy dtype, optional
            The model's; the fitted numbers must be usable in it.
        names : list of str, optional
            The columns' names, for messages.
        name : str
            What ``X`` is, for messages.

        Raises
        ------
        DataError
            ``X`` is not finite numbers, or a fitted number cannot be used in
            ``dtype`` (naming the column).
        """
        if kind not in KINDS:
            raise DataError(f"unknown preprocessing kind {kind!r}; use 'image' or 'tabular'")
        if kind == "image":
            X = check_features(X, None, name=name)     # pixels as stored: no float64 copy to find a maximum
            largest = float(np.abs(X).max())
            fitted = cls(kind, X.shape[1], 0.0, largest if largest > 0 else 1.0)
        else:
            X = check_features(X, np.float64, name=name)
            fitted = cls(kind, X.shape[1], *_column_stats(X))
        fitted._check_fitted(X, float_dtype(dtype), names, name)
        return fitted

    def _check_fitted(self, X, dtype, names, name):
        """Refuse fitted numbers outside :attr:`constraints`, naming the column and its largest value."""
        state = self.to_dict()
        try:
            check_settings("Preprocessor", self.constraints, state, dtype)
        except HandgradError as exc:
            if self.kind == "image":
                raise DataError(f"{name} cannot be scaled by its largest value {self.scale:g} ({exc}); "
                                f"{_REMEDY}") from None
            bad = ~np.isfinite(self.offset) | ~np.isfinite(self.scale) | (self.scale <= 0)
            if dtype is not None:
                info = np.finfo(dtype)
                bad |= (self.scale < info.tiny) | (self.scale > info.max)
            j = int(np.argmax(bad))
            i = int(np.argmax(np.abs(X[:, j])))
            column = repr(names[j]) if names is not None and j < len(names) else str(j)
            where = f" in {dtype.name}" if dtype is not None else ""
            raise DataError(f"{name}: column {column} cannot be standardised{where} (mean {self.offset[j]:g}, "
                            f"standard deviation {self.scale[j]:g}; its largest value is {X[i, j]:g}, in row {i}): "
                            f"{_REMEDY}") from None

    def transform(self, X, dtype=np.float64, name="X"):
        """Scale features ``X`` of shape (n, d) with the fitted numbers; a new array of ``dtype``.

        Images are converted to ``dtype`` once and divided in place, so
        60,000 MNIST images (47 MB of bytes) take one float32 array of 188 MB
        and no float64 temporary.

        Raises
        ------
        DataError
            ``X`` does not fit, or a scaled value falls outside ``dtype``'s
            range (naming ``name``, the row and the column).
        """
        if self.kind == "image":
            out = check_features(X, dtype, n_features=self.n_features, name=name)
            if isinstance(X, np.ndarray) and np.shares_memory(out, X):
                out = out.copy()            # never scale the caller's array
            with np.errstate(over="ignore"):
                out /= out.dtype.type(self.scale)     # X' = X / s, the offset being 0
        else:
            X = check_features(X, np.float64, n_features=self.n_features, name=name)
            with np.errstate(over="ignore", invalid="ignore"):
                out = ((X - self.offset) / self.scale).astype(dtype, copy=False)
        if not np.isfinite(out).all():
            row, col = np.argwhere(~np.isfinite(out))[0]
            raise DataError(f"{name} holds {np.asarray(X)[row, col]:g} at row {row}, column {col}, which scales to "
                            f"a value beyond {np.dtype(dtype).name}'s range; {_REMEDY}")
        return out

    def to_dict(self):
        """JSON-safe description: the kind and the fitted numbers (floats and lists of floats)."""
        if self.kind == "image":
            return {"kind": "image", "n_features": self.n_features, "scale": self.scale}
        return {"kind": "tabular", "mean": self.offset.tolist(), "std": self.scale.tolist()}

    @classmethod
    def from_dict(cls, state, dtype=None):
        """Rebuild a preprocessor from :meth:`to_dict` output (e.g. read from a model file).

        Each number is checked against :attr:`constraints` in ``dtype`` (the
        model's) before anything is built.

        Raises
        ------
        ModelFileError
            An unknown kind, a missing or malformed entry, a number out of range.
        """
        kind = state.get("kind") if isinstance(state, dict) else None
        if kind not in KINDS:
            raise ModelFileError(f"preprocessing kind {kind!r} is unknown; the model file is damaged or from a newer handgrad")
        needed = ("n_features", "scale") if kind == "image" else ("mean", "std")
        missing = [key for key in needed if key not in state]
        if missing:
            raise ModelFileError(f"preprocessing settings lack {', '.join(missing)}; the model file is damaged, "
                                 "train again")
        try:
            check_settings("Preprocessor", cls.constraints, {key: state[key] for key in needed}, float_dtype(dtype))
        except HandgradError as exc:
            raise ModelFileError(f"preprocessing settings are invalid ({exc}); the model file is damaged, "
                                 "train again") from None
        if kind == "image":
            return cls("image", state["n_features"], 0.0, float(state["scale"]))
        mean = np.asarray(state["mean"], dtype=np.float64)
        std = np.asarray(state["std"], dtype=np.float64)
        if mean.shape != std.shape:
            raise ModelFileError(f"preprocessing has {mean.size} column means but {std.size} standard deviations; "
                                 "the model file is damaged, train again")
        return cls("tabular", mean.size, mean, std)

    def __repr__(self):
        return f"Preprocessor(kind={self.kind!r}, n_features={self.n_features})"

    def export(self, graph, x):
        """Write :meth:`transform` into an ONNX graph (see :meth:`handgrad.Layer.export`), in its precision.

        Images are converted to the network's dtype, then divided by the
        scale; tables are standardised in float64, then converted.
        """
        if self.kind == "image":
            return graph.op("Div", graph.cast(x, graph.dtype), graph.constant(self.scale, name="scale"))
        centred = graph.op("Sub", graph.cast(x, np.float64), graph.constant(self.offset, np.float64, "mean"))
        return graph.cast(graph.op("Div", centred, graph.constant(self.scale, np.float64, "std")), graph.dtype)


def _column_stats(X):
    """Column means and population standard deviations (a constant column gets 1).

    A column of values near 1e300 has a finite mean and deviation though its
    squares overflow: where the direct computation overflows, the columns
    are divided by their largest magnitude first and the results scaled back.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = X.mean(axis=0), X.std(axis=0)
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        peak = np.abs(X).max(axis=0)
        peak[peak == 0] = 1.0
        scaled = X / peak
        mean, std = scaled.mean(axis=0) * peak, scaled.std(axis=0) * peak
    std[X.max(axis=0) == X.min(axis=0)] = 1.0
    return mean, std
