"""Activations: elementwise functions with no parameters, the choices of ``--activation``.

Each is ``A = act(Z)`` forward and ``∂L/∂Z = G ⊙ act'(Z)`` backward, with
the derivative written through what the forward pass keeps.  The seeds'
three (sigmoid, seed 000; ReLU, seed 003; tanh, seed 004) and the identity
come first; then four rectifier-like ones.  LeakyReLU, ELU and Softplus,
like the first four, read their derivative off the output ``A`` alone, so
they declare ``in_place`` and let :class:`~handgrad.Sequential` write ``A``
over the Dense output before them; GELU's derivative needs ``Z``.

The rectifier-like ones (ReLU and the four after it: close to the identity
for large positive ``z``, close to a constant for large negative ``z``) ask
the Dense layer before them for He initialisation; the others for Glorot.

Derivations: ``docs/derivations.md``, §3 "Activations" and "More activations".
"""

import math

from handgrad.constraints import Real
from handgrad.nn.derivation import Derivation
from handgrad.nn.docsections import add_shared_sections
from handgrad.nn.layers import Layer
from handgrad.registry import LAYERS


def _empty_like(ops, X, out):
    return ops.empty_like(X) if out is None else out


# LeakyReLU's slope and ELU's α scale the negative inputs.  They must be ≥ 0 (so that the output
# keeps the sign of z, which backward reads) and are capped at 1e6: larger ones serve no model,
# and a finite setting near float32's 3.4e38 would make every negative output infinite.
_MAX_SCALE = 1e6


class Activation(Layer):
    """An elementwise function with no parameters: the choices of ``--activation``.

    ``initializer`` (default "glorot") is the scheme suited to the Dense
    layer feeding it.  ``in_place = True`` declares that ``backward`` reads
    only the output ``A``, so ``forward`` may write ``A`` over its input.

    A subclass defines ``forward(Z, out=None)``, returning ``A``, and
    ``backward(G, out=None)``, returning ``∂L/∂Z = G ⊙ act'(Z)``; defining it
    registers it under its short name, which ``--activation`` and
    :func:`mlp` accept.

    See Also
    --------
    activations : Every registered activation by name.
    Layer : The protocol every layer follows.

    Examples
    --------
    >>> issubclass(hg.ReLU, hg.Activation), hg.ReLU.initializer, hg.Tanh.initializer
    (True, 'he', 'glorot')
    >>> hg.activations()["leaky-relu"] is hg.LeakyReLU
    True
    """

    name = None
    initializer = "glorot"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        add_shared_sections(cls, _SECTIONS, out="it may be ``Z`` itself (``in_place``)." if cls.in_place
                            else "a new array when None.")


# The sections every activation's forward and backward share, written once here: each method's own
# docstring states its formula, and Activation adds these below it (numpydoc reads them there).
_SECTIONS = {
    "forward": """

        Parameters
        ----------
        Z : array of shape (n, d)
            The pre-activation, one sample per row.
        out : array of shape (n, d), optional
            Where to write ``A``; {out}

        Returns
        -------
        array of shape (n, d)
            ``A`` (``out`` when given).
        """,
    "backward": """

        Parameters
        ----------
        G : array of shape (n, d)
            ``∂L/∂A``, the gradient with respect to the output.
        out : array of shape (n, d), optional
            Where to write ``∂L/∂Z``; a new array when None.

        Returns
        -------
        array of shape (n, d)
            ``∂L/∂Z`` (``out`` when given).
        """,
}


