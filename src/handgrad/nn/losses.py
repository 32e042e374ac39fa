"""Losses on logits ``Z`` (n samples × K outputs), with their gradients ``G = ∂J/∂Z``.

Each loss points at its :class:`~handgrad.tasks.Task`, which checks its
targets and names its figures, and reads its predictions off the logits:

* classification (the two softmax losses): the largest logit's index;
* regression (:class:`SquaredError`, :class:`PoissonDeviance`): the logits
  themselves (squared error) or their exponentials (Poisson);
* multilabel (:class:`SigmoidBinaryCrossEntropy`): label k is present when
  ``σ(z_k) > ½``.

A loss returns ``J_data = κ Σ_r ℓ_r``, where ``ℓ_r`` is the loss of sample
(row) ``r`` and the reduction factor is ``κ = 1/n`` for ``"mean"`` (n
samples, never outputs) and ``κ = 1`` for ``"sum"``; its backward returns
``κ ∂ℓ_r/∂z_r`` in row ``r``.

Notation, as in docs/derivations.md: ``p = softmax(z)`` for one row (``P``
for the batch), ``y_t`` the target of class ``t``, ``lse(z) = log Σ_k e^{z_k}``,
``k* = argmax_k z_k`` the row's largest logit.

Arrays.  A loss computes in the namespace and on the device of its logits
(:func:`handgrad.arrays.ops_for`), picked once per ``forward`` and kept for
``backward``; targets and sample weights from elsewhere (NumPy targets for
PyTorch logits) are copied there.  Values are Python floats, summed in
float64.
"""

import numpy as np

from handgrad import _compiled
from handgrad.arrays import ops_for
from handgrad.constraints import Options
from handgrad.errors import DataError, HandgradError
from handgrad.nn.derivation import Derivation
from handgrad.nn.docsections import add_shared_sections
from handgrad.registry import LOSSES, Registered
from handgrad.tasks import CLASSIFICATION, MULTILABEL, REGRESSION
from handgrad.tasks import get as task_named

REDUCTIONS = ("mean", "sum")


def log_softmax(Z):
    """``log softmax(Z)`` row by row, stably.

    Subtracting the row maximum ``z_{k*}`` first leaves softmax unchanged
    (``e^{z−z_{k*}}/Σe^{z−z_{k*}} = e^z/Σe^z``) and keeps every exponent ≤ 0,
    so nothing overflows; the log-sum-exp is then
    ``lse(z) = z_{k*} + log Σ_k e^{z_k−z_{k*}}``.

    Parameters
    ----------
    Z : array of shape (n, K)
        Logits, one sample per row, in any array API namespace.

    Returns
    -------
    array of shape (n, K)
        ``log p = z − lse(z)`` for each row, in ``Z``'s namespace.

    See Also
    --------
    softmax : ``exp`` of the same, computed after the same shift.

    Examples
    --------
    >>> hg.log_softmax(np.array([[1000.0, 0.0]]))      # e^1000 would overflow
    array([[    0., -1000.]])
    >>> np.round(hg.log_softmax(np.array([[0.0, 0.0]])), 4)
    array([[-0.6931, -0.6931]])
    """
    ops = ops_for(Z)
    shifted = Z - ops.max(Z, axis=1, keepdims=True)
    return shifted - ops.log(ops.sum(ops.exp(shifted), axis=1, keepdims=True))


def softmax(Z, out=None):
    """``softmax(Z)`` row by row, computed after the same max shift.

    ``p_k = e^{z_k − z_{k*}} / Σ_j e^{z_j − z_{k*}}``: every exponent is ≤ 0,
    so no row overflows, and each row sums to 1.

    Parameters
    ----------
    Z : array of shape (n, K)
        Logits, one sample per row, in any array API namespace.
    out : array of shape (n, K), optional
        Where to write the probabilities (it may be ``Z`` itself); a new array when None.

    Returns
    -------
    array of shape (n, K)
        ``P``, each row's probabilities (``out`` when given).

    See Also
    --------
    log_softmax : Its logarithm, without forming ``P``.

    Examples
    --------
    >>> hg.softmax(np.array([[0.0, 0.0], [1000.0, 1000.0 + np.log(3.0)]]))
    array([[0.5 , 0.5 ],
           [0.25, 0.75]])
    """
    ops = ops_for(Z)
    out = ops.subtract(Z, ops.max(Z, axis=1, keepdims=True), out=out)
    ops.exp(out, out=out)
    out /= ops.sum(out, axis=1, keepdims=True)
    return out


# What every loss's backward takes and returns, written once: each backward's docstring states its G, and
# Loss adds these below it (handgrad.nn.docsections).
_SECTIONS = {
    "backward": """

        Parameters
        ----------
        out : array of shape (n, K), optional
            Where to write ``G``; a new array when None.

        Returns
        -------
        array of shape (n, K)
            ``G = ∂J_data/∂Z`` for the logits and targets of the last ``forward`` (``out`` when given).
        """,
}


