"""Batch normalisation over the rows of a minibatch, one statistic per feature (column).

Training mode, for ``X`` of shape (n, k) (all products and divisions are
per column, broadcast over the rows):

    ``μ = (1/n) Σ_rows X``,  ``v = (1/n) Σ_rows (X − μ)²`` (biased),
    ``σ = √(v + ε)``,  ``X̂ = (X − μ)/σ``,  ``Y = γ ⊙ X̂ + β``.

Backward (derived in ``docs/derivations.md``, §3 "Batch normalisation"),
for ``G = ∂L/∂Y``:

    ``∂L/∂β = Σ_rows G``,  ``∂L/∂γ = Σ_rows G ⊙ X̂``,
    ``∂L/∂X = (γ/(nσ)) ⊙ (n G − Σ_rows G − X̂ ⊙ Σ_rows(G ⊙ X̂))``,

which the code evaluates as ``(γ/σ) ⊙ (G − ∂L/∂β / n − X̂ ⊙ ∂L/∂γ / n)``:
the two parameter gradients are the two sums the input gradient needs.

Running statistics (PyTorch's rule), updated by every training-mode forward:
``r_μ ← (1 − m) r_μ + m μ`` and ``r_v ← (1 − m) r_v + m v n/(n − 1)`` with
the *unbiased* batch variance (left unchanged for a batch of one row,
whose unbiased variance is undefined).  Inference mode normalises with
them instead: ``Y = γ ⊙ (X − r_μ)/√(r_v + ε) + β``, an affine map per
column, whose backward is ``∂L/∂X = G ⊙ γ/√(r_v + ε)`` with the same
``∂L/∂γ`` and ``∂L/∂β`` (``X̂`` now normalised by the running statistics).
"""

import numpy as np

from handgrad.constraints import Integer, Real
from handgrad.errors import HandgradError
from handgrad.nn.derivation import Derivation
from handgrad.nn.layers import Layer
from handgrad.validation import resolve_dtype