class Identity(Activation):
    """``A = Z``; backward passes ``G`` through unchanged (a copy).

    Examples
    --------
    >>> identity = hg.Identity()
    >>> identity.forward(np.array([[-1.0, 2.0]])), identity.backward(np.array([[3.0, 4.0]]))
    (array([[-1.,  2.]]), array([[3., 4.]]))
    """

    derivation = Derivation(forward="A = Z", backward={"input": "∂J/∂Z = G"}, section="activations")

    in_place = True

    def forward(self, Z, out=None):
        """Compute ``A = Z`` (a copy)."""
        ops = self.ops
        out = _empty_like(ops, Z, out)
        ops.copyto(out, Z)
        return out

    def backward(self, G, out=None):
        """Return ``∂L/∂Z = G`` (a copy)."""
        ops = self.ops
        out = _empty_like(ops, G, out)
        ops.copyto(out, G)
        return out

    def export(self, graph, x):
        """Nothing to write: the output is the input."""
        return x


class Sigmoid(Activation):
    """Logistic activation, seed 000.

    Forward:  ``A = σ(Z) = 1 / (1 + e^{-Z})`` elementwise.
    Backward: ``σ'(z) = σ(z)(1 − σ(z))`` (seed 000 derives it by the quotient
    rule), so ``∂L/∂Z = G ⊙ A ⊙ (1 − A)``; only ``A`` is kept.

    Computed as ``1/(1 + e^{−z})`` for ``z ≥ 0`` and ``e^{z}/(1 + e^{z})`` for
    ``z < 0``: both read ``e = e^{−|z|} ∈ (0, 1]``, which never overflows, and
    neither subtracts nearly equal numbers, so ``σ`` keeps full relative
    precision down to the smallest normal number (z ≈ −87 in float32, −708
    in float64).  ``½(1 + tanh(z/2))``, the same function on paper, cancels
    in the negative tail (44% off at z = −17 in float32, 0 below −20).

    Examples
    --------
    >>> sigmoid = hg.Sigmoid()
    >>> sigmoid.forward(np.array([[0.0, -800.0, 800.0]]))
    array([[0.5, 0. , 1. ]])
    >>> sigmoid.forward(np.array([[0.0]])); sigmoid.backward(np.array([[1.0]]))   # σ'(0) = ¼
    array([[0.5]])
    array([[0.25]])
    """

    derivation = Derivation(forward="A = σ(Z) = 1/(1 + exp(−Z))",
                            backward={"input": "∂J/∂Z = G ⊙ A ⊙ (1 − A)"}, seeds="000", section="activations",
                            note="σ′(z) = σ(z)(1 − σ(z)), by the quotient rule as in seed 000")

    in_place = True

    def forward(self, Z, out=None):
        """Compute ``A = σ(Z) = 1/(1 + e^{−Z})``, keeping ``A`` for the backward pass."""
        ops = self.ops
        out = _empty_like(ops, Z, out)
        negative = ops.signbit(Z)           # read before out (maybe Z itself) is overwritten
        ops.abs(Z, out=out)
        ops.negative(out, out=out)
        with ops.errstate(under="ignore"):  # e^{−|z|} → 0 is σ's true limit, not an error
            ops.exp(out, out=out)           # e = e^{−|z|}
        denominator = out + 1               # 1 + e
        ops.copyto(out, 1, where=~negative)  # numerator: 1 for z ≥ 0, e for z < 0
        out /= denominator
        self._A = out
        return out

    def backward(self, G, out=None):
        """Return ``∂L/∂Z = G ⊙ A ⊙ (1 − A)``."""
        ops = self.ops
        out = _empty_like(ops, G, out)
        A = self._A
        ops.subtract(1, A, out=out)  # 1 − A
        out *= A                     # A (1 − A)
        out *= G                     # G ⊙ A (1 − A)
        return out

    def export(self, graph, x):
        """ONNX Sigmoid."""
        return graph.op("Sigmoid", x)


