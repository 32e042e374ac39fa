"""Name the mistake in a hand-written gradient: ``hg.diagnose``.

A learner derives the gradients of a network by hand and writes them as code,
``gradients(params, X, y) -> {name: array}``.  ``hg.check_function`` and
``hg.gradcheck`` say *that* such a gradient is wrong; :func:`diagnose` says
*what* is wrong, as a kind from the catalogue in
:mod:`handgrad.derivations.mistakes` and a sentence with the numbers
(``docs/diagnose.md`` is the learners' page).

How a diagnosis is reached
--------------------------

1. **Batches.**  The learner's function is called on four random batches of
   3, 8, 5 and 4 rows of ``X, y`` (drawn with replacement only when ``X`` has
   fewer rows), each at its own parameter values: the model's, moved by
   Gaussian noise of half the layer's weight scale.  Sizes that differ tell
   a factor ``n`` from a constant; fresh values keep a mistake from hiding
   behind a zero bias or a symmetric start.
2. **The truth.**  handgrad's ``loss_and_gradients`` on a float64 copy gives
   the gradient ``T`` of the objective ``J = L + (λ/2) Σ‖W‖²`` and, with
   ``l2=0``, its data term ``D``; the L2 term is ``λW`` on weights, nothing on
   biases.  On each batch the truth is first confirmed by central differences
   on a sample of entries (``gradcheck``); a batch where it is not (a ReLU
   kink within the step) is drawn again.
3. **Right or wrong.**  A gradient is right when on every batch it matches
   ``T`` entry by entry to gradcheck's tolerance: the relative error, floor
   and ``1e-6`` of a check against central differences.  Nothing else is
   tried on a right gradient, so a right gradient is never called wrong.
4. **Hypotheses.**  A wrong gradient ``U`` is compared with
   ``α nᵖ B + γ n^q λθ``: ``B`` is the data term of handgrad's backward pass,
   as is or with one step swapped for a slip (``mistakes.wrong_steps``), read
   as is, transposed, or (a bias) one row per sample; ``θ`` is the parameter,
   ``n`` the batch's rows, ``p, q ∈ {0, 1, −1}``.  ``α`` and ``γ`` are fitted
   by least squares over all batches at once, so a factor must be the same on
   every batch or the same multiple of ``n``; each is snapped to a simple
   fraction when that fits, and a hypothesis counts only when its prediction
   matches ``U`` on every batch to the tolerance of step 3.  Each reading and
   slip is also tried with no factor at all, which needs no fit (a softmax's
   row sums are zero, and least squares cannot scale zero).  The data term and
   the L2 term are so tested separately and together: ``α = n, γ = 1`` is a
   data term scaled by ``n`` ("scale"), ``α = γ = −1`` a whole gradient of the
   wrong sign ("sign"), ``α = 1, γ = 0`` a missing ``λW``.
5. **Choosing.**  Each fitting hypothesis names its mistakes: a transposed or
   per-sample reading, a swapped step, a data factor other than 1, an L2
   factor other than 1 (other than 0 on a bias).  The one with the fewest
   wins, ties broken by the order of ``KINDS``; its first mistake in that
   order is the finding's ``mistake``, the others are in ``also`` and the
   detail.  A bias averaged once too often is "bias-reduction", unless the
   weight gradient of its layer carries the same ``1/n``: then it is "scale"
   like the weights.
6. **Unknown.**  When nothing fits, the detail says where the difference
   lives: the worst entry, which rows and columns of the array, on which
   batches, and, calling the function one sample at a time, for which
   samples (with their labels).

Layouts
-------
``layout="rows"`` is handgrad's: ``X`` (n, d), ``W`` (in, out), ``b`` (out,),
targets as the loss reads them (labels (n,), or a matrix (n, K)).
``layout="columns"`` is the seeds': ``X`` (d, n), ``W`` (out, in), ``b``
(out, 1), target matrices (K, n), labels still a vector (n,).  The learner's
arrays are compared in the learner's layout.  A gradient of the reversed
shape is read as transposed; a bias with one row (rows) or one column
(columns) per sample as not summed; a bias with one entry per sample ((n,),
(1, n) or (n, 1)) as summed over the units; any other shape is bad input, and
so is a float32 gradient: its rounding alone exceeds the tolerance.

Decisions
---------
* Four kinds beyond the ones the issue named: "chain-rule" (seed 000's
  hidden layer multiplies each unit by its own output where the output
  weights belong and follows one score), "softmax-jacobian" (seed 004's
  intermediate line puts ``p_y`` where ``p_k`` belongs), "layer-input" (seed
  000's output formula read with the network's ``X``) and "loss-gradient"
  (another loss's ``∂L/∂Z``).  A weight matrix left untransposed on the way
  back is "transpose", like a gradient returned transposed.
* The parameter values are drawn near the model's, not taken as they are:
  a fresh network's zero biases would hide an L2 term on a bias.
* One slipped step per gradient is looked for, with any factors on top;
  the search over two slips would grow with the square of the network and
  find coincidences, so two slips read as "unknown" with their location.
* Dropout and BatchNorm are refused: a learner's hand-written gradient of a
  random mask or of batch statistics is not what the seeds teach, and the
  slips above are written for Dense layers and activations.
"""

import textwrap
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from handgrad.derivations.mistakes import KINDS, Symbols, derivative_text, loss_gradient_text, wrong_steps
from handgrad.errors import HandgradError
from handgrad.nn.activations import Activation
from handgrad.nn.gradcheck import TOLERANCE, compare, gradcheck
from handgrad.nn.layers import Dense
from handgrad.nn.losses import Loss, softmax
from handgrad.nn.model import Sequential, stored_arrays
from handgrad.nn.objective import loss_and_gradients
from handgrad.validation import check_features, is_sparse

