"""Central-difference gradient checking, in float64.

For a scalar function ``f`` of an array ``θ``, each entry of the numerical
gradient is

    n_i = (f(θ + h e_i) − f(θ − h e_i)) / (2h),     h = 1e-6,

whose error is O(h²) from truncation plus about ``ε·|f|/h`` from rounding
(ε = 2.2e-16, machine epsilon of float64).  The analytic gradient ``a`` is
compared entry by entry with one relative-error formula:

    err_i = |a_i − n_i| / max(|a_i|, |n_i|, floor),
    floor = 4 ε max(|f(θ)|, 1) / h / tolerance.

The numerator's rounding noise is about ``4 ε max(|f|, 1) / h``; an entry
smaller than ``floor`` is one the difference quotient cannot resolve to the
relative precision ``tolerance`` asks for (one part in a million by
default), so it is measured on the floor's scale instead of its own
(otherwise rounding noise on a 1e-9 entry would read as a 100% error).  The
floor follows the ``tolerance`` argument: a looser tolerance lowers it, so
smaller entries are judged on their own scale; a stricter one raises it,
since rounding noise alone would otherwise fail the check.  Every check
reports, per parameter, the worst ``err_i``, where it is, and both values
there.

Entry points:

* :func:`gradcheck` on a model (with a loss and data), a loss, or a layer;
* :func:`check_function` on any ``f`` and a hand-written ``grad_f``.

Modes and randomness.  A model or layer is checked in its current mode.  In
training mode a Dropout layer would draw a new mask at every evaluation,
making the objective a different function each time; so before every
evaluation the check reseeds every layer with its ``seed``, and every
evaluation drops the same units: the check differentiates the objective
for one fixed mask, which is what backward claims to differentiate.
Running statistics that training-mode evaluations update (BatchNorm) are
put back afterwards, so a check leaves a model's buffers as it found them.

Devices.  A model or layer is checked where it computes (a float64 copy of
one that is not float64 stays in its namespace; its input is copied
there), a loss where its logits are; the differences and the comparison
are taken on the host, in float64.
"""

from dataclasses import dataclass, replace
from numbers import Real

import numpy as np

from handgrad.arrays import ops_for, to_numpy
from handgrad.errors import HandgradError
from handgrad.nn.layers import Layer, layer_from_config
from handgrad.nn.losses import Loss
from handgrad.nn.model import Sequential
from handgrad.nn.objective import l2_value, loss_and_gradients
from handgrad.validation import check_features

STEP = 1e-6
TOLERANCE = 1e-6
_NOISE = 4 * np.finfo(np.float64).eps


@dataclass
class GradcheckRow:
    name: str
    shape: tuple
    max_error: float
    where: tuple
    analytic: float
    numeric: float


class GradcheckReport:
    """Rows of worst relative errors; ``report.passed`` and ``str(report)``.

    One row per checked array (a parameter, the logits or a layer's input):
    its shape, the largest relative error between the hand-written and the
    numerical gradient, the entry where it occurs, and both values there.
    ``max_error`` is the largest over the rows, ``passed`` (also the
    report's truth value) says whether it is below ``tolerance``, and
    ``print(report)`` shows the table.

    Parameters
    ----------
    rows : list of GradcheckRow
        The rows, as :func:`gradcheck` and :func:`check_function` build them.
    tolerance : float
        The largest relative error that passes.

    See Also
    --------
    gradcheck : Checks a model, a loss or a layer and returns a report.
    check_function : Checks a plain function's gradient and returns a report.

    Examples
    --------
    >>> report = hg.gradcheck(hg.Tanh(), np.linspace(-1.0, 1.0, 6).reshape(2, 3))
    >>> report.passed, report.max_error < 1e-6, [row.name for row in report.rows]
    (True, True, ['input'])
    >>> print(report)                                       # doctest: +ELLIPSIS
    parameter       shape          max rel error  at              analytic       numeric  ok
    input           (2, 3)         ...
    passed: worst ..., tolerance 1e-06
    """

    def __init__(self, rows, tolerance):
        self.rows, self.tolerance = rows, tolerance

    @property
    def max_error(self):
        return max((row.max_error for row in self.rows), default=0.0)

    @property
    def passed(self):
        return self.max_error < self.tolerance

    def __bool__(self):
        return self.passed

    def __str__(self):
        lines = [f"{'parameter':<16}{'shape':<14}{'max rel error':>14}  {'at':<12}{'analytic':>14}{'numeric':>14}  ok"]
        for r in self.rows:
            ok = "yes" if r.max_error < self.tolerance else "NO"
            lines.append(f"{r.name:<16}{str(r.shape):<14}{r.max_error:>14.2e}  {str(r.where):<12}"
                         f"{r.analytic:>14.6e}{r.numeric:>14.6e}  {ok}")
        lines.append(f"{'passed' if self.passed else 'FAILED'}: worst {self.max_error:.2e}, tolerance {self.tolerance:.0e}")
        return "\n".join(lines)

    __repr__ = __str__


