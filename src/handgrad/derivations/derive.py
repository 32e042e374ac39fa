"""The derivation of one concrete network, read from its pieces' own declarations.

``hg.derive(model, loss, l2)`` walks the model's layers in order and, for
each, fills the layer's :class:`~handgrad.nn.derivation.Derivation` with the
network's widths: the forward equation with the shapes of a batch of ``n``
rows, one backward equation per parameter and for the input, and the seed
documents they come from.  The loss (its gradient with respect to the
logits) and the objective's L2 term follow.  Nothing here knows a layer by
name: a new piece prints by declaring ``derivation`` in its class body, and a
piece that declares none prints with a note.

With ``check=(X, y)`` each gradient is also measured against central
differences in float64 (:mod:`handgrad.nn.gradcheck`'s step and relative
error) on those rows: each parameter of the whole objective, each layer's
input gradient, and the loss's gradient on the logits.  A big network has
too many weights to perturb them all (two forward passes each), so each array
is checked on a seeded sample of ``entries`` entries: half among those whose
analytic gradient is nonzero, half anywhere.
"""

import textwrap
from dataclasses import dataclass, field

import numpy as np

from handgrad.derivations.notation import fill, to_latex, to_text, width
from handgrad.errors import HandgradError
from handgrad.nn.activations import Activation
from handgrad.nn.derivation import Derivation
from handgrad.nn.gradcheck import STEP, TOLERANCE, central_difference, compare, gradcheck
from handgrad.nn.losses import Loss
from handgrad.nn.model import Sequential, stored_arrays
from handgrad.nn.objective import l2_value, loss_and_gradients
from handgrad.registry import constructor_arguments
from handgrad.validation import check_features

FORMATS = ("text", "markdown")
WRAP = 100
DOCS = "docs/derivations.md"
SEEDS = {
    "000": ("000_eda4069e158943ea.txt", "one sigmoid hidden layer, softmax, −log S_y + ½λΣW²"),
    "001": ("001_ed8d11caee23e51a.txt", "softmax regression, mean cross-entropy"),
    "002": ("002_504966d63efcce89.txt", "L layers, generic act, per-class binary cross-entropy of the softmax"),
    "003": ("003_2b816f3c65197782.txt", "two layers, ReLU, mean softmax loss"),
    "004": ("004_2e6880149b4ae046.txt", "tanh hidden layer, softmax, E = −Σ t ln y, biases folded in"),
}
OBJECTIVE = Derivation(
    forward="J = L + (λ/2) Σ_{l} ‖W_l‖²",
    backward={"W": "∂J/∂W_l = ∂L/∂W_l + λ W_l"},
    seeds="000", section="5-the-objective-l2-and-where-the-1n-lives",
    note="added to each weight gradient above; biases are not penalised")


def derive(model, loss, l2=0.0, format="text", check=None, entries=20, seed=0):
    """The derivation of ``model`` trained with ``loss`` (and L2 ``l2``), as text or Markdown.

    For each layer in order: its forward equation with the shapes for a
    batch of ``n`` rows, the backward equation for each parameter and for its
    input with their shapes, and the seed documents they come from; then the
    loss and its gradient with respect to the logits, and the objective's L2
    term (present when ``l2 > 0``).  ``format="markdown"`` writes formulas in
    LaTeX.

    ``check=(X, y)`` (a few rows: each checked entry costs two forward passes
    on them) adds the measured worst relative error beside each gradient,
    from central differences on a float64 copy, over ``entries`` sampled
    entries of each array (0: every entry), sampled with ``seed``.

    Parameters
    ----------
    model : Sequential
        The network; each layer's ``derivation`` declares its equations.
    loss : Loss
        The loss on its logits.
    l2 : float, default 0.0
        ``λ`` of the objective's L2 term, a non-negative number.
    format : {"text", "markdown"}, default "text"
        Plain text with Unicode formulas, or Markdown with LaTeX formulas.
    check : tuple, optional
        ``(X, y)``: a few rows and their targets to measure each gradient's error on.
    entries : int, default 20
        With ``check``: entries sampled per array (0: every entry).
    seed : int, default 0
        With ``check``: seeds the sampled entries.

    Returns
    -------
    str
        The derivation, one section per layer, then the loss and the objective.

    Raises
    ------
    HandgradError
        ``model`` is not a Sequential, ``loss`` not a handgrad loss, a
        negative ``l2`` or ``entries``, a ``check`` that is not a pair, or
        an unknown ``format``.

    See Also
    --------
    diagnose : Tells a learner's gradient from the ones derived here.
    gradcheck : Checks the gradients numerically.

    Examples
    --------
    >>> text = hg.derive(hg.mlp(64, [32], 10), hg.SoftmaxCrossEntropy())
    >>> "n×64 · 64×32" in text
    True
    >>> checked = hg.derive(hg.mlp(3, [4], 2, seed=0), hg.SoftmaxCrossEntropy(), l2=0.1,
    ...                     check=(np.ones((2, 3)), np.array([0, 1])))
    >>> "∂J/∂W" in checked
    True
    """
    return render(document(model, loss, l2=l2, check=check, entries=entries, seed=seed), format)