LAYOUTS = ("rows", "columns")
BATCH_SIZES = (3, 8, 5, 4)
POWERS = (0, 1, -1)        # the power of the batch size n in a factor: constant, × n, ÷ n
CHECKED_ENTRIES = 4        # entries of each array differenced to confirm the truth on a batch
DRAWS = 5                  # batches drawn for one size before the truth counts as unconfirmable
SCREEN = 1e-4              # relative residual of a least-squares fit below which it is checked entry by entry
SPREAD = 0.5               # parameter noise, in units of the layer's weight scale
ORDER = {kind: rank for rank, kind in enumerate(KINDS)}
_TOLERANCE_TEXT = f"{TOLERANCE:.0e}".replace("e-0", "e-")      # 1e-6
WIDTH = 100


@dataclass
class Finding:
    """The diagnosis of one gradient the learner returned.

    Attributes
    ----------
    name : str
        The parameter, as ``hg.derive`` prints it (``"W2"``).
    correct : bool
        Whether the gradient matches the true one on every batch.
    mistake : str or None
        None when correct, else a kind of ``KINDS`` (``"unknown"`` when none fits).
    detail : str
        What differs, with the numbers, and what the right term is.
    also : tuple of str
        Further kinds the same gradient shows, after ``mistake``.
    error : float or None
        The worst relative error against the true gradient over the batches
        (None when the shapes cannot be compared entry by entry).
    """

    name: str
    correct: bool
    mistake: str = None
    detail: str = ""
    also: tuple = ()
    error: float = None


class Diagnosis:
    """What :func:`diagnose` found: one :class:`Finding` per gradient returned.

    Attributes
    ----------
    findings : list of Finding
        In parameter order (``W1, b1, W2, …``).
    title : str
        The network, loss, λ and layout that were diagnosed.
    sizes : tuple of int
        The rows of each batch the learner's function was called on.

    Examples
    --------
    Continuing the example of :func:`diagnose`:

    >>> [(finding.name, finding.correct, finding.mistake) for finding in report]
    [('W1', False, 'scale'), ('b1', False, 'scale')]
    >>> print(report)                                  # doctest: +ELLIPSIS
    diagnosis of Dense(4, 3), loss cross-entropy (mean), λ = 0, rows layout
    ...
    FAILED: 2 of 2 gradients wrong: W1 (scale), b1 (scale)
    """

    def __init__(self, findings, title, sizes):
        self.findings, self.title, self.sizes = list(findings), title, tuple(sizes)

    @property
    def passed(self):
        """True when every gradient returned is right."""
        return all(finding.correct for finding in self.findings)

    def __bool__(self):
        return self.passed

    def __getitem__(self, name):
        for finding in self.findings:
            if finding.name == name:
                return finding
        raise KeyError(f"no gradient named {name!r} was diagnosed; these were: "
                       f"{', '.join(f.name for f in self.findings)}")

    def __iter__(self):
        return iter(self.findings)

    def __str__(self):
        names = max(len("parameter"), *(len(f.name) for f in self.findings))
        kinds = max(len("mistake"), *(len(f.mistake or "") for f in self.findings))
        left = names + 2 + 7 + kinds + 2
        lines = [self.title, f"checked against handgrad's gradient (confirmed by central differences) on random "
                             f"batches of {_sizes_text(self.sizes)} rows", "",
                 f"{'parameter':<{names}}  {'right':<7}{'mistake':<{kinds}}  what differs"]
        for f in self.findings:
            wrapped = textwrap.wrap(f.detail, max(40, WIDTH - left)) or [""]
            lines.append(f"{f.name:<{names}}  {'yes' if f.correct else 'NO':<7}{f.mistake or '-':<{kinds}}  {wrapped[0]}")
            lines += [" " * left + line for line in wrapped[1:]]
        wrong = [f for f in self.findings if not f.correct]
        if wrong:
            listed = ", ".join(f"{f.name} ({f.mistake})" for f in wrong)
            lines.append(f"FAILED: {len(wrong)} of {len(self.findings)} gradients wrong: {listed}")
        elif len(self.findings) == 1:
            lines.append("passed: the gradient returned is right")
        else:
            lines.append(f"passed: all {len(self.findings)} gradients right")
        return "\n".join(lines)

    __repr__ = __str__


def diagnose(model, loss, X, y, gradients, l2=0.0, layout="rows", seed=0):
    """Diagnose a hand-written gradient: for each array it returns, right, or which mistake.

    The learner's ``gradients(params, X, y)`` is called on random batches
    drawn from ``X, y``, and each gradient it returns is compared with
    handgrad's (confirmed by central differences).  A wrong one is tested
    against the catalogue of mistakes (``handgrad.derivations.mistakes.KINDS``):
    a factor (the batch size, 2, ½), a sign, a transpose, the L2 term missing,
    doubled or on a bias, the −Y term missing, a wrong activation derivative,
    a wrong step of the chain rule, a bias not summed, …  The module
    docstring says how.

    Parameters
    ----------
    model : Sequential
        A network of ``Dense`` layers and activations (its weights are the
        starting point; each batch moves them a little).
    loss : Loss
        The loss of the objective ``J = loss + (λ/2) Σ‖W‖²``.
    X : array of shape (n_samples, n_features)
        Rows to draw the batches from (rows layout, whatever ``layout`` is).
    y : array
        Their labels (n_samples,) or targets (n_samples, n_outputs).
    gradients : callable
        ``gradients(params, X, y) -> dict``: ``params`` maps the names
        ``hg.derive`` prints (``W1, b1, W2, …``) to arrays; the result maps
        some or all of them to the learner's ``∂J/∂θ`` for that batch.
    l2 : float, default 0.0
        λ, the L2 coefficient (weights only; biases are not penalised).
    layout : {"rows", "columns"}, default "rows"
        ``"rows"``: ``X`` (n, d), ``W`` (in, out), ``b`` (out,).
        ``"columns"``, the seeds' convention: ``X`` (d, n), ``W`` (out, in),
        ``b`` (out, 1), target matrices (K, n), labels (n,); gradients are
        returned in the same layout.
    seed : int, default 0
        Seeds the batches and the parameter values they are drawn at.

    Returns
    -------
    Diagnosis
        ``report.findings`` (one :class:`Finding` per returned gradient),
        ``report.passed``, ``report["W2"]``; ``print(report)`` for the table.

    Raises
    ------
    HandgradError
        A model with layers other than Dense and activations, a bad ``l2``
        or ``layout``, or bad input from the learner's function: an exception
        inside it, a result that is not a dict of the network's names, an
        array of a shape that fits no reading, values that are not finite.

    Examples
    --------
    >>> import numpy as np, handgrad as hg
    >>> model = hg.Sequential(hg.Dense(4, 3, dtype=np.float64))
    >>> def gradients(params, X, y):          # softmax regression, the 1/n of the mean forgotten
    ...     P = hg.softmax(X @ params["W1"] + params["b1"])
    ...     P[np.arange(len(y)), y] -= 1
    ...     return {"W1": X.T @ P, "b1": P.sum(axis=0)}
    >>> rng = np.random.default_rng(0)
    >>> report = hg.diagnose(model, hg.SoftmaxCrossEntropy(), rng.normal(size=(20, 4)),
    ...                      rng.integers(0, 3, size=20), gradients)
    >>> report.passed, report["W1"].mistake
    (False, 'scale')
    """
    _check_arguments(model, loss, gradients, l2, layout)
    from threadpoolctl import threadpool_limits

    # Products of a few rows: one BLAS thread is faster, and waiting threads were slower still.
    with threadpool_limits(limits=1):
        return _diagnose(model.astype(np.float64), loss, X, y, gradients, float(l2), layout, seed)


