"""Inverted dropout: drop each unit with probability ``p`` in training, nothing at inference.

Forward, training mode: draw ``U`` uniform on [0, 1) of the input's shape
and keep ``K = [U ≥ p]`` (so a unit is kept with probability ``1 − p``);
with ``M = K / (1 − p)``,

    ``A = X ⊙ M``.

Scaling the kept units by ``1/(1 − p)`` makes ``E[A] = X``, so inference
mode is the identity ``A = X`` with nothing to rescale.

Backward: ``A`` is linear in ``X`` with the mask fixed, ``∂A_ij/∂X_ij = M_ij``,
so ``∂L/∂X = G ⊙ M`` with the mask of the forward pass (the identity after
an inference-mode forward).  Backward reads only ``M``, never ``X``, so the
layer is ``in_place``.

Randomness.  The mask comes from the layer's own NumPy generator, which
:meth:`Dropout.reseed` replaces.  ``hg.fit`` reseeds it at the start of
every epoch from ``(seed, epoch, position in the model)``: the same seed
gives the same masks, and a run resumed at epoch k draws what the
uninterrupted run drew from epoch k on.  ``hg.gradcheck`` reseeds it with
one fixed seed before every evaluation of the objective, so every
evaluation drops the same units and the objective it differentiates is a
fixed, smooth function of the parameters.  The mask is drawn on the host
whatever the layer computes on, and copied to the device: a seed drops the
same units on every backend.

Derivation: ``docs/derivations.md``, §3 "Dropout".
"""

import numpy as np

from handgrad.constraints import Real
from handgrad.nn.derivation import Derivation
from handgrad.nn.layers import Layer


class Dropout(Layer):
    """Inverted dropout: zero each unit with probability ``p`` (as PyTorch's ``p``) while training.

    Forward, training mode: ``A = X ⊙ M`` with ``M = I(U ≥ p)/(1 − p)`` for
    ``U`` uniform on [0, 1), so ``E[A] = X``; inference mode is ``A = X``.
    Backward: ``∂L/∂X = G ⊙ M`` with the mask of the forward pass (``G``
    after an inference-mode forward).

    ``initializer`` is None: the Dense layer before a Dropout is initialised
    for the activation after it.  ``mask`` is the boolean keep-mask of the
    last training-mode forward pass (None after an inference-mode one).

    Parameters
    ----------
    p : float, default 0.5
        The probability of dropping a unit, in [0, 1).

    Raises
    ------
    HandgradError
        ``p`` outside [0, 1) (``constraints``).

    See Also
    --------
    BatchNorm : The other layer whose training and inference modes differ.

    Examples
    --------
    >>> dropout = hg.Dropout(0.5)
    >>> dropout.reseed(0)
    >>> A = dropout.forward(np.ones((2, 4)))
    >>> sorted(set(A.ravel().tolist()))                 # dropped, or kept and scaled by 1/(1 − p)
    [0.0, 2.0]
    >>> np.array_equal(dropout.backward(np.ones((2, 4))), A)
    True
    >>> dropout.eval().forward(np.ones((1, 3)))         # inference mode: the identity
    array([[1., 1., 1.]])
    """

    derivation = Derivation(forward="A = X ⊙ M,  M = I(U ≥ p)/(1 − p)", backward={"input": "∂J/∂X = G ⊙ M"},
                            section="dropout",
                            note="p = $p; training mode, U uniform on [0, 1); inference mode is A = X, ∂J/∂X = G")

    in_place = True
    # p = 1 would drop every unit and scale by 1/(1 − p) = ∞.
    constraints = {"p": Real(0, 1, closed="left", meaning="the probability of dropping a unit",
                             remedy="use e.g. hg.Dropout(0.2)")}

    def __init__(self, p=0.5):
        self.p = float(p)
        self._rng = np.random.default_rng()
        self._buffer = None
        self._M = None

    def reseed(self, seed):
        self._rng = np.random.default_rng(seed)

    @property
    def mask(self):
        return None if self._M is None else self._M != 0

    def forward(self, X, out=None):
        """Return ``A = X ⊙ M`` in training mode, drawing a new mask ``M``; a copy of ``X`` in inference mode.

        Parameters
        ----------
        X : array of shape (n, d)
            The layer's input, one sample per row.
        out : array of shape (n, d), optional
            Where to write ``A``; it may be ``X`` itself (``in_place``).

        Returns
        -------
        array of shape (n, d)
            ``A`` (``out`` when given).
        """
        ops = self.ops
        out = ops.empty_like(X) if out is None else out
        if not self.training or self.p == 0:
            self._M = None
            ops.copyto(out, X)                   # inference: the identity
            return out
        M = self._draw_mask(tuple(X.shape), ops.numpy_dtype(X.dtype))
        ops.multiply(X, M, out=out)              # A = X ⊙ M
        return out

    def _draw_mask(self, shape, dtype):
        """``M = [U ≥ p] / (1 − p)`` in a host buffer reused across batches (its first rows), on the layer's
        device (for NumPy, the buffer itself)."""
        buf = self._buffer
        if buf is None or buf.dtype != dtype or buf.shape[1:] != shape[1:] or buf.shape[0] < shape[0]:
            buf = self._buffer = np.empty(shape, dtype=dtype)
        M = buf[:shape[0]]
        self._rng.random(out=M, dtype=M.dtype)   # U on [0, 1)
        np.greater_equal(M, self.p, out=M)       # K = [U ≥ p] as 0/1: kept with probability 1 − p
        M *= 1.0 / (1.0 - self.p)
        self._M = self.ops.asarray(M)
        return self._M

    def backward(self, G, out=None):
        """Return ``∂L/∂X = G ⊙ M`` with the last forward pass's mask (``G`` itself after an inference-mode one).

        Parameters
        ----------
        G : array of shape (n, d)
            ``∂L/∂A``, the gradient with respect to the output.
        out : array of shape (n, d), optional
            Where to write ``∂L/∂X``; a new array when None.

        Returns
        -------
        array of shape (n, d)
            ``∂L/∂X`` (``out`` when given).
        """
        ops = self.ops
        out = ops.empty_like(G) if out is None else out
        if self._M is None:
            ops.copyto(out, G)
        else:
            ops.multiply(G, self._M, out=out)    # ∂L/∂X = G ⊙ M
        return out

    def export(self, graph, x):
        """Nothing to write: inference mode is the identity."""
        return x
