"""Losses on logits ``Z`` (n samples × K classes), with their gradients ``G = ∂J/∂Z``.

Both losses read targets either as integer labels ``y`` of shape (n,) or as a
target matrix ``Y`` of shape (n, K) (one-hot rows or class probabilities).
A loss returns ``J_data = κ Σ_r ℓ_r``, where ``ℓ_r`` is the loss of sample
(row) ``r`` and the reduction factor is ``κ = 1/n`` for ``"mean"`` and
``κ = 1`` for ``"sum"``; its backward returns ``κ ∂ℓ_r/∂z_r`` in row ``r``.

Notation, as in docs/derivations.md: ``p = softmax(z)`` for one row (``P``
for the batch), ``y_t`` the target of class ``t``, ``lse(z) = log Σ_k e^{z_k}``,
``k* = argmax_k z_k`` the row's largest logit.
"""

import numpy as np

from handgrad.errors import HandgradError
from handgrad.nn.derivation import Derivation
from handgrad.registry import LOSSES, constructor_arguments, snake_case

REDUCTIONS = ("mean", "sum")


def log_softmax(Z):
    """``log softmax(Z)`` row by row, stably.

    Subtracting the row maximum ``z_{k*}`` first leaves softmax unchanged
    (``e^{z−z_{k*}}/Σe^{z−z_{k*}} = e^z/Σe^z``) and keeps every exponent ≤ 0,
    so nothing overflows; the log-sum-exp is then
    ``lse(z) = z_{k*} + log Σ_k e^{z_k−z_{k*}}``.
    """
    shifted = Z - Z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(Z, out=None):
    """``softmax(Z)`` row by row, computed after the same max shift."""
    out = np.subtract(Z, Z.max(axis=1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)
    return out


class Loss:
    """Base class of losses on logits.  Defining a subclass registers it (see :mod:`handgrad.registry`).

    ``name`` is the spelling users type (``--loss``; the estimator's ``loss=``
    with underscores).  ``config()`` is ``{"type": class name, **constructor
    arguments}``, rebuilt as ``cls(**arguments)``.

    ``derivation`` declares the loss's maths as a layer's does (see
    :class:`handgrad.Layer`), with ``backward={"input": "∂L/∂Z = …"}``;
    ``$K`` is the number of classes and ``κ`` the factor of the reduction
    (``1/n`` for "mean", ``1`` for "sum").
    """

    name = None
    derivation = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = snake_case(cls.__name__).replace("_", "-")
        LOSSES.add(cls)

    def __init__(self, reduction="mean"):
        if reduction not in REDUCTIONS:
            raise HandgradError(f"unknown reduction {reduction!r}; choose 'mean' or 'sum'")
        self.reduction = reduction

    def _scale(self, n):
        """The reduction factor ``κ``: ``1/n`` for ``"mean"``, ``1`` for ``"sum"``."""
        return 1.0 / n if self.reduction == "mean" else 1.0

    def __call__(self, Z, y):
        return self.forward(Z, y)

    def config(self):
        return {"type": type(self).__name__, **constructor_arguments(self)}

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in constructor_arguments(self).items())
        return f"{type(self).__name__}({arguments})"