def _check_arguments(model, loss, gradients, l2, layout):
    if not isinstance(model, Sequential):
        raise HandgradError(f"diagnose takes a handgrad Sequential, got {type(model).__name__}")
    others = [layer for layer in model.layers if not isinstance(layer, (Dense, Activation))]
    if others:
        raise HandgradError(f"diagnose takes a network of Dense layers and activations, and {others[0]!r} is "
                            "neither; build the network without it (no --dropout, --batch-norm)")
    if not isinstance(loss, Loss):
        raise HandgradError(f"diagnose takes a handgrad loss (such as hg.SoftmaxCrossEntropy()), "
                            f"got {type(loss).__name__}")
    if not callable(gradients):
        raise HandgradError(f"gradients must be a function gradients(params, X, y) returning a dict, "
                            f"got {type(gradients).__name__}")
    if isinstance(l2, bool) or not isinstance(l2, (int, float, np.floating)) or not 0 <= l2 < float("inf"):
        raise HandgradError(f"l2 must be a non-negative number, got {l2!r}")
    if layout not in LAYOUTS:
        raise HandgradError(f"layout must be 'rows' or 'columns', got {layout!r}")


def _diagnose(model, loss, X, y, gradients, l2, layout, seed):
    X = check_features(X, np.float64, model.n_features)
    X = X.toarray() if is_sparse(X) else X          # the learner gets plain arrays
    y = loss.check_targets(y, X.shape[0], model.n_outputs, np.float64)
    if X.shape[0] == 0:
        raise HandgradError("diagnose needs at least one row of X to draw batches from")
    case = _Case(model, loss, l2, layout, gradients)
    rng = np.random.default_rng(seed)
    batches = [_draw(case, X, y, size, rng) for size in BATCH_SIZES]
    for batch in batches:
        batch.user = case.call(batch.params, batch.X, batch.y)
    names = _returned_names(case, batches)
    readings = {name: _readings(case, batches, name) for name in names}
    wrong = [name for name in names if not _right(case, batches, name)]
    found = _fitting_explanations(case, batches, wrong, readings)
    chosen = _choose(case, wrong, found)
    findings = [_finding(case, batches, name, chosen) for name in names]
    return Diagnosis(findings, _title(case), BATCH_SIZES)


# -- the network, the learner's layout, and calling the learner ---------------------------------

class _Case:
    """What every step needs: the float64 model, its parameter names, the learner's layout and function."""

    def __init__(self, model, loss, l2, layout, gradients):
        self.model, self.loss, self.l2, self.layout, self.gradients = model, loss, l2, layout, gradients
        self.config = model.config()
        arrays = [(name, position, attribute) for name, position, attribute, is_buffer
                  in stored_arrays(self.config) if not is_buffer]
        self.names = [name for name, _, _ in arrays]
        self.where = {name: (position, attribute) for name, position, attribute in arrays}
        self.at = {}                            # model position → {"W": name, "b": name}
        for name, position, attribute in arrays:
            self.at.setdefault(position, {})[attribute] = name
        self.decayed = {name for name, position, attribute in arrays
                        if attribute in model.layers[position].decayed_names}
        self.symbols = Symbols(model, layout)
        self.steps = wrong_steps(model, loss, self.symbols)
        self.mean = getattr(loss, "reduction", "mean") == "mean"

    def index(self, name):
        """``l`` of ``W_l``/``b_l``: the Dense layer the parameter belongs to."""
        return self.symbols.dense[self.where[name][0]]

    def is_bias(self, name):
        return name not in self.decayed

    def to_user(self, array):
        """A rows-layout array in the learner's layout: matrices transposed, vectors as columns (columns layout)."""
        if self.layout == "rows":
            return array
        return array.T if array.ndim == 2 else array[:, None]

    def network(self, values):
        """A float64 copy of the network holding ``values`` (by name)."""
        model = Sequential.from_config(self.config, np.float64)
        for name, value in values.items():
            position, attribute = self.where[name]
            getattr(model.layers[position], attribute)[...] = value
        return model

    def expected_shape(self, name):
        position, attribute = self.where[name]
        return self.to_user(getattr(self.model.layers[position], attribute)).shape

    def call(self, params, X, y):
        """The learner's gradients for rows-layout ``params, X, y``, as float64 arrays in the learner's layout."""
        given = {name: np.array(self.to_user(value)) for name, value in params.items()}
        X_user = np.array(X.T if self.layout == "columns" else X)
        y_user = np.array(y.T if self.layout == "columns" and y.ndim == 2 else y)
        try:
            result = self.gradients(given, X_user, y_user)
        except Exception as exc:       # the learner's code: any failure is bad input, told in one line
            raise HandgradError(f"gradients(params, X, y) raised {type(exc).__name__}{_where(exc)}: "
                                f"{_first_line(exc)} (on a batch of {len(X)} rows); fix it and run again") from None
        return self._read(result, len(X))

    def _read(self, result, n):
        if not isinstance(result, Mapping):
            raise HandgradError(f"gradients(params, X, y) returned a {type(result).__name__}; return a dict from "
                                f"parameter names ({', '.join(self.names)}) to gradient arrays")
        unknown = [key for key in result if key not in self.names]
        if unknown:
            raise HandgradError(f"gradients returned {unknown[0]!r}, which is not a parameter of this network; "
                                f"its parameters are {', '.join(self.names)}")
        if not result:
            raise HandgradError(f"gradients returned an empty dict; return some of {', '.join(self.names)}")
        arrays = {}
        for name in self.names:
            if name in result:
                arrays[name] = _numbers(name, result[name], n)
        return arrays