class Tanh(Activation):
    """Hyperbolic tangent, seed 004's hidden layer ``h``.

    Forward:  ``A = tanh(Z)``.
    Backward: ``tanh'(a) = 1 − tanh²(a)`` (seed 004), so ``∂L/∂Z = G ⊙ (1 − A²)``.

    Examples
    --------
    >>> tanh = hg.Tanh()
    >>> np.round(tanh.forward(np.array([[0.0, 1.0]])), 4)
    array([[0.    , 0.7616]])
    >>> np.round(tanh.backward(np.array([[1.0, 1.0]])), 4)               # 1 − tanh²
    array([[1.  , 0.42]])
    """

    derivation = Derivation(forward="A = tanh(Z)", backward={"input": "∂J/∂Z = G ⊙ (1 − A²)"},
                            seeds="004", section="activations", note="seed 004's hidden unit h, with h′ = 1 − h²")

    in_place = True

    def forward(self, Z, out=None):
        """Compute ``A = tanh(Z)``, keeping ``A`` for the backward pass."""
        ops = self.ops
        out = _empty_like(ops, Z, out)
        ops.tanh(Z, out=out)
        self._A = out
        return out

    def backward(self, G, out=None):
        """Return ``∂L/∂Z = G ⊙ (1 − A²)``."""
        ops = self.ops
        out = _empty_like(ops, G, out)
        A = self._A
        ops.multiply(A, A, out=out)  # A²
        ops.subtract(1, out, out=out)  # 1 − A²
        out *= G
        return out

    def export(self, graph, x):
        """ONNX Tanh."""
        return graph.op("Tanh", x)


class ReLU(Activation):
    """Rectified linear unit, seed 003: ``max(0, W₁X + b₁)``.

    Forward:  ``A = max(0, Z)``.
    Backward: the derivative is the indicator ``I(z > 0)`` (seed 003 writes
    it as ``I(ω₁x + b₁)``), so ``∂L/∂Z = G ⊙ I(Z > 0)``.  At ``z = 0`` the
    derivative is undefined; handgrad uses 0 there, like PyTorch.

    Examples
    --------
    >>> relu = hg.ReLU()
    >>> relu.forward(np.array([[-1.0, 0.0, 2.0]]))
    array([[0., 0., 2.]])
    >>> relu.backward(np.array([[5.0, 5.0, 5.0]]))        # the slope is 0 at z = 0
    array([[0., 0., 5.]])
    """

    derivation = Derivation(forward="A = max(0, Z)", backward={"input": "∂J/∂Z = G ⊙ I(Z > 0)"},
                            seeds="003", section="activations",
                            note="I(Z > 0) is 0 at Z = 0 (seed 003's case split takes 1 there)")

    name = "relu"
    initializer = "he"
    in_place = True

    def forward(self, Z, out=None):
        """Compute ``A = max(0, Z)``, keeping ``A`` for the backward pass."""
        ops = self.ops
        out = _empty_like(ops, Z, out)
        ops.maximum(Z, 0, out=out)
        self._A = out   # A > 0 exactly where Z > 0, so A is all backward needs
        return out

    def backward(self, G, out=None):
        """Return ``∂L/∂Z = G ⊙ I(Z > 0)``, reading ``Z > 0`` as ``A > 0``."""
        ops = self.ops
        out = _empty_like(ops, G, out)
        ops.greater(self._A, 0, out=out)  # I(Z > 0) as 0/1 in G's dtype
        out *= G
        return out

    def export(self, graph, x):
        """ONNX Relu."""
        return graph.op("Relu", x)


