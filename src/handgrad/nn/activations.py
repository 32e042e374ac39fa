"""More elementwise activations: LeakyReLU, ELU, Softplus and GELU.

Each is ``A = act(Z)`` forward and ``∂L/∂Z = G ⊙ act'(Z)`` backward, with
the derivative written through what the forward pass keeps.  Three of them
(LeakyReLU, ELU, Softplus) can read their derivative off the output ``A``
alone, so they declare ``in_place`` and let :class:`~handgrad.Sequential`
write ``A`` over the Dense output before them; GELU's derivative needs ``Z``.

All four are rectifier-like (close to the identity for large positive ``z``,
close to a constant for large negative ``z``), so they ask the Dense layer
before them for He initialisation, as ReLU does.

Derivations: ``docs/derivations.md``, §3 "More activations".
"""

import math

import numpy as np

from handgrad.errors import HandgradError
from handgrad.nn.derivation import Derivation
from handgrad.nn.layers import Activation


def _empty_like(X, out):
    return np.empty_like(X) if out is None else out


def _non_negative(value, what, remedy):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < 0:
        raise HandgradError(f"{what} must be a finite number ≥ 0, got {value!r}; {remedy}")
    return float(value)


class LeakyReLU(Activation):
    """ReLU with a small slope ``s`` (``negative_slope``) for negative inputs.

    Forward:  ``A = z`` for ``z > 0``, ``s z`` otherwise; for ``s ≤ 1`` that
    is ``max(z, s z)``, for ``s > 1`` it is ``min(z, s z)``.
    Backward: ``act'(z) = 1`` for ``z > 0``, ``s`` otherwise (at ``z = 0``
    the slope ``s``, as PyTorch), so ``∂L/∂Z = G ⊙ (1 if A > 0 else s)``.

    ``s ≥ 0`` is required: then ``A > 0`` exactly where ``z > 0``, and the
    output alone tells backward which slope applies (``in_place``).
    """

    derivation = Derivation(forward="A = max(Z, sZ)", backward={"input": "∂J/∂Z = G ⊙ (I(Z > 0) + s I(Z ≤ 0))"},
                            section="more-activations-leakyrelu-elu-softplus-gelu", note="s = $negative_slope")

    name = "leaky-relu"
    initializer = "he"
    in_place = True

    def __init__(self, negative_slope=0.01):
        self.negative_slope = _non_negative(
            negative_slope, "LeakyReLU negative_slope",
            "a non-negative slope keeps the sign of z in the output, which backward reads")

    def forward(self, Z, out=None):
        out = _empty_like(Z, out)
        scaled = Z * self.negative_slope        # a temporary: out may be Z itself
        if self.negative_slope <= 1:
            np.maximum(Z, scaled, out=out)
        else:
            np.minimum(Z, scaled, out=out)
        self._A = out
        return out

    def backward(self, G, out=None):
        out = _empty_like(G, out)
        np.multiply(G, self.negative_slope, out=out)     # G s where A ≤ 0 …
        np.copyto(out, G, where=self._A > 0)             # … and G where A > 0
        return out


class ELU(Activation):
    """Exponential linear unit with saturation ``−α`` (``alpha``).

    Forward:  ``A = z`` for ``z > 0``, ``α (e^z − 1)`` otherwise, computed as
    ``max(z, 0) + α expm1(min(z, 0))``: ``expm1`` keeps full precision near
    ``z = 0`` and ``min(z, 0)`` never lets ``e^z`` overflow.
    Backward: ``act'(z) = 1`` for ``z > 0``, ``α e^z = A + α`` otherwise, so
    ``∂L/∂Z = G ⊙ (1 if A > 0 else A + α)``, from ``A`` alone (``in_place``;
    it needs ``α ≥ 0``, so that ``A > 0`` exactly where ``z > 0``).  In the
    deep negative tail ``A + α`` is accurate to ``ε α`` absolutely, not
    relatively, as in PyTorch's in-place ELU; the derivative there is below
    ``ε α`` anyway.
    """

    derivation = Derivation(forward="A = max(Z, 0) + α (exp(min(Z, 0)) − 1)",
                            backward={"input": "∂J/∂Z = G ⊙ (I(Z > 0) + (A + α) I(Z ≤ 0))"},
                            section="more-activations-leakyrelu-elu-softplus-gelu",
                            note="α = $alpha; for z ≤ 0 the slope α e^z = A + α is read off the output")

    initializer = "he"
    in_place = True

    def __init__(self, alpha=1.0):
        self.alpha = _non_negative(alpha, "ELU alpha",
                                   "alpha is the size of the negative saturation −alpha (1.0 is usual)")

    def forward(self, Z, out=None):
        out = _empty_like(Z, out)
        negative_part = np.minimum(Z, 0)           # a temporary: out may be Z itself
        np.expm1(negative_part, out=negative_part)
        negative_part *= self.alpha                # α (e^{min(z,0)} − 1): 0 for z > 0
        np.maximum(Z, 0, out=out)
        out += negative_part
        self._A = out
        return out

    def backward(self, G, out=None):
        out = _empty_like(G, out)
        A = self._A
        np.add(A, self.alpha, out=out)             # α e^z = A + α where z ≤ 0
        np.copyto(out, 1, where=A > 0)             # 1 where z > 0
        out *= G
        return out