def _numbers(name, value, n):
    dtype = getattr(value, "dtype", None)
    if dtype is not None and np.issubdtype(dtype, np.floating) and np.finfo(dtype).eps > np.finfo(np.float64).eps:
        # float32 rounds at 1e-7 relative, and sums of products lose more: the 1e-6 tolerance cannot tell
        raise HandgradError(f"gradients returned {name} as {np.dtype(dtype).name}, too coarse to compare at 1e-6; "
                            "compute in float64, as the params given are")
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise HandgradError(f"gradients returned {name} as a {type(value).__name__}, which is not an array of "
                            "numbers; return a NumPy array") from None
    if not np.isfinite(array).all():
        raise HandgradError(f"gradients returned NaN or infinite values in {name} (on a batch of {n} rows); "
                            "look for an overflowing exp or a division by zero")
    return array


def _where(exc):
    """`` at FILE line N``: the innermost frame of the learner's code (outside NumPy and handgrad)."""
    skip = (str(Path(np.__file__).parent), str(Path(__file__).parents[1]))
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if not frame.filename.startswith(skip)]
    return f" at {Path(frames[-1].filename).name} line {frames[-1].lineno}" if frames else ""


def _first_line(exc):
    text = " ".join(str(exc).split())
    return text[:200] if text else "(no message)"


def _returned_names(case, batches):
    names = list(batches[0].user)
    for batch in batches[1:]:
        if list(batch.user) != names:
            raise HandgradError(f"gradients returned {', '.join(names)} on one batch and "
                                f"{', '.join(batch.user)} on another; return the same names every time")
    return names


# -- batches --------------------------------------------------------------------------------------

class _Batch:
    """One random batch: its rows, its parameter values, a float64 network holding them, and the truth.

    The network is the batch's own copy, so that its layers keep this batch's
    forward pass: :meth:`backward` runs backpropagation on it again and again,
    each time with another step swapped.
    """

    def __init__(self, case, X, y, values):
        self.case, self.X, self.y, self.n, self.params = case, X, y, len(X), values
        self.model = case.network(values)
        self.confirmed = gradcheck(self.model, case.loss, X, y, l2=case.l2, entries=CHECKED_ENTRIES).passed
        self.value, truth = loss_and_gradients(self.model, case.loss, X, y, l2=case.l2)
        self.truth = dict(zip(case.names, truth))
        self.penalty = {name: case.l2 * values[name] for name in case.names}   # λθ: a weight's L2 term
        self._forward()

    def _forward(self):
        """Each layer on a fresh array (so the pre-activations survive), then ``G = ∂L/∂Z_Q``, ``P``, ``Y``."""
        loss, self.inputs, A = self.case.loss, [], self.X
        for layer in self.model.layers:
            self.inputs.append(A)
            A = layer.forward(A)
        self.output = A
        loss.forward(A, self.y)
        self.G = loss.backward().copy()
        self.kappa = 1.0 / self.n if self.case.mean else 1.0
        self.Y = self.y if self.y.ndim == 2 else np.eye(A.shape[1])[self.y]        # labels as one-hot rows
        self.P = softmax(A)

    def backward(self, step=None):
        """``(grads, deltas)``: ``∂L/∂θ`` by name and each Dense layer's ``∂J/∂Z`` by its bias's name,
        from handgrad's backward pass with ``step`` (a ``WrongStep``) swapped in."""
        layers = self.model.layers
        G = step.compute(self) if step is not None and step.site == "output" else self.G
        grads, deltas = {}, {}
        for position in range(len(layers) - 1, -1, -1):
            layer = layers[position]
            swapped = step is not None and step.position == position
            if isinstance(layer, Dense):
                G = self._dense_backward(layer, position, G, step if swapped else None, grads, deltas)
            elif swapped:
                A = self.inputs[position + 1] if position + 1 < len(layers) else self.output
                G = step.compute(G, self.inputs[position], A)
            else:
                G = layer.backward(G)
            if G is None:
                break
        return grads, deltas

    def _dense_backward(self, layer, position, G, step, grads, deltas):
        names = self.case.at[position]
        G_in = layer.backward(G, input_grad=position > 0)       # stores dW = Xᵀ G, db = Σ_rows G
        grads[names["W"]], grads[names["b"]], deltas[names["b"]] = layer.dW.copy(), layer.db.copy(), G
        if step is not None and step.site == "weight":
            grads[names["W"]] = step.compute(self).T @ G
        if step is not None and step.site == "dense":
            G_in = step.compute(G, self.inputs[position], layer.W)
        return G_in


def _draw(case, X, y, size, rng):
    """A :class:`_Batch` of ``size`` rows whose truth central differences confirm."""
    for _ in range(DRAWS):
        rows = rng.choice(len(X), size=size, replace=len(X) < size)
        batch = _Batch(case, X[rows], y[rows], _values(case, rng))
        if batch.confirmed:
            return batch
    raise HandgradError("handgrad's own gradient of this network disagrees with central differences on every "
                        "batch drawn (inputs on a ReLU kink?); pass other rows or another seed")