class SoftmaxCrossEntropy(Loss):
    """Softmax followed by cross-entropy: seeds 000, 001, 003 and 004.

    Forward, per sample ``r`` with ``p = softmax(z_r)``:
    ``ℓ_r = −Σ_t y_t log p_t`` (seed 004 writes ``E = −Σ_k t_k ln y_k``, its
    ``t_k`` being the target and ``y_k`` the softmax; seed 003 writes
    ``L_i = −log P(Y = y⁽ⁱ⁾)`` for a label), and ``J_data = κ Σ_r ℓ_r``.
    ``log p = z − lse(z)`` comes from the stable log-sum-exp of
    :func:`log_softmax`.

    Backward: the softmax Jacobian ``∂p_t/∂z_k = p_t([t=k] − p_k)`` (seeds
    000, 001, 004) contracted with ``∂ℓ_r/∂p_t = −y_t/p_t`` gives

        ``∂ℓ_r/∂z_k = p_k Σ_t y_t − y_k``,

    which is the fused ``p − y`` whenever the targets of a sample sum to one
    (labels, one-hot rows, probabilities).  In batch form
    ``G = ∂J/∂Z = κ (P ⊙ rowsum(Y) − Y)`` with ``κ = 1/n`` for ``"mean"`` and
    ``κ = 1`` for ``"sum"``; this is the one place the ``1/n`` of the mean is
    applied.  The general ``rowsum(Y)`` factor costs one multiply and keeps
    the gradient exact for unnormalised targets too.
    """

    derivation = Derivation(
        forward="L = −κ Σ_{r} Σ_{k} Y_{rk} log P_{rk},  P = softmax(Z)",
        backward={"input": "∂L/∂Z = κ (P ⊙ rowsum(Y) − Y)"},
        seeds=("000", "001", "003", "004"), section="softmax-cross-entropy-seeds-000-001-003-004",
        note="= κ (P − Y) when each row of Y sums to 1 (labels, one-hot rows, probabilities)")

    name = "cross-entropy"

    def forward(self, Z, y):
        shifted = Z - Z.max(axis=1, keepdims=True)        # max shift: exponents ≤ 0
        exps = np.exp(shifted)
        sums = exps.sum(axis=1, keepdims=True)
        log_p = shifted
        log_p -= np.log(sums)                             # log p = z − lse(z)
        exps /= sums
        self._P, self._y = exps, y
        if y.ndim == 1:
            total = -log_p[np.arange(len(y)), y].sum(dtype=np.float64)
        else:
            total = -(y * log_p).sum(dtype=np.float64)
        return float(total * self._scale(len(Z)))

    def backward(self, out=None):
        P, y = self._P, self._y
        n = P.shape[0]
        if out is None:
            out = np.empty_like(P)
        if y.ndim == 1:
            np.copyto(out, P)
            out[np.arange(n), y] -= 1                     # P − Y for one-hot Y
        else:
            np.multiply(P, y.sum(axis=1, keepdims=True), out=out)
            out -= y                                      # P ⊙ rowsum(Y) − Y
        if self.reduction == "mean":
            out *= 1.0 / n                                # κ = 1/n
        return out