class LeakyReLU(Activation):
    """ReLU with a small slope ``s`` (``negative_slope``) for negative inputs.

    Forward:  ``A = z`` for ``z > 0``, ``s z`` otherwise; for ``s ≤ 1`` that
    is ``max(z, s z)``, for ``s > 1`` it is ``min(z, s z)``.
    Backward: ``act'(z) = 1`` for ``z > 0``, ``s`` otherwise (at ``z = 0``
    the slope ``s``, as PyTorch), so ``∂L/∂Z = G ⊙ (1 if A > 0 else s)``.

    ``s ≥ 0`` is required: then ``A > 0`` exactly where ``z > 0``, and the
    output alone tells backward which slope applies (``in_place``).

    Parameters
    ----------
    negative_slope : float, default 0.01
        ``s``, the slope for negative inputs: at least 0 and at most 1e6.

    Raises
    ------
    HandgradError
        A negative or non-finite slope, or one above 1e6 (``constraints``).

    Examples
    --------
    >>> leaky = hg.LeakyReLU(0.1)
    >>> leaky.forward(np.array([[-2.0, 3.0]]))
    array([[-0.2,  3. ]])
    >>> leaky.backward(np.array([[1.0, 1.0]]))
    array([[0.1, 1. ]])
    """

    derivation = Derivation(forward="A = max(Z, sZ)", backward={"input": "∂J/∂Z = G ⊙ (I(Z > 0) + s I(Z ≤ 0))"},
                            section="more-activations-leakyrelu-elu-softplus-gelu", note="s = $negative_slope")

    name = "leaky-relu"
    initializer = "he"
    in_place = True
    constraints = {"negative_slope": Real(0, cap=_MAX_SCALE, remedy=(
        "a non-negative slope keeps the sign of z in the output, which backward reads, and a slope up to 1e6 "
        "keeps float32 outputs finite; 0.01 is usual"))}

    def __init__(self, negative_slope=0.01):
        self.negative_slope = float(negative_slope)

    def forward(self, Z, out=None):
        """Compute ``A = Z`` where ``Z > 0``, ``s Z`` elsewhere, keeping ``A`` for the backward pass."""
        ops = self.ops
        out = _empty_like(ops, Z, out)
        scaled = Z * self.negative_slope        # a temporary: out may be Z itself
        if self.negative_slope <= 1:
            ops.maximum(Z, scaled, out=out)
        else:
            ops.minimum(Z, scaled, out=out)
        self._A = out
        return out

    def backward(self, G, out=None):
        """Return ``∂L/∂Z = G ⊙ (1 if A > 0 else s)``."""
        ops = self.ops
        out = _empty_like(ops, G, out)
        ops.multiply(G, self.negative_slope, out=out)    # G s where A ≤ 0 …
        ops.copyto(out, G, where=self._A > 0)            # … and G where A > 0
        return out

    def export(self, graph, x):
        """ONNX LeakyRelu (``x`` for ``x ≥ 0``, ``s x`` otherwise: the same function for any ``s ≥ 0``)."""
        return graph.op("LeakyRelu", x, alpha=self.negative_slope)


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

    Parameters
    ----------
    alpha : float, default 1.0
        ``α``, the size of the negative saturation ``−α``: at least 0 and at most 1e6.

    Raises
    ------
    HandgradError
        A negative or non-finite ``alpha``, or one above 1e6 (``constraints``).

    Examples
    --------
    >>> elu = hg.ELU(alpha=1.0)
    >>> np.round(elu.forward(np.array([[-1.0, 2.0]])), 4)
    array([[-0.6321,  2.    ]])
    >>> np.round(elu.backward(np.array([[1.0, 1.0]])), 4)      # α e^z = A + α for z ≤ 0
    array([[0.3679, 1.    ]])
    """

    derivation = Derivation(forward="A = max(Z, 0) + α (exp(min(Z, 0)) − 1)",
                            backward={"input": "∂J/∂Z = G ⊙ (I(Z > 0) + (A + α) I(Z ≤ 0))"},
                            section="more-activations-leakyrelu-elu-softplus-gelu",
                            note="α = $alpha; for z ≤ 0 the slope α e^z = A + α is read off the output")

    initializer = "he"
    in_place = True
    constraints = {"alpha": Real(0, cap=_MAX_SCALE, remedy=(
        "alpha is the size of the negative saturation −alpha: ≥ 0 so that the output keeps the sign of z, "
        "up to 1e6 so that float32 outputs stay finite; 1.0 is usual"))}

    def __init__(self, alpha=1.0):
        self.alpha = float(alpha)

    def forward(self, Z, out=None):
        """Compute ``A = max(Z, 0) + α expm1(min(Z, 0))``, keeping ``A`` for the backward pass."""
        ops = self.ops
        out = _empty_like(ops, Z, out)
        negative_part = ops.minimum(Z, 0)          # a temporary: out may be Z itself
        ops.expm1(negative_part, out=negative_part)
        negative_part *= self.alpha                # α (e^{min(z,0)} − 1): 0 for z > 0
        ops.maximum(Z, 0, out=out)
        out += negative_part
        self._A = out
        return out

    def backward(self, G, out=None):
        """Return ``∂L/∂Z = G ⊙ (1 if A > 0 else A + α)``."""
        ops = self.ops
        out = _empty_like(ops, G, out)
        A = self._A
        ops.add(A, self.alpha, out=out)            # α e^z = A + α where z ≤ 0
        ops.copyto(out, 1, where=A > 0)            # 1 where z > 0
        out *= G
        return out

    def export(self, graph, x):
        """ONNX Elu."""
        return graph.op("Elu", x, alpha=self.alpha)


class Softplus(Activation):
    """``softplus(z) = log(1 + e^z)``, a smooth ReLU.

    Forward, without overflow for any ``z``:
    ``log(1 + e^z) = max(z, 0) + log1p(e^{−|z|})``, since for ``z > 0``,
    ``log(1 + e^z) = z + log(e^{−z} + 1)``; the exponent is ≤ 0.
    Backward: ``softplus'(z) = e^z/(1 + e^z) = σ(z)``.  From the output,
    ``e^A = 1 + e^z`` gives ``σ(z) = (e^A − 1)/e^A = 1 − e^{−A} = −expm1(−A)``,
    so ``∂L/∂Z = G ⊙ (−expm1(−A))`` (``in_place``).  ``expm1`` keeps the
    relative precision of ``σ(z) ≈ A ≈ e^z`` for very negative ``z``.

    Examples
    --------
    >>> softplus = hg.Softplus()
    >>> np.round(softplus.forward(np.array([[0.0, 1000.0]])), 4)     # log 2, and no overflow
    array([[6.931e-01, 1.000e+03]])
    >>> np.round(softplus.backward(np.array([[1.0, 1.0]])), 4)      # σ(z)
    array([[0.5, 1. ]])
    """

    derivation = Derivation(forward="A = log(1 + exp(Z)) = max(Z, 0) + log(1 + exp(−|Z|))",
                            backward={"input": "∂J/∂Z = G ⊙ σ(Z) = G ⊙ (1 − exp(−A))"},
                            section="more-activations-leakyrelu-elu-softplus-gelu")

    initializer = "he"
    in_place = True

    def forward(self, Z, out=None):
        """Compute ``A = max(Z, 0) + log1p(e^{−|Z|})``, keeping ``A`` for the backward pass."""
        ops = self.ops
        out = _empty_like(ops, Z, out)
        tail = ops.abs(Z)                        # a temporary: out may be Z itself
        ops.negative(tail, out=tail)
        with ops.errstate(under="ignore"):       # e^{−|z|} → 0 is the true limit
            ops.exp(tail, out=tail)
        ops.log1p(tail, out=tail)
        ops.maximum(Z, 0, out=out)
        out += tail
        self._A = out
        return out

    def backward(self, G, out=None):
        """Return ``∂L/∂Z = G ⊙ σ(Z) = G ⊙ (−expm1(−A))``."""
        ops = self.ops
        out = _empty_like(ops, G, out)
        ops.negative(self._A, out=out)
        ops.expm1(out, out=out)
        ops.negative(out, out=out)               # σ(z) = −expm1(−A)
        out *= G
        return out

    def export(self, graph, x):
        """ONNX Softplus (ONNX Runtime's is stable for large ``|z|`` too: ``softplus(200) = 200``)."""
        return graph.op("Softplus", x)


_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class GELU(Activation):
    """Gaussian error linear unit, exact form (PyTorch's default): ``A = z Φ(z)``.

    ``Φ`` is the standard normal CDF, ``Φ(z) = ½ erfc(−z/√2)``; ``erfc``
    rather than ``1 + erf`` keeps full relative precision in the negative
    tail, where ``1 + erf`` would cancel to 0.
    Backward: ``(z Φ(z))' = Φ(z) + z φ(z)`` with ``φ(z) = e^{−z²/2}/√(2π)``,
    so ``∂L/∂Z = G ⊙ (Φ + Z ⊙ φ(Z))``.  That needs ``Z`` (``z Φ(z)`` is not
    one-to-one below its minimum near ``z = −0.75``), so GELU is not
    ``in_place``: it keeps a reference to its input and ``Φ``.

    Examples
    --------
    >>> gelu = hg.GELU()
    >>> np.round(gelu.forward(np.array([[-1.0, 0.0, 1.0]])), 4)
    array([[-0.1587,  0.    ,  0.8413]])
    >>> np.round(gelu.backward(np.array([[1.0, 1.0, 1.0]])), 4)     # Φ(z) + z φ(z)
    array([[-0.0833,  0.5   ,  1.0833]])
    """

    derivation = Derivation(forward="A = Z ⊙ Φ(Z),  Φ(z) = ½ erfc(−z/√(2))",
                            backward={"input": "∂J/∂Z = G ⊙ (Φ(Z) + Z ⊙ φ(Z))"},
                            section="more-activations-leakyrelu-elu-softplus-gelu",
                            note="φ(z) = exp(−z²/2)/√(2π), the standard normal density")

    initializer = "he"

    def forward(self, Z, out=None):
        """Compute ``A = Z ⊙ Φ(Z)``, keeping ``Z`` and ``Φ(Z)`` for the backward pass."""
        ops = self.ops
        out = _empty_like(ops, Z, out)
        Phi = ops.multiply(Z, -_SQRT_HALF)
        ops.erfc(Phi, out=Phi)
        Phi *= 0.5                                 # Φ(z) = ½ erfc(−z/√2)
        ops.multiply(Z, Phi, out=out)
        self._Z, self._Phi = Z, Phi
        return out

    def backward(self, G, out=None):
        """Return ``∂L/∂Z = G ⊙ (Φ(Z) + Z ⊙ φ(Z))``."""
        ops = self.ops
        out = _empty_like(ops, G, out)
        Z = self._Z
        with ops.errstate(over="ignore", under="ignore"):  # z² → inf and e^{−z²/2} → 0 are the true limits
            ops.multiply(Z, Z, out=out)
            out *= -0.5
            ops.exp(out, out=out)                           # e^{−z²/2}
        out *= _INV_SQRT_2PI                                # φ(z)
        out *= Z                                            # z φ(z)
        out += self._Phi                                    # Φ(z) + z φ(z)
        out *= G
        return out

    def export(self, graph, x):
        """ONNX Gelu, exact (erf) form: opset 20 on."""
        return graph.op("Gelu", x)


def activation(name):
    """The activation class a user names (``"relu"``, ``"leaky-relu"`` or ``"leaky_relu"``)."""
    return LAYERS.by_name(str(name).replace("_", "-"), where=lambda cls: issubclass(cls, Activation),
                         what="activation")


def activations():
    """``{name: class}`` of every registered activation, built-in or user-defined.

    Returns
    -------
    dict of str to type
        Each activation's short name (``"relu"``, ``"leaky-relu"``) and its class.

    See Also
    --------
    losses : The same table for the losses.

    Examples
    --------
    >>> hg.activations()["relu"]
    <class 'handgrad.nn.activations.ReLU'>
    >>> {"sigmoid", "tanh", "relu", "gelu"} <= set(hg.activations())
    True
    """
    return LAYERS.choices(where=lambda cls: issubclass(cls, Activation))
