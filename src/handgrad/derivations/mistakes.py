"""The mistakes :func:`handgrad.diagnose` can name, and the wrong backward steps behind some of them.

:data:`KINDS` is the catalogue: each kind with one line saying what it
means.  ``docs/diagnose.md`` explains each at length and how it is
recognised.  The order of :data:`KINDS` is the order of precedence: when one
gradient shows two mistakes, the first in this order is the one reported as
its mistake (a structural slip before a factor, a factor of the data term
before one of the L2 term), the others follow in the detail.

Some mistakes change one step of backpropagation, and everything computed
before it on the way back (the layers nearer the input) inherits the change.
A :class:`WrongStep` is such a slip: the step, where in the network it sits,
what it computes and what belongs there.  The diagnosis runs handgrad's own
backward pass with that one step swapped (no autograd: each swap is a line
of NumPy below) and asks whether the learner's gradient is what comes out.
The sites of a swap:

``"output"``
    ``G_Q = ∂L/∂Z_Q``, where backpropagation starts: the ``−Y`` term left
    out (missing-target-term), the softmax Jacobian contracted wrongly
    (softmax-jacobian; seed 004's intermediate line), or another loss's
    gradient (loss-gradient).
``"activation"``
    an activation's derivative ``act′(Z)`` replaced by a common wrong one
    (activation-derivative).
``"dense"``
    the gradient a Dense layer passes back, ``G Wᵀ``, replaced by the
    layer's own input (seed 000's ``∂f_i/∂σ_i = σ_i``), by the diagonal of
    ``W`` alone (one output followed), or by ``G W`` (chain-rule, transpose).
``"weight"``
    the input a weight gradient ``Aᵀ G`` multiplies replaced by the
    pre-activation or the network's input (layer-input; seed 000's
    ``∂f_i/∂W_i = X`` read literally).

Names in the texts are the learner's: ``W2, b2`` as ``hg.derive`` prints
them, ``Z2`` the output of Dense layer 2, ``A2 = act(Z2)``, ``A0 = X``, and
``G2 = ∂J/∂Z2``.  Products are written in the learner's layout: rows
(``Z = X W + b``) or the seeds' columns (``z = W x + b``).
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from handgrad.derivations.notation import fill, to_text
from handgrad.errors import HandgradError
from handgrad.nn.activations import Activation
from handgrad.nn.layers import Dense, layer_from_config
from handgrad.nn.losses import SoftmaxCrossEntropy, losses
from handgrad.registry import constructor_arguments

KINDS = {
    "transpose": "the gradient, or a weight matrix on the way back, is transposed",
    "bias-reduction": "a bias gradient not summed over the samples, summed over the wrong axis, "
                      "or averaged once too often",
    "missing-target-term": "∂L/∂Z lacks its −Y term: the −1 on each sample's true class is missing",
    "softmax-jacobian": "the softmax's Jacobian contracted wrongly: p_y where p_k belongs, or only its diagonal",
    "loss-gradient": "the output gradient of another loss",
    "activation-derivative": "a wrong derivative of a hidden activation",
    "chain-rule": "the chain rule through a Dense layer multiplies the wrong factor or follows only one output",
    "layer-input": "a weight gradient multiplies the wrong input: the pre-activation Z or the network's X "
                   "where the layer's input A belongs",
    "sign": "the gradient, its data term or its L2 term, has the opposite sign",
    "scale": "off by a constant factor (the batch size n, 2, ½, ...), the whole gradient or its data term",
    "missing-l2": "the L2 term λW is missing",
    "l2-factor": "the L2 term is a multiple of λW: counted twice, halved, divided by n, ...",
    "extra-l2": "an L2 term on a bias, which is not penalised",
    "unknown": "wrong, and no kind in this catalogue fits",
}


@dataclass(frozen=True)
class WrongStep:
    """One step of backpropagation replaced by a slip.

    ``compute`` takes, by ``site``: ``"output"``: the batch's forward pass
    (``trace``) and returns ``G_Q``; ``"activation"``: ``(G, Z, A)`` and
    returns ``∂J/∂Z``; ``"dense"``: ``(G, X_in, W)`` and returns the
    gradient passed back; ``"weight"``: ``trace`` and returns the array
    whose transpose multiplies ``G``.  ``position`` is the layer's index in
    the model (None for the output).  ``text`` completes "... is what
    backpropagation gives when ...".
    """

    kind: str
    site: str
    position: int
    text: str
    compute: Callable


class Symbols:
    """The names a learner reads a network by, and its products written in the learner's layout."""

    def __init__(self, model, layout):
        self.layout = layout
        self.dense = {}                 # model position → l of W_l, b_l
        for position, layer in enumerate(model.layers):
            if isinstance(layer, Dense):
                self.dense[position] = len(self.dense) + 1
        self.depth = len(self.dense)

    def before(self, position):
        """The index of the last Dense layer before ``position`` (0 when there is none)."""
        return sum(1 for p in self.dense if p < position)

    def input_of(self, index):
        return "X" if index == 1 else f"A{index - 1}"

    def weight_gradient(self, index):
        """``∂J/∂W_l`` (data term): ``A_{l−1}ᵀ G_l`` by rows, ``G_l A_{l−1}ᵀ`` by columns."""
        a = self.input_of(index)
        return f"{a}ᵀ G{index}" if self.layout == "rows" else f"G{index} {a}ᵀ"

    def bias_gradient(self, index):
        return f"Σ_rows G{index}" if self.layout == "rows" else f"Σ_columns G{index}"

    def passed_back(self, index, transposed=True):
        """What Dense layer ``l`` passes back: ``G_l W_lᵀ`` by rows, ``W_lᵀ G_l`` by columns."""
        w = f"W{index}ᵀ" if transposed else f"W{index}"
        return f"G{index} {w}" if self.layout == "rows" else f"{w} G{index}"

    def weight_entry(self, index, i, k):
        """The entry joining input unit ``i`` to output unit ``k`` of ``W_l`` in the learner's layout."""
        return f"W{index}[{i}, {k}]" if self.layout == "rows" else f"W{index}[{k}, {i}]"

    def unit(self, index, i):
        return f"G{index}[:, {i}]" if self.layout == "rows" else f"G{index}[{i}, :]"