class SoftmaxBinaryCrossEntropy(Loss):
    """Per-class binary cross-entropy on the softmax outputs: seed 002.

    Forward, per sample ``r``, with ``p = softmax(z_r)`` over ``K`` classes:

        ``ℓ_r = −Σ_t [ y_t ln p_t + (1 − y_t) ln(1 − p_t) ]``,

    and ``J_data = κ Σ_r ℓ_r``.  Seed 002 writes ``soft(z, t)`` for ``p_t``,
    ``m^{(L)}`` for ``K`` and ``C`` for its cost ``Σ_r ℓ_r`` (``"sum"``).

    ``ln p_t = z_t − lse(z)`` and ``ln(1 − p_t) = lse(z_{≠t}) − lse(z)``, where
    ``lse`` is the log-sum-exp and ``z_{≠t}`` drops class ``t`` (seed 002's
    ``soft(z_{≠t}, ·)``).  For every class but the row's largest, ``p_t ≤ ½``
    and ``log1p(−p_t)`` is accurate; for the largest class ``k*``, where
    ``1 − p_{k*}`` may round to 0, ``lse(z_{≠k*})`` is taken directly over the
    other logits.  Logits as far apart as ±1e4 give finite values.

    Backward (seed 002, section 2; verified by tests):

        ``∂ℓ_r/∂z_j = K p_j − y_j − Σ_{t≠j} (1 − y_t) soft(z_{≠t}, j)``,
        ``soft(z_{≠t}, j) = p_j / (1 − p_t) = exp(ln p_j − ln(1 − p_t))``.

    Computed in O(K) per sample: with per-class weights
    ``ρ_t = (1 − y_t)/(1 − p_t)`` for ``t ≠ k*`` (bounded by 2) and
    ``ρ_{k*} = 0``, the sum is ``p_j (Σ_t ρ_t − ρ_j)`` plus, for ``j ≠ k*``,
    the ``t = k*`` term ``(1 − y_{k*}) exp(ln p_j − ln(1 − p_{k*}))``, whose
    exponent is ≤ 0.

    At ``j = k*`` the form above cancels: for a confident correct row
    (``p_{k*} = 1 − 1e-13``, ``y_{k*} = 1``) it subtracts numbers near 1 to get
    a gradient near −1e-13.  Substituting ``1/(1 − p_t) = 1 + p_t/(1 − p_t)``
    gives the same derivative without the cancellation,

        ``∂ℓ_r/∂z_{k*} = (1 − y_{k*}) − (1 − p_{k*}) + p_{k*} Σ_{t≠k*} y_t
        − p_{k*} Σ_{t≠k*} ρ_t p_t``,

    with ``1 − p_{k*} = exp(ln(1 − p_{k*}))`` from the forward pass.
    Row ``r`` of the gradient is ``κ ∂ℓ_r/∂z_r``: ``"mean"`` divides by n
    (samples, not classes).

    In the code below ``m`` is ``K``, ``s`` holds ``P``, ``log_s`` and
    ``log_1ms`` hold ``ln p`` and ``ln(1 − p)``, and ``w`` holds ``ρ``.
    """

    derivation = Derivation(
        forward="L = −κ Σ_{r} Σ_{k} [Y_{rk} log P_{rk} + (1 − Y_{rk}) log(1 − P_{rk})],  P = softmax(Z)",
        backward={
            "input": "∂L/∂Z_{rj} = κ (K P_{rj} − Y_{rj} − Σ_{k≠j} (1 − Y_{rk}) P_{rj}/(1 − P_{rk}))"},
        seeds="002", section="softmax-binary-cross-entropy-seed-002",
        note="seed 002, section 2; computed in O(K) per row without cancellation")

    name = "softmax-bce"

    def forward(self, Z, y):
        n, m = Z.shape                                      # m = K classes
        if m < 2:
            raise HandgradError("softmax binary cross-entropy needs at least 2 classes")
        rows = np.arange(n)
        top = Z.argmax(axis=1)                              # k*, the largest logit
        shifted = Z - Z[rows, top][:, None]                 # z − z_{k*}: exponents ≤ 0
        others = shifted.copy()
        others[rows, top] = -np.inf
        others_max = others.max(axis=1)
        lse_others = others_max + np.log(np.exp(others - others_max[:, None]).sum(axis=1))
        # lse(z) − z_{k*} = ln(1 + e^{lse(z_{≠k*}) − z_{k*}}): through logaddexp
        # (a log1p inside) rather than ln Σ e^{z−max}, whose sum rounds 1 + 1e-14
        # and would leave ln p_{k*} ≈ −1e-14 with only two correct digits.
        lse = np.logaddexp(0, lse_others)
        log_s = shifted - lse[:, None]                      # ln p = z − lse(z)
        s = np.exp(log_s)                                   # p
        with np.errstate(divide="ignore"):
            log_1ms = np.log1p(-s)                          # ln(1 − p), accurate where p ≤ ½; k* redone below
        log_1ms[rows, top] = lse_others - lse               # ln(1 − p_{k*}) without cancellation
        Y = _target_matrix(y, m, Z.dtype)
        per_class = Y * log_s + (1 - Y) * log_1ms
        self._cache = (Y, s, log_s, log_1ms, top)
        return float(-per_class.sum(dtype=np.float64) * self._scale(n))

    def backward(self, out=None):
        Y, s, log_s, log_1ms, top = self._cache
        n, m = s.shape
        rows = np.arange(n)
        with np.errstate(divide="ignore", invalid="ignore"):
            w = (1 - Y) / (1 - s)                           # ρ_t; 1 − p may be 0 only at k*,
        w[rows, top] = 0                                    # whose ρ is set to 0 here
        sum_w = w.sum(axis=1, keepdims=True)
        y_top = Y[rows, top][:, None]
        exponent = log_s - log_1ms[rows, top][:, None]      # ln soft(z_{≠k*}, j) ≤ 0 for j ≠ k*
        exponent[rows, top] = -np.inf                       # the t = k* term exists only for j ≠ k*
        via_top = (1 - y_top) * np.exp(exponent)
        grad = m * s - Y - s * (sum_w - w) - via_top        # K p − y − p(Σρ − ρ) − (t = k* term)
        s_top = s[rows, top]
        grad[rows, top] = ((1 - y_top[:, 0]) - np.exp(log_1ms[rows, top])
                           + s_top * (Y.sum(axis=1) - y_top[:, 0]) - s_top * (w * s).sum(axis=1))
        if self.reduction == "mean":
            grad *= 1.0 / n                                 # κ = 1/n
        if out is None:
            return grad
        np.copyto(out, grad)
        return out


def _target_matrix(y, n_classes, dtype):
    if y.ndim == 2:
        return y.astype(dtype, copy=False)     # integer or float64 targets must not promote float32 logits
    Y = np.zeros((len(y), n_classes), dtype=dtype)
    Y[np.arange(len(y)), y] = 1
    return Y


def loss_from_config(config):
    """Rebuild a loss from ``Loss.config()`` output."""
    return LOSSES.build(config)


def loss_class(name):
    """The loss a user names: ``"cross-entropy"`` (or ``"cross_entropy"``), ``"softmax-bce"``, …"""
    return LOSSES.by_name(str(name).replace("_", "-"))


def losses():
    """``{name: class}`` of every registered loss, built-in or user-defined."""
    return LOSSES.choices()
