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
exactly the transformation that training used.
"""

import numpy as np

from handgrad.errors import DataError, ModelFileError
from handgrad.validation import check_features

KINDS = ("image", "tabular")


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
    """

    def __init__(self, kind, n_features, offset, scale):
        self.kind = kind
        self.n_features = n_features
        self.offset = offset
        self.scale = scale

    @classmethod
    def fit(cls, X, kind):
        """Fit the rule for ``kind`` on training features ``X`` of shape (n, d)."""
        if kind not in KINDS:
            raise DataError(f"unknown preprocessing kind {kind!r}; use 'image' or 'tabular'")
        if kind == "image":
            X = check_features(X, None, name="training X")     # pixels as stored: no float64 copy to find a maximum
            largest = float(np.abs(X).max())
            return cls(kind, X.shape[1], 0.0, largest if largest > 0 else 1.0)
        X = check_features(X, np.float64, name="training X")
        std = X.std(axis=0)
        std[X.max(axis=0) == X.min(axis=0)] = 1.0
        return cls(kind, X.shape[1], X.mean(axis=0), std)

    def transform(self, X, dtype=np.float64):
        """Scale features ``X`` of shape (n, d) with the fitted numbers; a new array of ``dtype``.

        Images are converted to ``dtype`` once and divided in place, so
        60,000 MNIST images (47 MB of bytes) take one float32 array of 188 MB
        and no float64 temporary.
        """
        if self.kind == "image":
            out = check_features(X, dtype, n_features=self.n_features)
            if isinstance(X, np.ndarray) and np.shares_memory(out, X):
                out = out.copy()            # never scale the caller's array
            out /= out.dtype.type(self.scale)     # X' = X / s, the offset being 0
            return out
        X = check_features(X, np.float64, n_features=self.n_features)
        return ((X - self.offset) / self.scale).astype(dtype, copy=False)

    def to_dict(self):
        """JSON-safe description: the kind and the fitted numbers (floats and lists of floats)."""
        if self.kind == "image":
            return {"kind": "image", "n_features": self.n_features, "scale": self.scale}
        return {"kind": "tabular", "mean": self.offset.tolist(), "std": self.scale.tolist()}

    @classmethod
    def from_dict(cls, state):
        """Rebuild a preprocessor from :meth:`to_dict` output (e.g. read from a model file)."""
        kind = state.get("kind") if isinstance(state, dict) else None
        if kind not in KINDS:
            raise ModelFileError(f"preprocessing kind {kind!r} is unknown; the model file is damaged or from a newer handgrad")
        try:
            if kind == "image":
                return cls._image_from_dict(state)
            return cls._tabular_from_dict(state)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ModelFileError(f"preprocessing settings are malformed ({type(exc).__name__}: {exc}); the model file is damaged, train again") from None

    @classmethod
    def _image_from_dict(cls, state):
        n_features, scale = state["n_features"], float(state["scale"])
        if not isinstance(n_features, int) or n_features < 1 or not (np.isfinite(scale) and scale > 0):
            raise ValueError("n_features must be a positive int and scale a positive number")
        return cls("image", n_features, 0.0, scale)

    @classmethod
    def _tabular_from_dict(cls, state):
        mean = np.asarray(state["mean"], dtype=np.float64)
        std = np.asarray(state["std"], dtype=np.float64)
        if mean.ndim != 1 or mean.shape != std.shape or mean.size == 0:
            raise ValueError("mean and std must be equal-length, non-empty lists of numbers")
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise ValueError("mean and std must be finite, std positive")
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