def _values(case, rng):
    """Each parameter moved by Gaussian noise of ``SPREAD`` times its layer's weight scale (RMS of W)."""
    values = {}
    for name in case.names:
        position, attribute = case.where[name]
        layer = case.model.layers[position]
        scale = float(np.sqrt(np.mean(layer.W ** 2))) or 1 / np.sqrt(layer.n_in)
        value = getattr(layer, attribute)
        values[name] = value + SPREAD * scale * rng.standard_normal(value.shape)
    return values


# -- right, or how else to read the learner's array --------------------------------------------

def _right(case, batches, name):
    rows = _comparisons(case, batches, name)
    return all(row is not None and row.max_error < TOLERANCE for row in rows)


def _comparisons(case, batches, name, transposed=False):
    """gradcheck's comparison of the learner's array with the truth on each batch (None where shapes differ)."""
    rows = []
    for batch in batches:
        U, T = batch.user[name], case.to_user(batch.truth[name])
        U = U.T if transposed else U
        rows.append(compare(name, U, T, batch.value) if U.shape == T.shape else None)
    return rows


READINGS = ("as-is", "transposed", "unsummed", "across")


def _reads(case, name, how, batch):
    """Whether the learner's array for ``name`` on ``batch`` has the shape ``how`` reads it in."""
    shape, expected = batch.user[name].shape, case.expected_shape(name)
    if how == "as-is":
        return shape == expected
    if how == "transposed":
        return len(expected) == 2 and max(expected) > 1 and shape == expected[::-1]
    if not case.is_bias(name):
        return False
    if how == "unsummed":
        return shape == case.to_user(np.empty((batch.n, expected[0]))).shape
    return max(shape, default=0) == batch.n and int(np.prod(shape)) == batch.n and len(shape) <= 2   # across


def _readings(case, batches, name):
    """The readings that take the learner's shape on every batch; none is bad input."""
    fitting = [how for how in READINGS if all(_reads(case, name, how, batch) for batch in batches)]
    if not fitting:
        batch = next(b for b in batches if b.user[name].shape != case.expected_shape(name))
        raise HandgradError(f"gradients returned {name} with shape {batch.user[name].shape} (on a batch of "
                            f"{batch.n} rows), but {name} has shape {case.expected_shape(name)} in the "
                            f"{case.layout} layout; return each gradient in its parameter's shape")
    return fitting


def _basis(case, name, how, grads, deltas, shape):
    """The data term ``B`` of one backward pass, read as the learner's array (of ``shape``) is."""
    if how == "as-is":
        return case.to_user(grads[name])
    if how == "transposed":
        return case.to_user(grads[name]).T
    if how == "unsummed":
        return case.to_user(deltas[name])
    return deltas[name].sum(axis=1).reshape(shape)      # across the units: one sum per sample


def _penalties(case, name, how, batches):
    """``λθ`` read as the learner's array is, per batch; None when there is no L2 term to fit."""
    if not case.l2 or how not in ("as-is", "transposed"):
        return None
    arrays = [case.to_user(batch.penalty[name]) for batch in batches]
    return [a.T for a in arrays] if how == "transposed" else arrays


# -- fitting α nᵖ B + γ n^q λθ --------------------------------------------------------------------

@dataclass(frozen=True)
class _Explanation:
    """A hypothesis that fits: a reading, a swapped step (or none), and the factors of the two terms."""

    how: str
    step: object
    alpha: float
    p: int
    gamma: float
    q: int


def _fitting_explanations(case, batches, wrong, readings):
    """``{name: [_Explanation, …]}``: every hypothesis that fits each wrong gradient on every batch."""
    found = {name: [] for name in wrong}
    plain = [batch.backward() for batch in batches]
    for step in [None, *case.steps]:
        passes = plain if step is None else [batch.backward(step) for batch in batches]
        for name in wrong:
            if step is not None and all(np.array_equal(grads[name], same[name])
                                        for (grads, _), (same, _) in zip(passes, plain)):
                continue                            # the step lies nearer the output: this gradient never sees it
            users = [batch.user[name] for batch in batches]
            for how in readings[name]:
                bases = [_basis(case, name, how, grads, deltas, user.shape)
                         for (grads, deltas), user in zip(passes, users)]
                penalties = _penalties(case, name, how, batches)
                right_l2 = None if penalties is None else float(name in case.decayed)   # γ of a right L2 term
                found[name] += [_Explanation(how, step, *fit)
                                for fit in _fits(users, bases, penalties, batches, right_l2)]
    return found


def _fits(users, bases, penalties, batches, right_l2):
    """Every ``(α, p, γ, q)`` with ``U = α nᵖ B + γ n^q L`` on every batch to gradcheck's tolerance.

    ``α = 1, γ = right_l2`` (no factor at all) is tried first as it is: where ``B``
    is zero to the tolerance (a softmax's row sums), least squares cannot fit
    a factor, but the reading itself may still be the one that fits.
    """
    gram = _gram(users, bases, penalties)
    sizes = [float(batch.n) for batch in batches]
    fits = [fit for fit in [_confirmed(users, bases, penalties, batches, 0, 0, 1.0, right_l2)] if fit]
    for p in POWERS:
        for q in POWERS if penalties is not None else (None,):
            coefficients = _least_squares(gram, sizes, p, q)
            fit = coefficients and _confirmed(users, bases, penalties, batches, p, q, *coefficients)
            if fit and fit not in fits:
                fits.append(fit)
    return fits


def _gram(users, bases, penalties):
    """Per batch the dot products ``B·B, B·L, L·L, B·U, L·U, U·U`` of the flattened arrays (floats)."""
    rows = []
    for i, (U, B) in enumerate(zip(users, bases)):
        u, b = U.ravel(), B.ravel()
        penalty = penalties[i].ravel() if penalties is not None else np.zeros_like(b)
        rows.append([float(x) for x in (b @ b, b @ penalty, penalty @ penalty, b @ u, penalty @ u, u @ u)])
    return rows