def numerical_gradient(f, theta, step=STEP):
    """Central differences of scalar ``f()`` with respect to array ``theta`` (perturbed in place, restored).

    Entries are addressed by index, not through ``theta.reshape(-1)``: for a
    non-contiguous ``theta`` (a transposed view, say) that reshape is a copy,
    and perturbing the copy would leave ``f`` unchanged.
    """
    grad = np.zeros(theta.shape, dtype=np.float64)
    for index in np.ndindex(theta.shape):
        grad[index] = central_difference(f, theta, index, step)
    return grad


def central_difference(f, theta, index, step=STEP):
    """``(f(θ + h e_i) − f(θ − h e_i)) / 2h`` for the entry ``index`` of ``theta`` (perturbed in place, restored)."""
    original = theta[index]
    if not isinstance(original, np.generic):
        original = float(original)      # an entry of another namespace may be a view of theta: keep its value
    theta[index] = original + step
    plus = f()
    theta[index] = original - step
    minus = f()
    theta[index] = original
    return (plus - minus) / (2 * step)


def compare(name, analytic, numeric, f_value, step=STEP, tolerance=TOLERANCE):
    """The :class:`GradcheckRow` for one parameter (``floor`` as in the module docstring)."""
    analytic = np.asarray(to_numpy(analytic), dtype=np.float64)
    if analytic.shape != numeric.shape:
        raise HandgradError(f"gradient of {name} has shape {analytic.shape}, parameter has {numeric.shape}")
    _check_tolerance(tolerance)
    floor = _NOISE * max(abs(f_value), 1.0) / step / tolerance
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
    errors = np.abs(analytic - numeric) / scale
    if not np.isfinite(errors).all():
        errors = np.where(np.isfinite(errors), errors, np.inf)
    worst = np.unravel_index(int(np.argmax(errors)), errors.shape) if errors.size else ()
    if not errors.size:
        return GradcheckRow(name, analytic.shape, 0.0, (), 0.0, 0.0)
    return GradcheckRow(name, analytic.shape, float(errors[worst]), tuple(int(i) for i in worst),
                        float(analytic[worst]), float(numeric[worst]))


def _check_tolerance(tolerance):
    if isinstance(tolerance, bool) or not isinstance(tolerance, Real) or not tolerance > 0:
        raise HandgradError(f"tolerance must be a positive number, got {tolerance!r}")


def check_function(f, grad_f, arrays, names=None, step=STEP, tolerance=TOLERANCE):
    """Check a hand-written gradient: ``grad_f(*arrays)`` against differences of ``f(*arrays)``.

    ``f`` returns a scalar; ``grad_f`` returns one gradient per array.  The
    arrays are converted to float64 copies first, and each entry is
    differenced centrally, ``(f(θ + h) − f(θ − h)) / 2h``.

    Parameters
    ----------
    f : callable
        ``f(*arrays) -> float``, the function.
    grad_f : callable
        ``grad_f(*arrays) -> sequence of arrays``, its hand-written gradient
        with respect to each array, of that array's shape.
    arrays : sequence of array_like
        The point to check at.
    names : sequence of str, optional
        The report's name for each array; ``arg0``, ``arg1``, … by default.
    step : float, default 1e-6
        ``h``, the step of the central differences.
    tolerance : float, default 1e-6
        The largest relative error that passes, a positive number.

    Returns
    -------
    GradcheckReport
        One row per array; ``report.passed`` says whether all pass.

    Raises
    ------
    HandgradError
        ``grad_f`` returns a different number of gradients than there are
        arrays, a gradient of the wrong shape, or a bad ``tolerance``.

    See Also
    --------
    gradcheck : The same check for a model, a loss or a layer.

    Examples
    --------
    >>> report = hg.check_function(lambda x: (x ** 3).sum(), lambda x: [3 * x ** 2], [np.arange(3.0)])
    >>> report.passed
    True
    """
    _check_tolerance(tolerance)
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    names = names or [f"arg{i}" for i in range(len(arrays))]
    analytic = grad_f(*arrays)
    if len(analytic) != len(arrays):
        raise HandgradError(f"grad_f returned {len(analytic)} gradients for {len(arrays)} arrays")
    value = float(f(*arrays))
    rows = [compare(name, a, numerical_gradient(lambda: float(f(*arrays)), arr, step), value, step, tolerance)
            for name, a, arr in zip(names, analytic, arrays)]
    return GradcheckReport(rows, tolerance)