class Loss(Registered, registry=LOSSES):
    """Base class of losses on logits.  Defining a subclass registers it (see :class:`handgrad.registry.Registered`).

    ``name`` is the spelling users type (``--loss``; the estimator's ``loss=``
    with underscores).  ``config()`` is ``{"type": class name, **constructor
    arguments}``, rebuilt as ``cls(**arguments)``; ``constraints`` declares
    the valid settings (``reduction``: "mean" or "sum").

    ``task`` (a :class:`~handgrad.tasks.Task`, or its name) says what the
    targets are: it checks them (:meth:`check_targets` asks it) and picks the
    figures ``fit`` and ``evaluate`` report beside the loss.  A loss turns
    logits into predictions (:meth:`predict`) and probabilities
    (:meth:`probabilities`); the defaults are those of classification.

    ``derivation`` declares the loss's maths as a layer's does (see
    :class:`handgrad.Layer`), with ``backward={"input": "∂L/∂Z = …"}``;
    ``$K`` is the number of classes and ``κ`` the factor of the reduction
    (``1/n`` for "mean", ``1`` for "sum").

    A subclass defines ``forward(Z, y, sample_weight=None)``, returning
    ``J_data`` as a float and keeping what ``backward(out=None)`` needs to
    return ``G = ∂J_data/∂Z``.

    Parameters
    ----------
    reduction : {"mean", "sum"}, default "mean"
        ``"mean"`` divides the summed per-sample losses by the number of
        samples n (``κ = 1/n``), ``"sum"`` keeps the sum (``κ = 1``).

    Raises
    ------
    HandgradError
        An unknown ``reduction`` (``constraints``).

    See Also
    --------
    losses : Every registered loss by name.
    gradcheck : Checks a loss's gradient against central differences.

    Examples
    --------
    >>> loss = hg.SoftmaxCrossEntropy()
    >>> isinstance(loss, hg.Loss), loss.name, loss.reduction, loss.task.name
    (True, 'cross-entropy', 'mean', 'classification')
    >>> Z = np.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    >>> loss.predict(Z)
    array([0, 1])
    >>> np.round(loss.probabilities(Z), 3)
    array([[0.844, 0.114, 0.042],
           [0.045, 0.909, 0.045]])
    """

    name = None
    task = CLASSIFICATION
    derivation = None
    constraints = {"reduction": Options(*REDUCTIONS)}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)     # registers it (handgrad.registry.Registered)
        cls.task = task_named(cls.task)         # a task given by its name becomes the Task
        add_shared_sections(cls, _SECTIONS)

    def __init__(self, reduction="mean"):
        self.reduction = reduction

    def _scale(self, n):
        """The reduction factor ``κ``: ``1/n`` for ``"mean"``, ``1`` for ``"sum"``."""
        return 1.0 / n if self.reduction == "mean" else 1.0

    # The caller's choice of kernels (see prepare); None: automatic.
    _compiled_choice = None

    def prepare(self, compiled=None):
        """Choose whether ``forward`` and ``backward`` may run handgrad's compiled kernels (``hg.fit(...,
        compiled=)`` calls it): None (automatic), True (the kernels, or an error) or False (NumPy only).

        Returns whether this loss has a compiled path and will take it where
        it applies; here, none (see :class:`SoftmaxCrossEntropy`).
        """
        _compiled.check_compiled(compiled)
        self._compiled_choice = compiled
        return False

    # Sample weights.  ``forward(Z, y, sample_weight=w)`` weights sample i's
    # term by ``w_i``: the value is ``Σ_i w_i L_i`` ("sum") or the weighted
    # mean ``Σ_i w_i L_i / Σ_i w_i`` ("mean"), and since L_i depends on row i
    # of Z alone, ``∂/∂z_i (w_i L_i) = w_i ∂L_i/∂z_i``: backward scales row i
    # of the unweighted per-sample gradient by ``w_i`` (over ``Σ w`` for
    # "mean").  A batch whose weights sum to 0 has value and gradient 0.

    def _placed(self, Z, y, sample_weight):
        """The ops of ``Z`` (kept for ``backward``), and ``y`` and the weights on its namespace and device."""
        ops = self._ops = ops_for(Z)
        return ops, ops.asarray(y), None if sample_weight is None else ops.asarray(sample_weight)

    def _total(self, per_row, weights):
        """``Σ_i w_i ℓ_i`` (or ``Σ_i ℓ_i``) in float64, reduced: the loss's value."""
        ops = self._ops
        if weights is None:
            return float(ops.sum(per_row, dtype=np.float64) * self._scale(per_row.shape[0]))
        total = float(ops.dot(weights, ops.astype(per_row, np.float64, copy=False)))
        if self.reduction == "sum":
            return total
        weight = float(ops.sum(weights))
        return total / weight if weight > 0 else 0.0

    def _gradient_scale(self, n, weights, dtype):
        """What multiplies row i of the per-sample gradient: ``1/n`` or 1, or ``w_i/Σw`` or ``w_i`` as a column."""
        if weights is None:
            return self._scale(n)
        ops = self._ops
        factor = weights
        if self.reduction == "mean":
            weight = float(ops.sum(weights))
            factor = weights / weight if weight > 0 else ops.zeros_like(weights)
        return ops.astype(factor, dtype)[:, None]

    def check_targets(self, y, n_samples, n_outputs, dtype):
        """``y`` as this loss reads it, or a one-line :class:`~handgrad.DataError` with the remedy (the task's check)."""
        return self.task.check_targets(y, n_samples, n_outputs, dtype)

    def predict(self, Z):
        """Predictions from logits: the index of the largest logit of each row.

        Parameters
        ----------
        Z : array of shape (n, K)
            Logits, one sample per row.

        Returns
        -------
        array of shape (n,)
            Each row's predicted class index, in ``Z``'s namespace.
        """
        return ops_for(Z).argmax(Z, axis=1)

    def probabilities(self, Z):
        """Class probabilities from logits: ``softmax(Z)`` row by row.

        Parameters
        ----------
        Z : array of shape (n, K)
            Logits, one sample per row.

        Returns
        -------
        array of shape (n, K)
            Each row's probabilities, summing to 1.
        """
        return softmax(Z)

    def __call__(self, Z, y):
        return self.forward(Z, y)

    def export(self, graph, Z):
        """Write what the loss reads its logits as into an ONNX graph (see :meth:`handgrad.Layer.export`).

        Here :meth:`probabilities`, ``softmax(Z)`` over each row; a loss that
        reads its logits another way (its own :meth:`predict` or
        :meth:`probabilities`) writes that, or cannot be exported.  The task
        then names the graph's outputs (:meth:`handgrad.tasks.Task.export`).
        """
        cls = type(self)
        if cls.predict is not Loss.predict or cls.probabilities is not Loss.probabilities:
            raise HandgradError(f"{cls.__name__} reads its logits its own way and has no ONNX exporter; define "
                                f"{cls.__name__}.export(self, graph, Z), returning its predictions (see docs/onnx.md)")
        return graph.op("Softmax", Z, axis=1)


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

    Parameters
    ----------
    reduction : {"mean", "sum"}, default "mean"
        ``κ = 1/n`` (the mean over the n samples) or ``κ = 1`` (the sum).

    Raises
    ------
    HandgradError
        An unknown ``reduction`` (``constraints``).

    Examples
    --------
    >>> loss = hg.SoftmaxCrossEntropy()
    >>> Z = np.array([[0.0, 0.0], [0.0, np.log(3.0)]])
    >>> round(loss.forward(Z, np.array([0, 1])), 4)     # (ln 2 + ln(4/3)) / 2
    0.4904
    >>> loss.backward()                                 # (P − Y)/n
    array([[-0.25 ,  0.25 ],
           [ 0.125, -0.125]])
    """

    derivation = Derivation(
        forward="L = −κ Σ_{r} Σ_{k} Y_{rk} log P_{rk},  P = softmax(Z)",
        backward={"input": "∂L/∂Z = κ (P ⊙ rowsum(Y) − Y)"},
        seeds=("000", "001", "003", "004"), section="softmax-cross-entropy-seeds-000-001-003-004",
        note="= κ (P − Y) when each row of Y sums to 1 (labels, one-hot rows, probabilities)")

    name = "cross-entropy"

    # κ (P − Y) from the compiled forward, for backward (None after the NumPy forward), and the buffer it is in.
    _G = None
    _G_buffer = None
    # (logits, labels, rows right) of the last compiled forward, for counted_correct.
    _counted = None

    def prepare(self, compiled=None):
        """As :meth:`Loss.prepare`; the compiled path is one kernel that computes the value and the gradient
        ``κ (P − Y)`` together, for integer labels without sample weights on NumPy float arrays (equal to
        this code's to a few ulps in float32, bit for bit in float64 here: ``handgrad._compiled``).

        Returns whether the kernel will be used where it applies.
        """
        super().prepare(compiled)
        return _compiled.for_run(compiled) is not None and self._fusable()

    def _fusable(self):
        """Whether this class's own forward and backward run (a subclass may compute something else)."""
        cls = type(self)
        return cls.forward is SoftmaxCrossEntropy.forward and cls.backward is SoftmaxCrossEntropy.backward

    def _kernels_for(self, Z, y, sample_weight):
        """The kernels when they apply to these arguments, else None."""
        if (sample_weight is not None or type(Z) is not np.ndarray or type(y) is not np.ndarray or y.ndim != 1
                or y.dtype != _INT64 or Z.ndim != 2 or 0 in Z.shape or Z.dtype not in _FLOATS
                or not (Z.flags.c_contiguous and y.flags.c_contiguous) or not self._fusable()):
            return None
        return _compiled.for_run(self._compiled_choice)

    def _forward_compiled(self, kernels, Z, y):
        """The value, with ``κ (P − Y)`` left in a buffer of the loss's own for :meth:`backward`."""
        G = self._G_buffer
        if G is None or G.shape != Z.shape or G.dtype != Z.dtype:
            G = self._G_buffer = np.empty_like(Z)
        value, correct = kernels.softmax_cross_entropy(Z, y, G, self._scale(Z.shape[0]), True)
        self._G, self._y, self._w = G, y, None
        self._counted = (Z, y, correct)
        return value

    def counted_correct(self, Z, y):
        """How many rows of ``Z`` have their largest logit (``argmax``) at their label in ``y``, if the last
        forward was the compiled one on these very arrays (it counts them in the same pass); else None.

        Read once: the training loop's accuracy takes it instead of another
        pass over the logits.
        """
        counted, self._counted = self._counted, None
        if counted is not None and counted[0] is Z and counted[1] is y:
            return counted[2]
        return None

    def forward(self, Z, y, sample_weight=None):
        """Return ``J_data = −κ Σ_r Σ_t y_rt log p_rt`` with ``P = softmax(Z)``, from the stable ``log_softmax``.

        Parameters
        ----------
        Z : array of shape (n, K)
            Logits, one sample per row.
        y : array of shape (n,) or (n, K)
            Class indices in ``0 … K−1``, or rows of target probabilities (one-hot rows, soft labels).
        sample_weight : array of shape (n,), optional
            Non-negative weights: the value becomes ``Σ_r w_r ℓ_r``, over ``Σ_r w_r`` for ``"mean"``.

        Returns
        -------
        float
            ``J_data``, summed in float64.
        """
        kernels = self._kernels_for(Z, y, sample_weight)
        if kernels is not None:
            return self._forward_compiled(kernels, Z, y)
        self._G = self._counted = None
        ops, y, sample_weight = self._placed(Z, y, sample_weight)
        shifted = Z - ops.max(Z, axis=1, keepdims=True)   # max shift: exponents ≤ 0
        exps = ops.exp(shifted)
        sums = ops.sum(exps, axis=1, keepdims=True)
        log_p = shifted
        log_p -= ops.log(sums)                            # log p = z − lse(z)
        exps /= sums
        self._P, self._y, self._w = exps, y, sample_weight
        if sample_weight is not None:
            per_row = ops.pick(log_p, y) if y.ndim == 1 else ops.sum(y * log_p, axis=1, dtype=np.float64)
            return -self._total(per_row, sample_weight)   # −Σ_r w_r Σ_t y_t log p_t, reduced
        if y.ndim == 1:
            total = -ops.sum(ops.pick(log_p, y), dtype=np.float64)
        else:
            total = -ops.sum(y * log_p, dtype=np.float64)
        return float(total * self._scale(Z.shape[0]))

    def backward(self, out=None):
        """Return ``G = κ (P ⊙ rowsum(Y) − Y)``, which is ``κ (P − Y)`` for labels and one-hot rows."""
        if self._G is not None:                           # the compiled forward computed κ (P − Y)
            return self._G.copy() if out is None else _copied(self._G, out)
        ops, P, y = self._ops, self._P, self._y
        n = P.shape[0]
        if out is None:
            out = ops.empty_like(P)
        if y.ndim == 1:
            ops.copyto(out, P)
            ops.put(out, y, ops.pick(out, y) - 1)         # P − Y for one-hot Y
        else:
            ops.multiply(P, ops.sum(y, axis=1, keepdims=True), out=out)
            out -= y                                      # P ⊙ rowsum(Y) − Y
        if self.reduction == "mean" or self._w is not None:
            out *= self._gradient_scale(n, self._w, out.dtype)
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

    Parameters
    ----------
    reduction : {"mean", "sum"}, default "mean"
        ``κ = 1/n`` (the mean over the n samples) or ``κ = 1`` (the sum).

    Raises
    ------
    HandgradError
        An unknown ``reduction`` (``constraints``).

    Examples
    --------
    >>> loss = hg.SoftmaxBinaryCrossEntropy(reduction="sum")
    >>> Z = np.zeros((1, 3))                            # p = (⅓, ⅓, ⅓)
    >>> round(loss.forward(Z, np.array([0])), 4)        # −ln ⅓ − 2 ln ⅔
    1.9095
    >>> np.round(loss.backward(), 4)
    array([[-1. ,  0.5,  0.5]])
    """

    derivation = Derivation(
        forward="L = −κ Σ_{r} Σ_{k} [Y_{rk} log P_{rk} + (1 − Y_{rk}) log(1 − P_{rk})],  P = softmax(Z)",
        backward={
            "input": "∂L/∂Z_{rj} = κ (K P_{rj} − Y_{rj} − Σ_{k≠j} (1 − Y_{rk}) P_{rj}/(1 − P_{rk}))"},
        seeds="002", section="softmax-binary-cross-entropy-seed-002",
        note="seed 002, section 2; computed in O(K) per row without cancellation")

    name = "softmax-bce"

    def forward(self, Z, y, sample_weight=None):
        """Return ``J_data = −κ Σ_r Σ_t [y_rt ln p_rt + (1 − y_rt) ln(1 − p_rt)]`` with ``P = softmax(Z)``.

        Parameters
        ----------
        Z : array of shape (n, K)
            Logits, one sample per row.
        y : array of shape (n,) or (n, K)
            Class indices in ``0 … K−1``, or rows of targets in [0, 1].
        sample_weight : array of shape (n,), optional
            Non-negative weights: the value becomes ``Σ_r w_r ℓ_r``, over ``Σ_r w_r`` for ``"mean"``.

        Returns
        -------
        float
            ``J_data``, summed in float64.

        Raises
        ------
        HandgradError
            ``Z`` has fewer than 2 columns.
        """
        n, m = Z.shape                                      # m = K classes
        if m < 2:
            raise HandgradError("softmax binary cross-entropy needs at least 2 classes")
        ops, y, sample_weight = self._placed(Z, y, sample_weight)
        top = ops.argmax(Z, axis=1)                         # k*, the largest logit
        shifted = Z - ops.pick(Z, top)[:, None]             # z − z_{k*}: exponents ≤ 0
        others = ops.copy(shifted)
        ops.put(others, top, -np.inf)
        others_max = ops.max(others, axis=1)
        lse_others = others_max + ops.log(ops.sum(ops.exp(others - others_max[:, None]), axis=1))
        # lse(z) − z_{k*} = ln(1 + e^{lse(z_{≠k*}) − z_{k*}}): through logaddexp
        # (a log1p inside) rather than ln Σ e^{z−max}, whose sum rounds 1 + 1e-14
        # and would leave ln p_{k*} ≈ −1e-14 with only two correct digits.
        lse = ops.logaddexp(0, lse_others)
        log_s = shifted - lse[:, None]                      # ln p = z − lse(z)
        s = ops.exp(log_s)                                  # p
        with ops.errstate(divide="ignore"):
            log_1ms = ops.log1p(-s)                         # ln(1 − p), accurate where p ≤ ½; k* redone below
        ops.put(log_1ms, top, lse_others - lse)             # ln(1 − p_{k*}) without cancellation
        Y = _target_matrix(ops, y, m, Z.dtype)
        per_class = Y * log_s + (1 - Y) * log_1ms
        self._cache = (Y, s, log_s, log_1ms, top)
        self._w = sample_weight
        if sample_weight is None:
            return float(-ops.sum(per_class, dtype=np.float64) * self._scale(n))
        return -self._total(ops.sum(per_class, axis=1, dtype=np.float64), sample_weight)

    def backward(self, out=None):
        """Return row ``r`` of ``G`` as ``κ ∂ℓ_r/∂z_r`` (seed 002's gradient, computed in O(K) per row)."""
        ops = self._ops
        Y, s, log_s, log_1ms, top = self._cache
        n, m = s.shape
        with ops.errstate(divide="ignore", invalid="ignore"):
            w = (1 - Y) / (1 - s)                           # ρ_t; 1 − p may be 0 only at k*,
        ops.put(w, top, 0)                                  # whose ρ is set to 0 here
        sum_w = ops.sum(w, axis=1, keepdims=True)
        y_top = ops.pick(Y, top)[:, None]
        exponent = log_s - ops.pick(log_1ms, top)[:, None]  # ln soft(z_{≠k*}, j) ≤ 0 for j ≠ k*
        ops.put(exponent, top, -np.inf)                     # the t = k* term exists only for j ≠ k*
        via_top = (1 - y_top) * ops.exp(exponent)
        grad = m * s - Y - s * (sum_w - w) - via_top        # K p − y − p(Σρ − ρ) − (t = k* term)
        s_top = ops.pick(s, top)
        ops.put(grad, top, ((1 - y_top[:, 0]) - ops.exp(ops.pick(log_1ms, top))
                            + s_top * (ops.sum(Y, axis=1) - y_top[:, 0]) - s_top * ops.sum(w * s, axis=1)))
        if self.reduction == "mean" or self._w is not None:
            grad *= self._gradient_scale(n, self._w, grad.dtype)
        if out is None:
            return grad
        ops.copyto(out, grad)
        return out


class SquaredError(Loss):
    """Half the squared error, for regression with an identity output.

    Forward, per sample ``r``: ``L_r = ½ ‖z_r − y_r‖² = ½ Σ_k (z_rk − y_rk)²``,
    summed over the batch, or averaged over its n samples for ``"mean"``
    (not over the K outputs).  Targets are reals of shape (n,) for a model
    with one output, or (n, K).

    Backward: ``∂L_r/∂z_rk = z_rk − y_rk``, so ``∂L/∂Z = (Z − Y) κ`` with
    ``κ = 1/n`` for ``"mean"`` and 1 for ``"sum"`` (row r times ``w_r/Σw``
    or ``w_r`` with sample weights, see :class:`Loss`).

    Parameters
    ----------
    reduction : {"mean", "sum"}, default "mean"
        ``κ = 1/n`` (the mean over the n samples) or ``κ = 1`` (the sum).

    Raises
    ------
    HandgradError
        An unknown ``reduction`` (``constraints``).

    Examples
    --------
    >>> loss = hg.SquaredError()
    >>> Z, y = np.array([[1.0], [3.0]]), np.array([0.0, 1.0])
    >>> loss.forward(Z, y)                              # (½·1 + ½·4) / 2
    1.25
    >>> loss.backward()                                 # (Z − Y)/n
    array([[0.5],
           [1. ]])
    >>> loss.predict(Z) is Z
    True
    """

    derivation = Derivation(forward="L = κ Σ_{r} ½ ‖z_r − y_r‖²", backward={"input": "∂L/∂Z = κ (Z − Y)"},
                            section="squared-error-regression")

    name = "squared-error"
    task = REGRESSION

    def forward(self, Z, y, sample_weight=None):
        """Return ``J_data = κ Σ_r ½ ‖z_r − y_r‖²``.

        Parameters
        ----------
        Z : array of shape (n, K)
            Logits, one sample per row.
        y : array of shape (n,) or (n, K)
            Real targets: (n,) for a model with one output.
        sample_weight : array of shape (n,), optional
            Non-negative weights: the value becomes ``Σ_r w_r ℓ_r``, over ``Σ_r w_r`` for ``"mean"``.

        Returns
        -------
        float
            ``J_data``, summed in float64.
        """
        ops, y, sample_weight = self._placed(Z, y, sample_weight)
        Y = ops.reshape(ops.asarray(y, dtype=Z.dtype), (Z.shape[0], -1))
        self._D = D = Z - Y                                   # Z − Y
        self._w = sample_weight
        if sample_weight is not None:
            return self._total(0.5 * ops.sum(ops.square(D, dtype=np.float64), axis=1), sample_weight)
        return float(0.5 * ops.sum(ops.square(D, dtype=np.float64)) * self._scale(Z.shape[0]))

    def backward(self, out=None):
        """Return ``G = κ (Z − Y)``."""
        return self._ops.multiply(self._D, self._gradient_scale(self._D.shape[0], self._w, self._D.dtype),
                                  out=out)                    # (Z − Y) κ

    def predict(self, Z):
        """The logits are the predicted values.

        Parameters
        ----------
        Z : array of shape (n, K)
            Logits, one sample per row.

        Returns
        -------
        array of shape (n, K)
            ``Z`` itself.
        """
        return Z

    def probabilities(self, Z):
        raise HandgradError("a regression loss predicts values, not probabilities; "
                            "use model.predict(X, loss=hg.SquaredError())")

    def export(self, graph, Z):
        """The logits are the values: nothing to write."""
        return Z


class SigmoidBinaryCrossEntropy(Loss):
    """Multilabel classification: a binary cross-entropy per output, on ``σ(z_k)``.

    Forward, per sample ``r`` over its K labels, with targets ``y_k ∈ [0, 1]``:

        ``L_r = −Σ_k [ y_k log σ(z_k) + (1 − y_k) log(1 − σ(z_k)) ]``.

    With ``log σ(z) = −softplus(−z)`` and ``log(1 − σ(z)) = −softplus(z)``,
    and ``softplus(z) − softplus(−z) = z``, each term is

        ``ℓ = softplus(z) − y z``,  ``softplus(z) = max(z, 0) + log1p(e^{−|z|})``,

    computed from the logits without ever forming ``σ`` or a logarithm of 0:
    logits of ±1e4 give finite values (and exactly 0 for a right answer).

    Backward: ``softplus'(z) = σ(z)``, so ``∂ℓ/∂z = σ(z) − y`` and
    ``∂L/∂Z = (σ(Z) − Y) κ``, with ``κ = 1/n`` for ``"mean"`` (samples, not
    labels) and 1 for ``"sum"`` (row r times ``w_r/Σw`` or ``w_r`` with
    sample weights, see :class:`Loss`).  ``σ`` comes from the same ``e = e^{−|z|}``:
    ``1/(1 + e)`` for ``z ≥ 0``, ``e/(1 + e)`` for ``z < 0``.

    Predictions: label k is present when ``σ(z_k) > ½``, i.e. ``z_k > 0``.

    Parameters
    ----------
    reduction : {"mean", "sum"}, default "mean"
        ``κ = 1/n`` (the mean over the n samples) or ``κ = 1`` (the sum).

    Raises
    ------
    HandgradError
        An unknown ``reduction`` (``constraints``).

    Examples
    --------
    >>> loss = hg.SigmoidBinaryCrossEntropy(reduction="sum")
    >>> Z, Y = np.array([[0.0, 2.0]]), np.array([[1.0, 0.0]])
    >>> round(loss.forward(Z, Y), 4)                    # ln 2 + softplus(2)
    2.8201
    >>> np.round(loss.backward(), 4)                    # σ(Z) − Y
    array([[-0.5   ,  0.8808]])
    >>> loss.predict(Z)                                 # label k present where z_k > 0
    array([[0, 1]])
    """

    derivation = Derivation(
        forward="L = κ Σ_{r} Σ_{k} [softplus(Z_{rk}) − Y_{rk} Z_{rk}]",
        backward={"input": "∂L/∂Z = κ (σ(Z) − Y)"}, section="sigmoid-binary-cross-entropy-multilabel",
        note="softplus(z) − yz = −[y log σ(z) + (1 − y) log(1 − σ(z))]")

    name = "sigmoid-bce"
    task = MULTILABEL

    def forward(self, Z, y, sample_weight=None):
        """Return ``J_data = κ Σ_r Σ_k [softplus(z_rk) − y_rk z_rk]``, keeping ``σ(Z)``.

        Parameters
        ----------
        Z : array of shape (n, K)
            Logits, one sample per row.
        y : array of shape (n, K)
            Each label's target in [0, 1].
        sample_weight : array of shape (n,), optional
            Non-negative weights: the value becomes ``Σ_r w_r ℓ_r``, over ``Σ_r w_r`` for ``"mean"``.

        Returns
        -------
        float
            ``J_data``, summed in float64.
        """
        ops, y, sample_weight = self._placed(Z, y, sample_weight)
        Y = ops.reshape(ops.asarray(y, dtype=Z.dtype), Z.shape)
        e = ops.abs(Z)
        ops.negative(e, out=e)
        with ops.errstate(under="ignore"):                 # e^{−|z|} → 0 is the true limit
            ops.exp(e, out=e)                              # e = e^{−|z|} ∈ (0, 1]
        terms = ops.log1p(e)
        terms += ops.maximum(Z, 0)
        terms -= Y * Z                                     # ℓ = softplus(z) − y z
        sigma = ops.where(Z >= 0, 1, e)
        sigma /= 1 + e                                     # σ(z), no overflow, full relative precision
        self._sigma, self._Y, self._w = sigma, Y, sample_weight
        if sample_weight is not None:
            return self._total(ops.sum(terms, axis=1, dtype=np.float64), sample_weight)
        return float(ops.sum(terms, dtype=np.float64) * self._scale(Z.shape[0]))

    def backward(self, out=None):
        """Return ``G = κ (σ(Z) − Y)``."""
        out = self._ops.subtract(self._sigma, self._Y, out=out)   # σ(Z) − Y
        out *= self._gradient_scale(out.shape[0], self._w, out.dtype)
        return out

    def predict(self, Z):
        """0/1 labels: 1 where ``σ(z) > ½``, i.e. ``z > 0``.

        Parameters
        ----------
        Z : array of shape (n, K)
            Logits, one sample per row and one column per label.

        Returns
        -------
        array of shape (n, K)
            Integer 0/1 labels, in ``Z``'s namespace.
        """
        return ops_for(Z).astype(Z > 0, np.intp)

    def probabilities(self, Z):
        """``σ(Z)`` per label (the labels are not exclusive, so rows need not sum to 1)."""
        ops = ops_for(Z)
        with ops.errstate(under="ignore"):
            e = ops.exp(-ops.abs(Z))
        return ops.where(Z >= 0, 1, e) / (1 + e)

    def export(self, graph, Z):
        """``σ(Z)``, each label's probability, as ONNX Sigmoid."""
        return graph.op("Sigmoid", Z)


class PoissonDeviance(Loss):
    """Half the Poisson deviance with a log link, for counts: scikit-learn's ``loss="poisson"``.

    The output is ``μ = e^z``, the predicted mean of a Poisson count.
    Forward, per sample ``r`` over its K outputs, targets ``y ≥ 0``:

        ``L_r = Σ_k [ y_k log(y_k / μ_k) − y_k + μ_k ] = Σ_k [ e^{z_k} − y_k z_k + (y_k log y_k − y_k) ]``,

    half the deviance ``2 Σ [y log(y/μ) − (y − μ)]``.  The last term does not
    depend on ``z`` (``y log y`` is 0 at ``y = 0``); it makes ``L_r ≥ 0``, with
    0 exactly when ``μ = y``.  Summed over the batch, or averaged over its n
    samples for ``"mean"``.

    Backward: ``∂/∂z (e^z − y z) = e^z − y``, so ``∂L/∂Z = (e^Z − Y) κ = (μ − Y) κ``
    with κ as in :class:`SquaredError` (sample weights likewise).

    ``e^z`` overflows past ``z ≈ 709`` (float64) or 88 (float32): the loss
    is then infinite, which ``fit`` reports as divergence.

    Parameters
    ----------
    reduction : {"mean", "sum"}, default "mean"
        ``κ = 1/n`` (the mean over the n samples) or ``κ = 1`` (the sum).

    Raises
    ------
    HandgradError
        An unknown ``reduction`` (``constraints``).

    Examples
    --------
    >>> loss = hg.PoissonDeviance(reduction="sum")
    >>> Z, y = np.log(np.array([[2.0], [1.0]])), np.array([2.0, 1.0])
    >>> loss.forward(Z, y)                              # μ = y: a deviance of 0
    0.0
    >>> loss.backward()                                 # μ − Y
    array([[0.],
           [0.]])
    >>> loss.predict(Z)
    array([[2.],
           [1.]])
    """

    derivation = Derivation(
        forward="L = κ Σ_{r} Σ_{k} [exp(Z_{rk}) − Y_{rk} Z_{rk} + Y_{rk} log Y_{rk} − Y_{rk}]",
        backward={"input": "∂L/∂Z = κ (exp(Z) − Y)"}, section="poisson-deviance-counts",
        note="half the Poisson deviance with the log link μ = exp(z)")

    name = "poisson"
    task = REGRESSION
    output_activation = "exp"

    def check_targets(self, y, n_samples, n_outputs, dtype):
        Y = super().check_targets(y, n_samples, n_outputs, dtype)
        if (Y < 0).any():
            raise DataError("Poisson targets are counts and must be non-negative; found a negative target")
        return Y

    def forward(self, Z, y, sample_weight=None):
        """Return ``J_data = κ Σ_r Σ_k [e^{z_rk} − y_rk z_rk + y_rk log y_rk − y_rk]``, keeping ``μ = e^Z``.

        Parameters
        ----------
        Z : array of shape (n, K)
            Logits, one sample per row.
        y : array of shape (n,) or (n, K)
            Non-negative counts: (n,) for a model with one output.
        sample_weight : array of shape (n,), optional
            Non-negative weights: the value becomes ``Σ_r w_r ℓ_r``, over ``Σ_r w_r`` for ``"mean"``.

        Returns
        -------
        float
            ``J_data``, summed in float64.
        """
        ops, y, sample_weight = self._placed(Z, y, sample_weight)
        Y = ops.reshape(ops.asarray(y, dtype=Z.dtype), (Z.shape[0], -1))
        with ops.errstate(over="ignore"):
            mu = ops.exp(Z)                                   # μ = e^z
        positive = Y > 0
        y_log_y = ops.where(positive, Y * ops.log(ops.where(positive, Y, 1)), 0)   # y log y, 0 at y = 0
        with ops.errstate(invalid="ignore"):
            terms = mu - Y * Z + (y_log_y - Y)                # e^z − y z + (y log y − y)
        self._mu, self._Y, self._w = mu, Y, sample_weight
        if sample_weight is not None:
            return self._total(ops.sum(terms, axis=1, dtype=np.float64), sample_weight)
        return float(ops.sum(terms, dtype=np.float64) * self._scale(Z.shape[0]))

    def backward(self, out=None):
        """Return ``G = κ (μ − Y) = κ (e^Z − Y)``."""
        out = self._ops.subtract(self._mu, self._Y, out=out)  # μ − Y
        out *= self._gradient_scale(out.shape[0], self._w, out.dtype)
        return out

    def predict(self, Z):
        """The predicted means ``μ = e^z``.

        Parameters
        ----------
        Z : array of shape (n, K)
            Logits, one sample per row.

        Returns
        -------
        array of shape (n, K)
            ``e^Z`` (infinite where it overflows).
        """
        ops = ops_for(Z)
        with ops.errstate(over="ignore"):
            return ops.exp(Z)

    def probabilities(self, Z):
        raise HandgradError("a regression loss predicts values, not probabilities; "
                            "use model.predict(X, loss=hg.PoissonDeviance())")

    def export(self, graph, Z):
        """The predicted means ``μ = e^Z``, as ONNX Exp."""
        return graph.op("Exp", Z)


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_INT64 = np.dtype(np.int64)


def _copied(source, out):
    np.copyto(out, source)
    return out


def _target_matrix(ops, y, n_classes, dtype):
    if y.ndim == 2:
        return ops.astype(y, dtype, copy=False)     # integer or float64 targets must not promote float32 logits
    return ops.one_hot(y, n_classes, dtype)


def loss_from_config(config):
    """Rebuild a loss from ``Loss.config()`` output."""
    return LOSSES.build(config)


def losses(task=None):
    """``{name: class}`` of every registered loss, built-in or user-defined.

    Parameters
    ----------
    task : Task or str, optional
        Keep only the losses of this task (``"classification"``,
        ``"regression"``, ``"multilabel"``); all of them when None.

    Returns
    -------
    dict of str to type
        Each loss's short name (``"cross-entropy"``) and its class.

    See Also
    --------
    activations : The same table for the activations.

    Examples
    --------
    >>> hg.losses()["cross-entropy"] is hg.SoftmaxCrossEntropy
    True
    >>> sorted(name for name in hg.losses("regression") if name in ("poisson", "squared-error", "sigmoid-bce"))
    ['poisson', 'squared-error']
    """
    return LOSSES.choices(where=None if task is None else (lambda cls: cls.task == task))