def _least_squares(gram, sizes, p, q):
    """``(α, γ)`` minimising ``Σ_batches ‖U − α nᵖ B − γ n^q L‖²`` (``γ`` None without ``L``), or None when
    even the best leaves more than ``SCREEN`` of ``‖U‖``: the normal equations, solved by hand (2 × 2)."""
    bb = bl = ll = bu = lu = uu = 0.0
    for (BB, BL, LL, BU, LU, UU), n in zip(gram, sizes):
        wb, wl = n ** p, (n ** q if q is not None else 0.0)
        bb, bl, ll = bb + wb * wb * BB, bl + wb * wl * BL, ll + wl * wl * LL
        bu, lu, uu = bu + wb * BU, lu + wl * LU, uu + UU
    det = bb * ll - bl * bl
    if q is None or det <= 1e-12 * bb * ll:
        if bb <= 0:
            return None
        alpha, gamma = bu / bb, (None if q is None else 0.0)      # no L2 column, or one parallel to B
        residual = uu - alpha * bu
    else:
        alpha, gamma = (bu * ll - bl * lu) / det, (bb * lu - bl * bu) / det
        residual = uu - alpha * bu - gamma * lu                      # ‖U‖² − θᵀr at the optimum
    return None if residual > SCREEN ** 2 * uu else (alpha, gamma)


def _confirmed(users, bases, penalties, batches, p, q, alpha, gamma):
    """The fit, snapped to simple fractions where they fit, if it matches every batch entry by entry."""
    for a, g in ((_snap(alpha), _snap(gamma)), (alpha, gamma)):
        if a == 0:
            continue                    # no data term at all: not a mistake the catalogue names
        if all(_matches(U, _predicted(B, None if penalties is None else penalties[i], batch.n, a, p, g, q),
                        batch.value) for i, (U, B, batch) in enumerate(zip(users, bases, batches))):
            return a, p, g, (q if g else 0) if g is not None else None
    return None


def _predicted(B, L, n, alpha, p, gamma, q):
    prediction = alpha * float(n) ** p * B
    if L is not None:
        prediction = prediction + gamma * float(n) ** q * L
    return prediction


def _matches(U, prediction, value):
    return compare("", U, prediction, value).max_error < TOLERANCE


def _snap(x):
    """``x`` snapped: 0 within 1e-6 of it, a fraction of denominator ≤ 16 within 1e-6 relative of it, else ``x``."""
    if x is None or abs(x) <= 1e-6:
        return None if x is None else 0.0
    fraction = Fraction(x).limit_denominator(16)
    return float(fraction) if abs(float(fraction) - x) <= 1e-6 * abs(x) else x


# -- choosing, and the findings ---------------------------------------------------------------------

def _choose(case, wrong, found):
    """``{name: (explanation, mistakes)}`` for each wrong gradient with a fitting hypothesis, fewest mistakes first.

    Weights first: a bias's ``1/n`` is read against its layer's weight gradient.
    """
    chosen, layer_factors = {}, {}
    for name in sorted(wrong, key=case.is_bias):
        ranked = []
        for explanation in found[name]:
            mistakes = _mistakes(case, name, explanation, layer_factors)
            if mistakes:
                ranked.append(((len(mistakes), [ORDER[kind] for kind, _ in mistakes]), explanation, mistakes))
        if ranked:
            _, explanation, mistakes = min(ranked, key=lambda entry: entry[0])
            chosen[name] = (explanation, mistakes)
            if not case.is_bias(name):
                layer_factors[case.index(name)] = (explanation.alpha, explanation.p)
    return chosen


def _finding(case, batches, name, chosen):
    rows = _comparisons(case, batches, name)
    error = None if any(row is None for row in rows) else max(row.max_error for row in rows)
    if name not in chosen and error is not None and error < TOLERANCE:
        return Finding(name, True, None, f"right on every batch, to gradcheck's tolerance {_TOLERANCE_TEXT}", (), error)
    if name not in chosen:
        return Finding(name, False, "unknown", _unknown_text(case, batches, name), (), error)
    _, mistakes = chosen[name]
    kinds = [kind for kind, _ in mistakes]
    detail = mistakes[0][1] + "".join(f" Also: {sentence}" for _, sentence in mistakes[1:])
    if error is not None:
        worst = max(zip(rows, batches), key=lambda pair: pair[0].max_error)
        detail += f" {_worst_entry(name, *worst)}"
    return Finding(name, False, kinds[0], detail, tuple(dict.fromkeys(kinds[1:])), error)


def _worst_entry(name, row, batch):
    """``Worst entry: W2[3,1] is 0.01234 where −0.04567 is right (batch of 8 rows).``"""
    return (f"Worst entry: {name}[{','.join(map(str, row.where))}] is {_value_text(row.analytic)} where "
            f"{_value_text(row.numeric)} is right (batch of {batch.n} rows).")


def _value_text(x):
    return f"{x:.4g}".replace("-", "−")


def _title(case):
    layers = " → ".join(repr(layer) for layer in case.model.layers)
    reduction = getattr(case.loss, "reduction", None)
    loss = (case.loss.name or type(case.loss).__name__) + (f" ({reduction})" if reduction else "")
    return f"diagnosis of {layers}, loss {loss}, λ = {case.l2:g}, {case.layout} layout"


def _sizes_text(sizes):
    sizes = [str(s) for s in sizes]
    return sizes[0] if len(sizes) == 1 else ", ".join(sizes[:-1]) + " and " + sizes[-1]


# -- what each mistake says -------------------------------------------------------------------------

def _mistakes(case, name, e, layer_factors):
    """``[(kind, sentence)]`` that explanation ``e`` of ``name``'s gradient names, in the order of ``KINDS``."""
    found = []
    if e.how == "transposed":
        found.append(("transpose", _transposed_text(case, name)))
    if e.how in ("unsummed", "across"):
        found.append(("bias-reduction", _unsummed_text(case, name, e)))
    if e.step is not None:
        found.append((e.step.kind, f"{name} is what backpropagation gives when {e.step.text}."))
    found += _factor_mistakes(case, name, e, layer_factors, alone=not found)
    return sorted(found, key=lambda mistake: ORDER[mistake[0]])