def gradcheck(target, *args, l2=0.0, seed=0, step=STEP, tolerance=TOLERANCE, entries=None, progress=None):
    """Check the backward pass of a model, a loss or a layer against central differences.

    * ``gradcheck(model, loss, X, y, l2=...)``: every parameter of the
      objective ``loss(model(X), y) + (l2/2) Σ‖W‖²`` (on a float64 copy).
    * ``gradcheck(loss, Z, y)``: the gradient with respect to the logits.
    * ``gradcheck(layer, X)``: input and parameter gradients of the scalar
      ``Σ forward(X) ⊙ R`` for a fixed random ``R`` (so ``G = R``).

    ``tolerance`` is the largest relative error that passes; it also sets
    the noise floor below which entries are judged on the floor's scale
    (module docstring).

    For a model, ``entries=k`` differences a sample of ``k`` entries of each
    parameter (drawn without replacement by ``default_rng(seed)``; all of a
    parameter with ``k`` or fewer), since every entry costs two evaluations
    of the objective: a 784-512-256-10 network has 535,818 of them.
    ``progress(name, done, total)``, if given, is called after each entry.

    Parameters
    ----------
    target : Sequential, Loss or Layer
        What to check.
    *args
        ``loss, X, y`` for a model, ``Z, y`` for a loss, ``X`` for a layer.
    l2 : float, default 0.0
        ``λ`` of the objective's L2 term (a model only).
    seed : int, default 0
        Seeds the sampled entries, a layer's ``R`` and a Dropout's mask.
    step : float, default 1e-6
        The step of the central differences.
    tolerance : float, default 1e-6
        The largest relative error that passes, a positive number.
    entries : int, optional
        For a model: difference this many sampled entries of each parameter; all of them when None.
    progress : callable, optional
        For a model: ``progress(name, done, total)``, called after each entry.

    Returns
    -------
    GradcheckReport
        One row per parameter (or the logits, or the layer's input and
        parameters); ``print`` it for the table.

    Raises
    ------
    HandgradError
        A target that is neither a Sequential, a Loss nor a Layer, a bad
        ``tolerance`` or ``entries``, or a layer whose parameters cannot be
        made float64.

    See Also
    --------
    check_function : The same check for a plain function.
    loss_and_gradients : The objective and gradients it checks for a model.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> model = hg.mlp(4, [5], 3, activation="tanh", seed=0)
    >>> X, y = rng.normal(size=(6, 4)), rng.integers(0, 3, size=6)
    >>> hg.gradcheck(model, hg.SoftmaxCrossEntropy(), X, y, l2=0.1).passed
    True
    >>> hg.gradcheck(hg.SquaredError(), rng.normal(size=(3, 2)), rng.normal(size=(3, 2))).passed
    True
    >>> [row.name for row in hg.gradcheck(hg.Dense(3, 2, dtype=np.float64), rng.normal(size=(4, 3))).rows]
    ['input', 'W', 'b']
    """
    _check_tolerance(tolerance)
    if isinstance(target, Sequential):
        if entries is not None or progress is not None:
            return _check_model_entries(target, *args, l2=l2, step=step, tolerance=tolerance,
                                        entries=entries, seed=seed, progress=progress)
        return _check_model(target, *args, l2=l2, seed=seed, step=step, tolerance=tolerance)
    if isinstance(target, Loss):
        return _check_loss(target, *args, step=step, tolerance=tolerance)
    if isinstance(target, Layer):
        return _check_layer(target, *args, seed=seed, step=step, tolerance=tolerance)
    raise HandgradError(f"gradcheck takes a Sequential, a Loss or a Layer, got {type(target).__name__}; "
                        "for a plain function use hg.check_function(f, grad_f, arrays)")


def _check_model(model, loss, X, y, l2, seed, step, tolerance):
    model = _float64_model(model)
    buffers = model.get_buffers()

    def evaluate():
        model.reseed(seed)          # the same dropout masks at every evaluation
        return loss_and_gradients(model, loss, X, y, l2=l2)

    try:
        value, grads = evaluate()
        rows = []
        for name, param, grad in zip(model.parameter_names(), model.parameters(), grads):
            rows.append(compare(name, grad, numerical_gradient(lambda: evaluate()[0], param, step), value, step, tolerance))
    finally:
        model.set_buffers(buffers)
    return GradcheckReport(rows, tolerance)