# -- the document: what is printed, before it is formatted --------------------------

@dataclass
class Measured:
    """The worst relative error of one gradient over ``checked`` of its ``total`` entries."""

    error: float
    checked: int
    total: int

    def text(self):
        where = (f"all {self.total} entries" if self.checked == self.total
                 else f"{self.checked} sampled entries of {self.total}")
        flag = "" if self.error < TOLERANCE else "  << over the tolerance"
        return f"{self.error:.1e} (worst of {where}){flag}"


@dataclass
class Row:
    label: str
    formula: str = None          # in the formula syntax, placeholders filled
    shapes: str = None           # in the formula syntax
    remark: str = None           # plain words
    measured: Measured = None


@dataclass
class Part:
    title: str
    piece: str
    declared: bool
    seeds: tuple = ()
    section: str = None
    rows: list = field(default_factory=list)
    note: str = None


@dataclass
class Document:
    title: str
    parts: list
    check: str = None            # what the check ran on, when it ran
    worst: float = None

    @property
    def passed(self):
        """Whether every measured error is below the tolerance (None when nothing was checked)."""
        return None if self.worst is None else self.worst < TOLERANCE

    def seeds(self):
        return sorted({seed for part in self.parts for seed in part.seeds})


def document(model, loss, l2=0.0, check=None, entries=20, seed=0, rows=None):
    """The :class:`Document` that :func:`derive` renders; ``rows`` names where ``check``'s rows came from."""
    if not isinstance(model, Sequential):
        raise HandgradError(f"derive takes a handgrad Sequential, got {type(model).__name__}")
    if not isinstance(loss, Loss):
        raise HandgradError(f"derive takes a handgrad loss (such as hg.SoftmaxCrossEntropy()), "
                            f"got {type(loss).__name__}")
    if isinstance(l2, bool) or not isinstance(l2, (int, float, np.floating)) or not 0 <= l2 < float("inf"):
        raise HandgradError(f"l2 must be a non-negative number, got {l2!r}")
    if isinstance(entries, bool) or not isinstance(entries, (int, np.integer)) or entries < 0:
        raise HandgradError(f"entries must be a non-negative integer (0: every entry), got {entries!r}")
    l2 = float(l2)
    measured = None
    if check is not None:
        if not isinstance(check, (tuple, list)) or len(check) != 2:
            raise HandgradError("check must be a pair (X, y) of a few rows and their labels or targets")
        measured = _measure(model, loss, *check, l2=l2, entries=int(entries), seed=seed)
    parts = _layer_parts(model, measured) + [_loss_part(model, loss, measured), _objective_part(model, l2)]
    title = f"{_describe(model)}, loss {loss.name or type(loss).__name__}" + (f", L2 λ = {l2:g}" if l2 else "")
    doc = Document(title, parts)
    if measured is not None:
        doc.worst = max(m.error for m in measured.values())
        n = len(check[0])
        doc.check = (f"each gradient against central differences (h = {STEP:g}) on {rows or f'{n} rows'}, "
                     f"on a float64 copy: the worst relative error over the entries named")
    return doc


def _describe(model):
    widths = model.layer_sizes
    acts = sorted({layer.name for layer in model.layers if isinstance(layer, Activation) and layer.name})
    return "-".join(map(str, widths)) + (f" {'/'.join(acts)}" if acts else "")


def _arguments(piece):
    try:
        return constructor_arguments(piece)
    except HandgradError:
        return {}


def _shape(array):
    return "×".join(map(str, np.shape(array))) or "1"