def _factor_mistakes(case, name, e, layer_factors, alone):
    """The mistakes in ``α nᵖ`` and ``γ n^q``: one for a whole gradient scaled, else one per wrong term.

    ``alone``: no other mistake explains the gradient, so a term not named here is right.
    """
    data, bias = (e.alpha, e.p), case.is_bias(name)
    fine = {(1.0, 0)} | ({(1.0, 1)} if e.how == "unsummed" and case.mean else set())
    if not bias and e.gamma is not None and data == (e.gamma, e.q) and data not in fine:
        return [_data_factor(case, name, e, layer_factors, whole=True, l2_right=False)]
    l2_wrong = e.gamma is not None and not bias and (e.gamma, e.q) != (1.0, 0)
    found = []
    if data not in fine:
        found.append(_data_factor(case, name, e, layer_factors, whole=bias or e.gamma is None,
                                  l2_right=not l2_wrong))
    if l2_wrong:
        found.append(_l2_factor(case, name, e, data_right=alone and data in fine))
    if e.gamma is not None and bias and e.gamma != 0:
        found.append(("extra-l2", f"{name} carries an L2 term {_times(e.gamma, e.q, f'λ{name}')} "
                                  f"(λ = {case.l2:g}), but biases are not penalised: ∂J/∂{name} has no λ term."))
    return found


def _data_factor(case, name, e, layer_factors, whole, l2_right):
    subject = name if whole else f"{name}'s data term"
    rest = f"; its λ{name} term is right" if not whole and l2_right else ""
    right = f" The right gradient is {_right_term(case, name)}."
    if (e.alpha, e.p) == (-1.0, 0):
        return ("sign", f"{subject} has the opposite sign of the right one on every batch, so a step along it "
                        f"climbs the objective{rest}.{right}")
    averaged = (e.alpha, e.p) == (1.0, -1) and case.is_bias(name) and e.how == "as-is"
    if averaged and layer_factors.get(case.index(name)) != (1.0, -1):
        why = (f"the 1/n of the mean is already in G{case.index(name)}" if case.mean
               else "the loss sums over the samples")
        return ("bias-reduction", f"{name} is 1/n times the right gradient on every batch: it is averaged over "
                                  f"the samples once too often ({why}).{right}")
    every = "" if e.p else " on every batch"
    return ("scale", f"{subject} is {_factor_text(e.alpha, e.p)} times the right {'gradient' if whole else 'one'}"
                     f"{every}{_per_batch(e)}{_scale_cause(case, e)}{rest}.{right}")


def _scale_cause(case, e):
    if (e.alpha, e.p) == (1.0, 1):
        return (": the factor is the batch size n, so the 1/n of the mean over the samples is missing" if case.mean
                else ": the factor is the batch size n")
    if (e.alpha, e.p) == (1.0, -1):
        return (": it is divided by the batch size n once more than the mean does" if case.mean
                else ": it is divided by the batch size n, but the loss sums over the samples")
    if e.p == 0 and e.alpha in (2.0, 0.5):
        return ": a factor of 2 too many" if e.alpha == 2 else ": half the right size (a factor of ½, 0.5)"
    return ""


def _l2_factor(case, name, e, data_right):
    factor = (e.gamma, e.q)
    rest = "; its data term is right" if data_right else ""
    if factor == (0.0, 0):
        return ("missing-l2", f"{name} lacks the L2 term λ{name} (λ = {case.l2:g}), the derivative of "
                              f"(λ/2)‖{name}‖²{rest}: ∂J/∂{name} = ∂L/∂{name} + λ{name}.")
    if factor == (-1.0, 0):
        return ("sign", f"{name} subtracts its L2 term λ{name} where the derivative of (λ/2)‖{name}‖² adds it"
                        f"{rest}.")
    why = {(2.0, 0): ": counted twice, as if the penalty were λ‖W‖²",
           (0.5, 0): ": halved; the derivative of (λ/2)‖W‖² is λW",
           (1.0, -1): ": divided by the batch size n, but (λ/2)Σ‖W‖² is added once per batch, not per sample",
           (1.0, 1): ": multiplied by the batch size n, as if the penalty were added once per sample"}
    return ("l2-factor", f"{name}'s L2 term is {_times(*factor, f'λ{name}')} where λ{name} belongs"
                         f"{why.get(factor, '')} (λ = {case.l2:g}){rest}.")


def _transposed_text(case, name):
    shape = case.expected_shape(name)
    right = _right_term(case, name)
    if shape[0] == shape[1]:
        return f"{name} is the transpose of the right gradient, {right}."
    return (f"{name} comes back transposed, with shape {shape[::-1]} where {name} has shape {shape}; "
            f"the right gradient is {right}.")


def _unsummed_text(case, name, e):
    index, rows = case.index(name), "row" if case.layout == "rows" else "column"
    right = case.symbols.bias_gradient(index)
    if e.how == "across":
        return (f"{name} is summed over the units instead of over the samples: it has one entry per sample; "
                f"∂J/∂{name} = {right} has one entry per unit.")
    each = ("each sample's own gradient, whose mean" if (e.alpha, e.p) == (1.0, 1) and case.mean
            else f"G{index} itself, whose sum")
    return (f"{name} is not summed over the samples: it has one {rows} per sample, {each} is the right "
            f"gradient, ∂J/∂{name} = {right}.")


def _right_term(case, name):
    """``∂J/∂W2 = A1ᵀ G2 + λW2, G2 = (1/n) (P − Y)``: the right gradient, in the learner's layout."""
    index, symbols = case.index(name), case.symbols
    if case.is_bias(name):
        term = f"∂J/∂{name} = {symbols.bias_gradient(index)}"
    else:
        term = f"∂J/∂{name} = {symbols.weight_gradient(index)}" + (f" + λ{name}" if case.l2 else "")
    if index == symbols.depth:
        return f"{term}, G{index} = {loss_gradient_text(case.loss)}"
    activation = _activation_after(case, index)
    act = derivative_text(activation, index) if activation is not None else "1"
    return f"{term}, G{index} = ({symbols.passed_back(index + 1)}) ⊙ {act}"