def wrong_steps(model, loss, symbols):
    """Every :class:`WrongStep` that fits ``model``'s shapes, output first, then layer by layer."""
    steps = _output_steps(loss, symbols)
    for position, layer in enumerate(model.layers):
        if isinstance(layer, Activation):
            steps += _activation_steps(layer, position, symbols)
        elif isinstance(layer, Dense) and position > 0:
            steps += _dense_steps(model, layer, position, symbols) + _weight_steps(model, layer, position, symbols)
    return steps


# -- the output: G_Q = ∂L/∂Z_Q -------------------------------------------------------------

def loss_gradient_text(loss):
    """The right ``∂L/∂Z`` of ``loss`` as its declaration writes it, with κ spelled out (1/n or 1)."""
    declared = getattr(loss, "derivation", None)
    formula = declared and declared.backward.get("input")
    if not formula:
        return "∂L/∂Z"
    right = to_text(fill(formula.split("=", 1)[1].strip(), {"K": "K"}))
    kappa = "(1/n) " if getattr(loss, "reduction", "mean") == "mean" else ""
    return right.replace("κ ", kappa)


def _output_steps(loss, symbols):
    Q = symbols.depth
    right = f"∂L/∂Z{Q} = {loss_gradient_text(loss)}"
    which = " (the −1 on each sample's true class)" if loss.task.label_column else ""
    steps = [WrongStep("missing-target-term", "output", None,
                       f"∂L/∂Z{Q} lacks its −Y term{which}; the right one is {right}",
                       lambda trace: trace.G + trace.kappa * trace.Y)]
    if isinstance(loss, SoftmaxCrossEntropy):
        steps += [
            WrongStep("softmax-jacobian", "output", None,
                      f"∂L/∂z_k is written Σ_l y_l p_l − y_k (= p_y − y_k for a label y): the true class's "
                      f"probability p_y stands where each class's own p_k belongs, since "
                      f"−y_k (1 − p_k) + Σ_(l≠k) y_l p_k = p_k Σ_l y_l − y_k; the right one is {right}",
                      lambda trace: trace.kappa * ((trace.P * trace.Y).sum(axis=1, keepdims=True) - trace.Y)),
            WrongStep("softmax-jacobian", "output", None,
                      f"∂L/∂z_k keeps only the diagonal of the softmax's Jacobian, −y_k (1 − p_k), and drops "
                      f"the terms Σ_(l≠k) y_l p_k of the other classes; the right one is {right}",
                      lambda trace: trace.kappa * (trace.P * trace.Y - trace.Y))]
    for name, cls in losses(task=loss.task).items():
        if cls is not type(loss):
            steps += _other_loss_step(loss, name, cls, Q, right)
    return steps