class Softplus(Activation):
    """``softplus(z) = log(1 + e^z)``, a smooth ReLU.

    Forward, without overflow for any ``z``:
    ``log(1 + e^z) = max(z, 0) + log1p(e^{−|z|})``, since for ``z > 0``,
    ``log(1 + e^z) = z + log(e^{−z} + 1)``; the exponent is ≤ 0.
    Backward: ``softplus'(z) = e^z/(1 + e^z) = σ(z)``.  From the output,
    ``e^A = 1 + e^z`` gives ``σ(z) = (e^A − 1)/e^A = 1 − e^{−A} = −expm1(−A)``,
    so ``∂L/∂Z = G ⊙ (−expm1(−A))`` (``in_place``).  ``expm1`` keeps the
    relative precision of ``σ(z) ≈ A ≈ e^z`` for very negative ``z``.
    """

    derivation = Derivation(forward="A = log(1 + exp(Z)) = max(Z, 0) + log(1 + exp(−|Z|))",
                            backward={"input": "∂J/∂Z = G ⊙ σ(Z) = G ⊙ (1 − exp(−A))"},
                            section="more-activations-leakyrelu-elu-softplus-gelu")

    initializer = "he"
    in_place = True

    def forward(self, Z, out=None):
        out = _empty_like(Z, out)
        tail = np.abs(Z)                         # a temporary: out may be Z itself
        np.negative(tail, out=tail)
        with np.errstate(under="ignore"):        # e^{−|z|} → 0 is the true limit
            np.exp(tail, out=tail)
        np.log1p(tail, out=tail)
        np.maximum(Z, 0, out=out)
        out += tail
        self._A = out
        return out

    def backward(self, G, out=None):
        out = _empty_like(G, out)
        np.negative(self._A, out=out)
        np.expm1(out, out=out)
        np.negative(out, out=out)                # σ(z) = −expm1(−A)
        out *= G
        return out


_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _erfc():
    # SciPy is imported on first use: ``import handgrad`` stays fast.
    from scipy.special import erfc

    return erfc


class GELU(Activation):
    """Gaussian error linear unit, exact form (PyTorch's default): ``A = z Φ(z)``.

    ``Φ`` is the standard normal CDF, ``Φ(z) = ½ erfc(−z/√2)``; ``erfc``
    rather than ``1 + erf`` keeps full relative precision in the negative
    tail, where ``1 + erf`` would cancel to 0.
    Backward: ``(z Φ(z))' = Φ(z) + z φ(z)`` with ``φ(z) = e^{−z²/2}/√(2π)``,
    so ``∂L/∂Z = G ⊙ (Φ + Z ⊙ φ(Z))``.  That needs ``Z`` (``z Φ(z)`` is not
    one-to-one below its minimum near ``z = −0.75``), so GELU is not
    ``in_place``: it keeps a reference to its input and ``Φ``.
    """

    derivation = Derivation(forward="A = Z ⊙ Φ(Z),  Φ(z) = ½ erfc(−z/√(2))",
                            backward={"input": "∂J/∂Z = G ⊙ (Φ(Z) + Z ⊙ φ(Z))"},
                            section="more-activations-leakyrelu-elu-softplus-gelu",
                            note="φ(z) = exp(−z²/2)/√(2π), the standard normal density")

    initializer = "he"

    def forward(self, Z, out=None):
        out = _empty_like(Z, out)
        Phi = np.multiply(Z, -_SQRT_HALF)
        _erfc()(Phi, out=Phi)
        Phi *= 0.5                                 # Φ(z) = ½ erfc(−z/√2)
        np.multiply(Z, Phi, out=out)
        self._Z, self._Phi = Z, Phi
        return out

    def backward(self, G, out=None):
        out = _empty_like(G, out)
        Z = self._Z
        with np.errstate(over="ignore", under="ignore"):   # z² → inf and e^{−z²/2} → 0 are the true limits
            np.multiply(Z, Z, out=out)
            out *= -0.5
            np.exp(out, out=out)                            # e^{−z²/2}
        out *= _INV_SQRT_2PI                                # φ(z)
        out *= Z                                            # z φ(z)
        out += self._Phi                                    # Φ(z) + z φ(z)
        out *= G
        return out