def _activation_after(case, index):
    position = next(p for p, dense in case.symbols.dense.items() if dense == index)
    following = case.model.layers[position + 1] if position + 1 < len(case.model.layers) else None
    return following if isinstance(following, Activation) else None


def _times(alpha, p, term):
    """``λW1``, ``2·λW1``, ``1/n·λW1``: ``term`` with its factor."""
    return term if (alpha, p) == (1.0, 0) else f"{_factor_text(alpha, p)}·{term}"


def _factor_text(alpha, p):
    number = _number_text(alpha)
    if p == 0:
        return number
    if p == 1:
        return "n" if alpha == 1 else ("−n" if alpha == -1 else f"{number}n")
    return "1/n" if alpha == 1 else f"{number}/n"


def _number_text(x):
    fraction = Fraction(x).limit_denominator(16)
    if float(fraction) == x:
        text = str(fraction)
        return {"1/2": "½", "-1/2": "−½"}.get(text, text.replace("-", "−"))
    return f"{x:.4g}".replace("-", "−")


def _per_batch(e):
    """`` (3, 8, 5 and 4 times on the batches of 3, 8, 5 and 4 rows)`` for a factor that follows n."""
    if e.p == 0:
        return ""
    values = [_number_text(e.alpha * float(n) ** e.p) for n in BATCH_SIZES]
    return f" ({_sizes_text(values)} times on batches of {_sizes_text(BATCH_SIZES)} rows)"


# -- when nothing fits: where the difference lives -----------------------------------------------

def _unknown_text(case, batches, name):
    transposed = not _comparable(case, batches, name) and _comparable(case, batches, name, transposed=True)
    rows = _comparisons(case, batches, name, transposed=transposed)
    if any(row is None for row in rows):
        return (f"{name} has shapes {', '.join(str(b.user[name].shape) for b in batches)} on the batches, and no "
                f"reading of them (summed, transposed) gives the right gradient, "
                f"{_right_term(case, name)}, nor a catalogued mistake.")
    worst = max(range(len(batches)), key=lambda i: rows[i].max_error)
    row, batch = rows[worst], batches[worst]
    U = batch.user[name].T if transposed else batch.user[name]
    text = ("comes back transposed, and even transposed it differs from the right gradient" if transposed
            else "differs from the right gradient")
    parts = [f"{name} {text}, and no mistake in the catalogue explains the difference (worst relative error "
             f"{row.max_error:.2g}). {_worst_entry(name, row, batch)}",
             _spread_text(U, case.to_user(batch.truth[name]), batch.value),
             _batches_text(batches, rows), _samples_text(case, batch, name, transposed)]
    return " ".join(part for part in parts if part)


def _comparable(case, batches, name, transposed=False):
    return all(row is not None for row in _comparisons(case, batches, name, transposed))


def _spread_text(U, T, value):
    """Which rows and columns of the array differ (as the learner holds it)."""
    def differs(index):
        return compare("", U[index], T[index], value).max_error >= TOLERANCE

    if U.ndim == 1:
        entries = [i for i in range(U.shape[0]) if differs(np.s_[i:i + 1])]
        return f"It differs in {_which(entries, U.shape[0], 'entry', 'entries')}."
    rows = [i for i in range(U.shape[0]) if differs(np.s_[i])]
    columns = [j for j in range(U.shape[1]) if differs(np.s_[:, j])]
    return (f"It differs in {_which(rows, U.shape[0], 'row', 'rows')} and "
            f"{_which(columns, U.shape[1], 'column', 'columns')}.")


def _which(indices, total, one, many):
    if len(indices) == total:
        return f"every {one} ({total})" if total > 1 else f"its one {one}"
    listed = ", ".join(map(str, indices[:8])) + (", …" if len(indices) > 8 else "")
    return f"{one if len(indices) == 1 else many} {listed} of {total}"


def _batches_text(batches, rows):
    right = [batch.n for batch, row in zip(batches, rows) if row.max_error < TOLERANCE]
    if not right:
        return ""
    wrong = [batch.n for batch, row in zip(batches, rows) if row.max_error >= TOLERANCE]
    return (f"It is right on the batch{'es' if len(right) > 1 else ''} of {_sizes_text(right)} rows and wrong on "
            f"{'those' if len(wrong) > 1 else 'the one'} of {_sizes_text(wrong)}.")


def _samples_text(case, batch, name, transposed):
    """Which samples of ``batch`` the gradient is wrong for, asking the learner one sample at a time."""
    wrong = []
    for r in range(batch.n):
        verdict = _one_sample(case, batch, name, r, transposed)
        if verdict is None:
            return ""                   # the learner's code does not take one sample: say nothing
        if not verdict:
            wrong.append(r)
    if not wrong:
        return (f"Called one sample at a time (the {batch.n} rows of that batch), it is right for every sample, "
                "so the way the samples are combined (summed, averaged) is what goes wrong.")
    if len(wrong) == batch.n:
        return f"Called one sample at a time, it is wrong for every sample of that batch ({batch.n})."
    labels = ""
    if batch.y.ndim == 1 and np.issubdtype(batch.y.dtype, np.integer):       # class labels
        labels = f" (label{'s' if len(wrong) > 1 else ''} {', '.join(str(int(batch.y[r])) for r in wrong)})"
    return (f"Called one sample at a time, it is wrong for sample{'s' if len(wrong) > 1 else ''} "
            f"{', '.join(map(str, wrong))}{labels} of that batch's {batch.n} and right for the others.")


def _one_sample(case, batch, name, r, transposed):
    """Whether the learner's gradient for row ``r`` alone is right; None when it cannot be asked."""
    X, y = batch.X[r:r + 1], batch.y[r:r + 1]
    try:
        user = case.call(batch.params, X, y).get(name)
    except HandgradError:
        return None
    single = case.network(batch.params)     # a copy: the batch's network keeps its own forward pass
    value, truth = loss_and_gradients(single, case.loss, X, y, l2=case.l2)
    T = case.to_user(truth[case.names.index(name)])
    if user is None:
        return None
    user = user.T if transposed else user
    if user.shape != T.shape:
        return None
    return _matches(user, T, value)