def _other_loss_step(loss, name, cls, Q, right):
    try:
        other = cls(**{**constructor_arguments(loss), "reduction": loss.reduction})
    except (HandgradError, TypeError):
        return []                               # a loss built differently: nothing to compare
    text = (f"∂L/∂Z{Q} is the gradient of the {name} loss, {loss_gradient_text(other)}, "
            f"where that of {loss.name or type(loss).__name__} belongs ({right})")

    def compute(trace):
        y = other.check_targets(trace.y, *trace.output.shape, np.float64)
        other.forward(trace.output, y)
        return other.backward().copy()

    return [WrongStep("loss-gradient", "output", None, text, compute)]


# -- activations: ∂J/∂Z = G ⊙ act′(Z) -------------------------------------------------------

def _activation_steps(layer, position, symbols):
    index = symbols.before(position)
    own, name = _derivative_text(layer), layer.name
    where = f"layer {position + 1} ({type(layer).__name__})"
    copy = layer_from_config(layer.config(), np.float64)      # to evaluate act′ elsewhere than at Z
    forms = [("1", "nothing (the derivative left out)", lambda Z, A: 1.0),
             ("A", f"A{index} = {_rename(_function_text(layer), index)}, the activation itself", lambda Z, A: A),
             ("Z", f"Z{index}, the pre-activation itself", lambda Z, A: Z),
             ("act′(A)", f"its derivative evaluated at A{index} instead of at Z{index}",
              lambda Z, A: _derivative_at(copy, A))]
    forms += [(key, f"{_rename(text, index)}, the derivative of {other}", f)
              for key, (other, text, f) in OTHER_DERIVATIVES.items() if key != name]
    forms += [(key, _rename(text, index), lambda Z, A, f=f: f(Z, A, layer)) for key, text, f in SLIPS.get(name, ())]
    if name == "identity":          # its derivative is 1: the slips that reduce to it are no slips
        forms = [form for form in forms if form[0] not in ("1", "act′(A)")]
    return [WrongStep("activation-derivative", "activation", position,
                      f"{where} multiplies by {wrong}, where its derivative {_rename(own, index)} belongs",
                      lambda G, Z, A, f=f: G * f(Z, A))
            for _, wrong, f in forms]


# Other activations' derivatives, written through A = act(Z): a learner may use one for another.
OTHER_DERIVATIVES = {
    "sigmoid": ("the sigmoid", "A ⊙ (1 − A)", lambda Z, A: A * (1 - A)),
    "tanh": ("tanh", "1 − A²", lambda Z, A: 1 - A * A),
    "relu": ("ReLU", "I(A > 0)", lambda Z, A: (A > 0).astype(np.float64)),
}

# Slips in an activation's own derivative, by the activation's name: (key, what is written, act′ as written).
SLIPS = {
    "sigmoid": [("Z(1-Z)", "Z ⊙ (1 − Z), σ(1 − σ) written with Z where A = σ(Z) belongs",
                 lambda Z, A, layer: Z * (1 - Z))],
    "tanh": [("1-Z2", "1 − Z², 1 − tanh² written with Z where A = tanh(Z) belongs",
              lambda Z, A, layer: 1 - Z * Z),
             ("1-A", "1 − A, the square dropped", lambda Z, A, layer: 1 - A)],
    "relu": [("I(Z<0)", "I(Z < 0), the mask from the wrong side", lambda Z, A, layer: (Z < 0).astype(np.float64))],
    "leaky-relu": [("swapped", "I(Z < 0) + s I(Z ≥ 0), the two slopes swapped",
                    lambda Z, A, layer: np.where(Z > 0, layer.negative_slope, 1.0))],
}