class BatchNorm(Layer):
    """Batch normalisation: normalise each feature over the batch, then scale by ``γ`` and shift by ``β``.

    Forward, training mode: ``X̂ = (X − μ)/σ`` with the batch's mean ``μ``
    and ``σ = √(v + ε)`` from its biased variance ``v``, per column, then
    ``Y = γ ⊙ X̂ + β``.  Backward, for ``G = ∂L/∂Y``: ``∂L/∂β = Σ_rows G``,
    ``∂L/∂γ = Σ_rows G ⊙ X̂`` and
    ``∂L/∂X = (γ/σ) ⊙ (G − ∂L/∂β / n − X̂ ⊙ ∂L/∂γ / n)`` (module docstring,
    and ``docs/derivations.md``, §3 "Batch normalisation").  Inference mode
    normalises with the running statistics instead.

    Parameters ``gamma`` (starts at 1) and ``beta`` (starts at 0), in that
    order; L2 decays neither (``decayed_names = ()``).  Buffers
    ``running_mean`` (starts at 0) and ``running_var`` (starts at 1) are
    saved with the model and used in inference mode.

    ``initializer`` is None, so the Dense layer before a BatchNorm is
    initialised for the activation after it.  ``in_place``: backward reads
    ``X̂`` and ``1/σ``, which forward keeps, never the input.  Its width is
    ``n_features``, in and out.

    Parameters
    ----------
    n_features : int
        The number of columns it normalises (the width of the layer before), at least 1.
    momentum : float, default 0.1
        ``m``, the weight of each batch in the running statistics, in [0, 1].
    eps : float, default 1e-5
        ``ε``, added to the variance: positive, at most 1, and representable in ``dtype``.
    dtype : {numpy.float32, numpy.float64} or str, default numpy.float32
        The dtype of the parameters and buffers.

    Raises
    ------
    HandgradError
        A setting out of its declared range (``constraints``).
    DataError
        A ``dtype`` other than float32 or float64.

    See Also
    --------
    Dropout : The other layer whose training and inference modes differ.

    Examples
    --------
    >>> bn = hg.BatchNorm(2, dtype=np.float64)
    >>> X = np.array([[1.0, 10.0], [3.0, 30.0]])
    >>> np.round(bn.forward(X), 4)                      # each column to mean 0, variance 1
    array([[-1., -1.],
           [ 1.,  1.]])
    >>> bn.running_mean                                 # (1 − m) · 0 + m μ
    array([0.2, 2. ])
    >>> dX = bn.backward(np.array([[1.0, 0.0], [0.0, 0.0]]))
    >>> bn.dbeta, np.round(bn.dgamma, 4)                # Σ G and Σ G ⊙ X̂
    (array([1., 0.]), array([-1.,  0.]))
    """

    derivation = Derivation(
        forward="A = γ ⊙ X̂ + β,  X̂ = (X − μ)/√(v + ε)",
        backward={"gamma": "∂J/∂γ = Σ_{rows} G ⊙ X̂", "beta": "∂J/∂β = Σ_{rows} G",
                  "input": "∂J/∂X = γ/√(v + ε) ⊙ (G − (∂J/∂β)/n − X̂ ⊙ (∂J/∂γ)/n)"},
        shapes={"forward": "$out ⊙ n×$in + $out", "gamma": "Σ_{rows} n×$out", "beta": "Σ_{rows} n×$out"},
        section="batch-normalisation",
        note="training mode: μ, v the batch mean and biased variance per column; ε = $eps")

    parameter_names = ("gamma", "beta")
    decayed_names = ()
    buffer_names = ("running_mean", "running_var")
    in_place = True
    # eps only keeps 1/√(v + ε) finite for a constant column: it must be positive, and at most 1,
    # or it would swamp the variances it is added to (features scaled to unit variance).
    constraints = {
        "n_features": Integer(1, remedy="give the width of the layer before, e.g. BatchNorm(128)"),
        "momentum": Real(0, 1, remedy="it is the weight of each batch in the running statistics; 0.1 is usual"),
        "eps": Real(0, closed="neither", cap=1.0, in_dtype=True, remedy="it keeps 1/√(v + eps) finite; 1e-5 is usual"),
    }

    def __init__(self, n_features, momentum=0.1, eps=1e-5, dtype=np.float32):
        self.n_features, self.momentum, self.eps = int(n_features), float(momentum), float(eps)
        dtype = resolve_dtype(dtype)
        self.gamma = np.ones(self.n_features, dtype=dtype)
        self.beta = np.zeros(self.n_features, dtype=dtype)
        self.dgamma = np.zeros_like(self.gamma)
        self.dbeta = np.zeros_like(self.beta)
        self.running_mean = np.zeros(self.n_features, dtype=dtype)
        self.running_var = np.ones(self.n_features, dtype=dtype)
        self._buffer = None

    @property
    def dtype(self):
        return self.ops.numpy_dtype(self.gamma.dtype)

    def place(self, ops):
        super().place(ops)
        self._buffer = None                 # the scratch for X̂ is allocated again where the layer now computes

    def input_width(self):
        return self.n_features

    def width_problem(self, width):
        if width == self.n_features:
            return None
        return f"normalises {self.n_features}; build it as {type(self).__name__}({width})"

    @classmethod
    def parameter_shapes(cls, config):
        return {name: (config["n_features"],) for name in cls.parameter_names + cls.buffer_names}

    def stored_state_problem(self, name):
        """A running variance read from a file must not be negative: ``√(v + ε)`` would be NaN at inference."""
        values = getattr(self, name)
        if name == "running_var" and (values < 0).any():
            return f"holds a negative running variance ({float(values.min()):g}), which no variance can be"
        return None

    # -- forward ----------------------------------------------------------------

    def forward(self, X, out=None):
        """Normalise ``X`` column by column, then return ``Y = γ ⊙ X̂ + β``; keep ``X̂`` and ``1/σ``.

        In training mode with the batch's statistics (and the running ones
        updated), in inference mode with the running statistics.

        Parameters
        ----------
        X : array of shape (n, n_features)
            The layer's input, one sample per row.
        out : array of shape (n, n_features), optional
            Where to write ``Y``; it may be ``X`` itself (``in_place``).

        Returns
        -------
        array of shape (n, n_features)
            ``Y`` (``out`` when given).

        Raises
        ------
        HandgradError
            ``X`` is not 2-D with ``n_features`` columns.
        """
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise HandgradError(f"BatchNorm({self.n_features}) got input of shape {tuple(X.shape)}; "
                                f"it normalises {self.n_features} columns")
        ops = self.ops
        out = ops.empty_like(X) if out is None else out
        Xhat = self._scratch(X.shape, X.dtype)
        if self.training:
            mean, var = self._batch_statistics(X, Xhat)
            self._update_running(mean, var, X.shape[0])
        else:
            mean, var = self.running_mean, self.running_var
            ops.subtract(X, mean, out=Xhat)
        inv_std = 1.0 / ops.sqrt(var + self.eps)              # 1/σ, per column
        Xhat *= inv_std                                       # X̂ = (X − μ)/σ
        ops.multiply(Xhat, self.gamma, out=out)
        out += self.beta                                      # Y = γ ⊙ X̂ + β
        self._Xhat, self._inv_std, self._trained = Xhat, ops.astype(inv_std, X.dtype, copy=False), self.training
        return out

    def _batch_statistics(self, X, centered):
        """``μ`` and the biased ``v`` of the columns of ``X``; leaves ``X − μ`` in ``centered``."""
        ops = self.ops
        mean = ops.mean(X, axis=0)
        ops.subtract(X, mean, out=centered)
        var = ops.vecdot(centered, centered, axis=0) / X.shape[0]
        return mean, var

    def _update_running(self, mean, var, n):
        """PyTorch's rule, with the unbiased variance ``v n/(n − 1)``; in place, so saved views stay valid."""
        m = self.momentum
        self.running_mean *= 1 - m
        self.running_mean += m * mean
        if n > 1:
            self.running_var *= 1 - m
            self.running_var += (m * n / (n - 1)) * var

    def _scratch(self, shape, dtype):
        """A buffer for ``X̂``, reused across batches (its first rows)."""
        buf = self._buffer
        if buf is None or buf.dtype != dtype or buf.shape[1] != shape[1] or buf.shape[0] < shape[0]:
            buf = self._buffer = self.ops.empty(shape, dtype=dtype)
        return buf[:shape[0], ...]

    # -- backward ---------------------------------------------------------------

    def backward(self, G, out=None):
        """Store ``dgamma = Σ_rows G ⊙ X̂`` and ``dbeta = Σ_rows G``; return ``∂L/∂X``.

        ``∂L/∂X = (γ/σ) ⊙ (G − dbeta/n − X̂ ⊙ dgamma/n)`` after a
        training-mode forward pass, ``G ⊙ γ/√(r_v + ε)`` after an
        inference-mode one.

        Parameters
        ----------
        G : array of shape (n, n_features)
            ``∂L/∂Y``, the gradient with respect to the output.
        out : array of shape (n, n_features), optional
            Where to write ``∂L/∂X``; a new array when None.

        Returns
        -------
        array of shape (n, n_features)
            ``∂L/∂X`` (``out`` when given).
        """
        ops = self.ops
        out = ops.empty_like(G) if out is None else out
        Xhat = self._Xhat
        ops.sum(G, axis=0, out=self.dbeta)
        ops.multiply(G, Xhat, out=out)                    # out as scratch for G ⊙ X̂
        ops.sum(out, axis=0, out=self.dgamma)
        scale = self.gamma * self._inv_std                # γ/σ
        if not self._trained:
            ops.multiply(G, scale, out=out)               # running statistics are constants
            return out
        n = G.shape[0]
        ops.multiply(Xhat, self.dgamma / n, out=out)      # X̂ ⊙ Σ(G ⊙ X̂)/n
        ops.subtract(G, out, out=out)
        out -= self.dbeta / n                             # G − ΣG/n − X̂ ⊙ Σ(G ⊙ X̂)/n
        out *= scale
        return out

    def export(self, graph, x):
        """Inference mode, ``γ ⊙ (X − r_μ)/√(r_v + ε) + β``, as one ONNX BatchNormalization."""
        return graph.op("BatchNormalization", x, graph.constant(self.gamma, name="gamma"),
                        graph.constant(self.beta, name="beta"), graph.constant(self.running_mean, name="running_mean"),
                        graph.constant(self.running_var, name="running_var"), epsilon=self.eps)