def _layer_parts(model, measured):
    names = {(position, attribute): name for name, position, attribute, is_buffer in stored_arrays(model.config())
             if not is_buffer}
    parts = []
    for position, layer in enumerate(model.layers):
        n_in, n_out = model.widths[position], model.widths[position + 1]
        values = {**_arguments(layer), "in": n_in, "out": n_out}
        values.update({attribute: tuple(np.shape(getattr(layer, attribute))) for attribute in layer.parameter_names})
        declared = getattr(layer, "derivation", None)
        part = _part(f"layer {position + 1}", layer, declared, values)
        skipped = position == 0 and layer.input_grad_optional      # Sequential.backward skips it
        if declared is None:
            part.rows.append(Row("shapes", shapes=f"n×{n_in} → n×{n_out}",
                                 remark="no derivation declared; see its docstring"))
        else:
            part.rows.append(Row("forward", fill(declared.forward, values),
                                 _shapes(declared, "forward", values, f"n×{n_in}", f"n×{n_out}")))
        for attribute in layer.parameter_names:
            name = names[(position, attribute)]
            shape = _shape(getattr(layer, attribute))
            formula = declared and declared.backward.get(attribute)
            part.rows.append(Row(name, formula and fill(formula, values),
                                 _shapes(declared, attribute, values, None, shape),
                                 measured=_get(measured, name)))
        formula = declared and declared.backward.get("input")
        if formula or (measured and position in measured):
            part.rows.append(Row("input", formula and fill(formula, values),
                                 None if skipped else _shapes(declared, "input", values, f"n×{n_out}", f"n×{n_in}"),
                                 remark="not computed: the input of layer 1 is the data" if skipped else None,
                                 measured=_get(measured, position)))
        extra = [key for key in (declared.backward if declared else ()) if key not in layer.parameter_names
                 and key != "input"]
        for key in extra:                      # declared gradients the layer does not name as parameters
            part.rows.append(Row(key, fill(declared.backward[key], values), _shapes(declared, key, values, None, None)))
        parts.append(part)
    return parts


def _get(measured, key):
    return None if measured is None else measured.get(key)


def _part(kind, piece, declared, values):
    if declared is None:
        return Part(kind, repr(piece), False)
    return Part(kind, repr(piece), True, declared.seeds, declared.section,
                note=declared.note and fill(declared.note, values))


def _shapes(declared, key, values, operand, result):
    """``operands → result``: the declared operand shapes, else the default operand shape."""
    spelled = declared and declared.shapes.get(key)
    left = fill(spelled, values) if spelled else operand
    if result is None:
        return left
    return f"{left} → {result}" if left else result


def _loss_part(model, loss, measured):
    K = model.n_outputs
    reduction = getattr(loss, "reduction", None)
    kappa = {"mean": "1/n", "sum": "1"}.get(reduction)
    values = {**_arguments(loss), "K": K, "in": K, "out": 1}
    if kappa:
        values["kappa"] = kappa
    declared = getattr(loss, "derivation", None)
    part = _part("loss", loss, declared, values)
    if declared is None:
        part.rows.append(Row("shapes", shapes=f"n×{K} → scalar", remark="no derivation declared; see its docstring"))
    else:
        part.rows.append(Row("forward", fill(declared.forward, values),
                             _shapes(declared, "forward", values, f"n×{K}", "scalar")))
    formula = declared and declared.backward.get("input")
    if formula or measured:
        part.rows.append(Row("logits", formula and fill(formula, values),
                             _shapes(declared, "input", values, None, f"n×{K}"),
                             measured=_get(measured, "logits")))
    if kappa:
        where = f"κ = {kappa} (reduction {reduction!r})"
        part.note = f"{where}; {part.note}" if part.note else where
    return part


def _objective_part(model, l2):
    part = Part("objective", "loss + L2", True, OBJECTIVE.seeds, OBJECTIVE.section)
    if not l2:
        part.rows.append(Row("forward", "J = L", remark="no L2 term (λ = 0)"))
        return part
    decayed = [name for name, position, attribute, is_buffer in stored_arrays(model.config())
               if not is_buffer and attribute in model.layers[position].decayed_names]
    part.rows.append(Row("forward", OBJECTIVE.forward, remark=f"λ = {l2:g}"))
    part.rows.append(Row(", ".join(decayed), OBJECTIVE.backward["W"]))
    part.note = OBJECTIVE.note
    return part


# -- the check ------------------------------------------------------------------------