def _derivative_at(copy, A):
    """``act′`` evaluated at ``A``: a copy of the layer run forward on ``A`` and back from ones."""
    copy.forward(np.array(A))
    return copy.backward(np.ones_like(A))


def derivative_text(layer, index):
    """``act′(Z_l)`` of ``layer`` as its declaration writes it, numbered: ``A1 ⊙ (1 − A1)``."""
    return _rename(_derivative_text(layer), index)


def _derivative_text(layer):
    """``act′(Z)`` as the layer's declaration writes it (the factor after ``G ⊙``), else "act′(Z)"."""
    declared = getattr(layer, "derivation", None)
    formula = declared and declared.backward.get("input")
    if not formula:
        return "act′(Z)"
    right = formula.split("=", 1)[1].strip()
    if right == "G":
        return "1"
    factor = right.removeprefix("G ⊙ ").split(" = ")[0]
    return to_text(fill(factor, constructor_arguments(layer)))


def _function_text(layer):
    declared = getattr(layer, "derivation", None)
    if declared is None or "=" not in declared.forward:
        return "act(Z)"
    return to_text(declared.forward.split("=")[1].strip())


def _rename(formula, index):
    """``formula`` with the bare symbols A and Z numbered: ``A ⊙ (1 − A)`` → ``A1 ⊙ (1 − A1)``."""
    return re.sub(r"(?<![A-Za-z0-9])([AZ])(?![A-Za-z0-9(])", rf"\g<1>{index}", formula)


# -- Dense layers: what is passed back, and what a weight gradient multiplies -------------------

def _dense_steps(model, layer, position, symbols):
    """Slips in ``∂J/∂A_{l−1} = G_l W_lᵀ``; each needs a square ``W_l`` to type-check."""
    if layer.n_in != layer.n_out:
        return []
    index, where = symbols.dense[position], f"layer {position + 1} (Dense, W{symbols.dense[position]})"
    right = symbols.passed_back(index)
    i, k = "i", "k"
    own_input = (f"the gradient passed back through {where} is G{index} ⊙ {symbols.input_of(index)}: each unit i's "
                 f"gradient is multiplied by its own output {symbols.input_of(index)}[i] where the weights belong "
                 f"(∂z_k/∂a_i is {symbols.weight_entry(index, i, k)}, not a_i), and only the output with the unit's "
                 f"own index is followed while unit i feeds every output; the right factor is {right}")
    diagonal = (f"the gradient passed back through {where} follows only the output with each unit's own index, "
                f"{symbols.unit(index, i)} {symbols.weight_entry(index, i, i)}, while unit i feeds every output k: "
                f"the right factor is Σ_k {symbols.unit(index, k)} {symbols.weight_entry(index, i, k)}, i.e. {right}")
    flipped = (f"the gradient is passed back through {where} with W{index} where W{index}ᵀ belongs: "
               f"{symbols.passed_back(index, transposed=False)} instead of {right}")
    return [WrongStep("chain-rule", "dense", position, own_input, lambda G, X, W: G * X),
            WrongStep("chain-rule", "dense", position, diagonal, lambda G, X, W: G * np.diag(W)),
            WrongStep("transpose", "dense", position, flipped, lambda G, X, W: G @ W)]


def _weight_steps(model, layer, position, symbols):
    """Slips in the input of ``∂J/∂W_l = A_{l−1}ᵀ G_l``: the pre-activation, or the network's input."""
    index = symbols.dense[position]
    right = f"∂J/∂W{index} = {symbols.weight_gradient(index)}"
    steps = []
    if isinstance(model.layers[position - 1], Activation):
        steps.append(WrongStep(
            "layer-input", "weight", position,
            f"∂J/∂W{index} is formed with Z{index - 1}, the pre-activation, where A{index - 1}, the input of layer "
            f"{position + 1}, belongs: {right}", lambda trace: trace.inputs[position - 1]))
    if layer.n_in == model.n_features:
        steps.append(WrongStep(
            "layer-input", "weight", position,
            f"∂J/∂W{index} is formed with X, the network's input, where A{index - 1}, the input of layer "
            f"{position + 1}, belongs: {right}", lambda trace: trace.inputs[0]))
    return steps