def _check_model_entries(model, loss, X, y, l2, step, tolerance, entries, seed, progress):
    """Like :func:`_check_model`, over a seeded sample of each parameter's entries, reporting progress."""
    if entries is not None and (isinstance(entries, bool) or not isinstance(entries, (int, np.integer))
                                or entries < 1):
        raise HandgradError(f"entries must be a positive integer (or None for every entry), got {entries!r}")
    model = _float64_model(model)
    buffers = model.get_buffers()
    X = check_features(X, np.float64, model.n_features)
    y = model.ops.asarray(loss.check_targets(y, X.shape[0], model.n_outputs, np.float64))
    X = model.placed(X)

    def objective():
        # The value alone: a difference quotient needs no backward pass, which would cost twice the forward.
        model.reseed(seed)          # the same dropout masks at every evaluation
        return loss.forward(model.forward(X), y) + l2_value(model.flat_parameters, model.n_decayed, l2)

    rng = np.random.default_rng(seed)
    rows = []
    try:
        model.reseed(seed)
        value, grads = loss_and_gradients(model, loss, X, y, l2=l2)
        for name, param, grad in zip(model.parameter_names(), model.parameters(), grads):
            indices = _sample_indices(param.shape, entries, rng)
            numeric = np.empty(len(indices))
            for k, index in enumerate(indices):
                numeric[k] = central_difference(objective, param, index, step)
                if progress is not None:
                    progress(name, k + 1, len(indices))
            analytic = np.array([float(grad[index]) for index in indices], dtype=np.float64)
            row = compare(name, analytic, numeric, value, step, tolerance)
            where = indices[row.where[0]] if indices else ()
            rows.append(replace(row, shape=param.shape, where=tuple(int(i) for i in where)))
    finally:
        model.set_buffers(buffers)      # batch norm's running statistics as they were
    return GradcheckReport(rows, tolerance)


def _sample_indices(shape, entries, rng):
    """Index tuples of ``entries`` distinct entries of an array of ``shape``, in order; all if fewer."""
    size = int(np.prod(shape))
    if entries is None or entries >= size:
        flat = np.arange(size)
    else:
        flat = np.sort(rng.choice(size, size=int(entries), replace=False))
    return [tuple(int(i) for i in np.unravel_index(f, shape)) for f in flat]


def _float64_model(model):
    """``model`` itself when it is float64, else a float64 copy rebuilt from its configuration.

    The check runs on the model as it was built, so whatever its structure
    does to the gradients shows in the check.  Layers rebuild from the
    registry, user-defined ones included.
    """
    return model if model.dtype == np.float64 else model.astype(np.float64)


def _check_loss(loss, Z, y, step, tolerance):
    Z = check_features(Z, np.float64, name="Z")
    ops = ops_for(Z)
    Z = ops.copy(Z)                                         # a private copy: it is perturbed in place
    y = ops.asarray(loss.check_targets(y, Z.shape[0], Z.shape[1], np.float64))
    value = loss.forward(Z, y)
    analytic = ops.copy(loss.backward())
    numeric = numerical_gradient(lambda: loss.forward(Z, y), Z, step)
    return GradcheckReport([compare("logits", analytic, numeric, value, step, tolerance)], tolerance)


def _check_layer(layer, X, seed, step, tolerance):
    layer = _float64_layer(layer)
    ops = layer.ops
    X = ops.asarray(X, dtype=np.float64, copy=True)
    buffers = {name: to_numpy(getattr(layer, name), copy=True) for name in layer.buffer_names}

    def forward():
        layer.reseed(seed)          # the same dropout mask at every evaluation
        return layer.forward(X)

    try:
        R = ops.asarray(np.random.default_rng(seed).standard_normal(tuple(forward().shape)))

        def scalar():
            return float(ops.sum(forward() * R))

        value = scalar()
        dX = np.array(to_numpy(layer.backward(R)), dtype=np.float64)
        grads = [np.array(to_numpy(g), dtype=np.float64) for g in layer.gradients()]
        rows = [compare("input", dX, numerical_gradient(scalar, X, step), value, step)]
        for name, param, grad in zip(layer.parameter_names, layer.parameters(), grads):
            rows.append(compare(name, grad, numerical_gradient(scalar, param, step), value, step, tolerance))
    finally:
        for name, saved in buffers.items():
            ops.copyto(getattr(layer, name), saved)
    return GradcheckReport(rows, tolerance)


def _float64_layer(layer):
    """``layer`` itself with float64 parameters; a layer built with ``dtype=`` in another dtype is copied,
    rebuilt from its configuration in float64 where it computes; any other is refused."""
    if layer.dtype is not None and layer.dtype != np.float64:
        copy = layer_from_config(layer.config(), np.float64)
        if copy.dtype == np.float64:
            for name in layer.parameter_names + layer.buffer_names:
                getattr(copy, name)[...] = to_numpy(getattr(layer, name))
            return copy.train(layer.training).to(layer.ops)
    for name, param in zip(layer.parameter_names, layer.parameters()):
        if layer.ops.numpy_dtype(param.dtype) != np.float64:
            raise HandgradError(f"gradcheck needs float64 parameters, but {type(layer).__name__}.{name} is "
                                f"{np.dtype(layer.ops.numpy_dtype(param.dtype))}; build the layer in float64")
    return layer