def _measure(model, loss, X, y, l2, entries, seed):
    """``{parameter name | layer position | "logits": Measured}`` on a float64 copy of ``model``.

    On one BLAS thread: a few rows make products too small for threads to
    pay, and on a busy machine waiting threads made the check ten times slower.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _measure_on_one_thread(model, loss, X, y, l2, entries, seed)


def _measure_on_one_thread(model, loss, X, y, l2, entries, seed):
    model = model.astype(np.float64)
    X = check_features(X, np.float64, model.n_features, name="the check's X")
    y = loss.check_targets(y, X.shape[0], model.n_outputs, np.float64)
    rng = np.random.default_rng(seed)
    model.reseed(seed)              # dropout: every evaluation below drops the same units
    value, grads = loss_and_gradients(model, loss, X, y, l2=l2)

    def objective():
        model.reseed(seed)
        return loss.forward(model.forward(X), y) + l2_value(model.flat_parameters, model.n_decayed, l2)

    measured = {}
    for name, param, grad in zip(model.parameter_names(), model.parameters(), grads):
        measured[name] = _sampled(name, param, grad, objective, value, entries, rng)
    inputs, A = [], X
    model.reseed(seed)
    for layer in model.layers:
        inputs.append(A)
        A = np.array(layer.forward(A), dtype=np.float64)
    for position, layer in enumerate(model.layers):
        if position == 0 and layer.input_grad_optional:
            continue                    # never computed: the data's gradient
        measured[position] = _layer_input(layer, inputs[position].copy(), entries, rng, seed)
    model.reseed(seed)
    logits = np.array(model.forward(X), dtype=np.float64)
    row = gradcheck(loss, logits, y).rows[0]
    measured["logits"] = Measured(row.max_error, logits.size, logits.size)
    return measured


def _layer_input(layer, X, entries, rng, seed):
    """``∂(Σ forward(X) ⊙ R)/∂X = backward(R)`` for a fixed random ``R``, on sampled entries of ``X``."""
    layer.reseed(seed)
    R = rng.standard_normal(np.shape(layer.forward(X)))

    def scalar():
        layer.reseed(seed)          # the same dropout mask at every evaluation
        return float(np.sum(layer.forward(X) * R))

    value = scalar()
    analytic = np.array(layer.backward(R), dtype=np.float64)
    return _sampled("input", X, analytic, scalar, value, entries, rng)


def _sampled(name, param, analytic, f, value, entries, rng):
    """Central differences of ``f`` at sampled entries of ``param`` (perturbed in place, restored)."""
    analytic = np.asarray(analytic, dtype=np.float64)
    if analytic.shape != param.shape:
        raise HandgradError(f"the gradient of {name} has shape {analytic.shape}, the array has {param.shape}")
    chosen = _choose(analytic, entries, rng)
    numeric = np.empty(len(chosen))
    for k, flat in enumerate(chosen):
        numeric[k] = central_difference(f, param, np.unravel_index(flat, param.shape), STEP)
    row = compare(name, analytic.reshape(-1)[chosen], numeric, value, STEP)
    return Measured(row.max_error, len(chosen), analytic.size)


def _choose(analytic, entries, rng):
    """Flat indices to check: all of them, or ``entries`` of them, half where the analytic gradient is nonzero.

    Half at random anywhere (a gradient wrongly zero shows there); half among
    the nonzero entries, which a sparse gradient (the first layer of MNIST on
    a few rows, whose border pixels are 0) would otherwise rarely offer.
    """
    size = analytic.size
    if entries == 0 or size <= entries:
        return np.arange(size)
    nonzero = np.flatnonzero(analytic)
    picked = rng.choice(nonzero, size=min(entries // 2, len(nonzero)), replace=False) if len(nonzero) else []
    anywhere = rng.choice(size, size=entries, replace=False)
    unique = list(dict.fromkeys([*map(int, picked), *map(int, anywhere)]))
    return np.array(unique[:entries])


# -- rendering ------------------------------------------------------------------------

def render(doc, format="text"):
    """``doc`` as plain text or as Markdown with LaTeX formulas."""
    if format == "text":
        return _text(doc)
    if format == "markdown":
        return _markdown(doc)
    raise HandgradError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")


INTRO = ("Rows are samples (a batch of {n} rows).  G is the gradient {G} arriving at a layer: the loss's {dL} "
         "for the last layer, the next layer's {dX} for the others.")
WEIGHT_NOTE = "Each weight gradient shown is the data term; the objective adds {lW} to it (last part)."
_INTRO_TERMS = {"n": ("n", "n"), "G": ("∂J/∂(output)", r"\partial J/\partial(\text{output})"),
                "dL": ("∂L/∂Z", r"\partial L/\partial Z"),
                "dX": ("∂J/∂(input)", r"\partial J/\partial(\text{input})"), "lW": ("λ W", r"\lambda W")}


def _intro(template, latex=False):
    return template.format(**{key: f"${tex}$" if latex else text for key, (text, tex) in _INTRO_TERMS.items()})


def _text(doc):
    prose = [_intro(INTRO)]
    if any(part.title == "objective" and len(part.rows) > 1 for part in doc.parts):
        prose.append(_intro(WEIGHT_NOTE))
    if doc.check:
        prose.append(f"Measured: {doc.check}.")
    lines = [f"Derivation of {doc.title}"] + textwrap.wrap(" ".join(prose), WRAP)
    table = [_text_cells(row) for part in doc.parts for row in part.rows]
    widths = [max((width(cells[i]) for cells in table if cells[i] and width(cells[i]) <= cap), default=0)
              for i, cap in ((0, 14), (1, 46), (2, 36))]
    for part in doc.parts:
        header = f"{part.title}: {part.piece}"
        if part.seeds:
            header += f"  [seed{'s' if len(part.seeds) > 1 else ''} {', '.join(part.seeds)}]"
        if part.section:
            header += f"  {DOCS}#{part.section}"
        lines += ["", header]
        for row in part.rows:
            lines += _columns(_text_cells(row), widths)
        if part.note:
            lines += textwrap.wrap(f"note: {part.note}", WRAP, initial_indent="  ", subsequent_indent="        ")
    if doc.check:
        verdict = "passed" if doc.passed else "FAILED"
        lines += ["", f"Gradient check {verdict}: worst relative error {doc.worst:.1e} (tolerance {TOLERANCE:g})."]
    if doc.seeds():
        lines += ["", "Seed documents (../shared/seeds/):"]
        lines += [f"  {s}  {SEEDS[s][0]}  {SEEDS[s][1]}" for s in doc.seeds() if s in SEEDS]
    return "\n".join(lines) + "\n"


def _text_cells(row):
    shapes = " ".join(filter(None, [row.shapes and to_text(row.shapes), row.remark and f"({row.remark})"
                                    if row.shapes else row.remark]))
    return [row.label, row.formula and to_text(row.formula), shapes, row.measured and row.measured.text()]


def _columns(cells, widths, indent=2, gap=2):
    """One row of aligned cells; a cell wider than its column pushes the rest onto the next line."""
    line, out = " " * indent, []
    start = indent
    for cell, cell_width in zip(cells, widths + [0]):
        if cell:
            if width(line) > start:
                out.append(line.rstrip())
                line = " " * start
            line += " " * (start - width(line)) + cell
        start += (cell_width + gap) if cell_width else 0
    out.append(line.rstrip())
    return out


def _markdown(doc):
    lines = [f"# Derivation of {_md(doc.title)}", "", _intro(INTRO, latex=True)]
    if any(part.title == "objective" and len(part.rows) > 1 for part in doc.parts):
        lines += ["", _intro(WEIGHT_NOTE, latex=True)]
    if doc.check:
        lines += ["", f"Measured: {_md(doc.check)}."]
    for part in doc.parts:
        lines += ["", f"## {part.title[0].upper()}{part.title[1:]}: `{part.piece}`", ""]
        about = []
        if part.seeds:
            about.append(f"Seed{'s' if len(part.seeds) > 1 else ''} {', '.join(part.seeds)}")
        if part.section:
            about.append(f"derived in [{DOCS}]({DOCS}#{part.section})")
        if about:
            lines += ["; ".join(about) + ".", ""]
        header = ["", "equation", "shapes"] + (["measured error"] if doc.check else [])
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in part.rows:
            equation = f"${_cell(to_latex(row.formula))}$" if row.formula else ""
            shapes = f"${_cell(to_latex(row.shapes))}$" if row.shapes else ""
            if row.remark:
                shapes = f"{shapes} ({_md(row.remark)})" if shapes else _md(row.remark)
            cells = [f"`{row.label}`" if row.label not in ("forward", "shapes") else row.label, equation, shapes]
            if doc.check:
                cells.append(_md(row.measured.text()) if row.measured else "")
            lines.append("| " + " | ".join(cells) + " |")
        if part.note:
            lines += ["", f"Note: {_md(part.note)}"]
    if doc.check:
        verdict = "passed" if doc.passed else "**failed**"
        lines += ["", f"Gradient check {verdict}: worst relative error {doc.worst:.1e} (tolerance {TOLERANCE:g})."]
    if doc.seeds():
        lines += ["", "Seed documents (`../shared/seeds/`):", ""]
        lines += [f"- {s}: `{SEEDS[s][0]}`, {_md(SEEDS[s][1])}" for s in doc.seeds() if s in SEEDS]
    return "\n".join(lines) + "\n"


def _md(text):
    return text.replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def _cell(latex):
    return latex.replace("|", "\\vert ")

