"""``hg.diagnose`` and ``handgrad diagnose``: a hand-written gradient judged right, or its mistake named.

The learners here are written independently of handgrad's backward passes:
:func:`learner` is plain NumPy backpropagation in the rows layout, with one
mistake injected on request, and the seed documents' formulas are transcribed
in each seed's own layout (as in ``tests/test_seeds.py``).
"""

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from scipy.special import erfc

import handgrad as hg
from handgrad.cli import main
from handgrad.derivations.mistakes import KINDS
from support import count

# -- a learner: backpropagation by hand, with one mistake on request ----------------------------


def sigmoid(Z):
    return 1 / (1 + np.exp(-Z))


def normal_cdf(Z):
    return 0.5 * erfc(-Z / np.sqrt(2))


# activation: (f, f′, a wrong f′ a learner writes), all of Z
ACTIVATIONS = {
    "identity": (lambda Z: Z, lambda Z: np.ones_like(Z), lambda Z: Z),
    "sigmoid": (sigmoid, lambda Z: sigmoid(Z) * (1 - sigmoid(Z)), sigmoid),
    "tanh": (np.tanh, lambda Z: 1 - np.tanh(Z) ** 2, np.tanh),
    "relu": (lambda Z: np.maximum(Z, 0), lambda Z: (Z > 0) * 1.0, lambda Z: (Z < 0) * 1.0),
    "leaky-relu": (lambda Z: np.where(Z > 0, Z, 0.01 * Z), lambda Z: np.where(Z > 0, 1.0, 0.01),
                   lambda Z: np.where(Z > 0, 0.01, 1.0)),
    "elu": (lambda Z: np.where(Z > 0, Z, np.expm1(np.minimum(Z, 0))),
            lambda Z: np.where(Z > 0, 1.0, np.exp(np.minimum(Z, 0))),
            lambda Z: np.where(Z > 0, Z, np.expm1(np.minimum(Z, 0)))),
    "softplus": (lambda Z: np.logaddexp(0, Z), sigmoid, lambda Z: np.logaddexp(0, Z)),
    "gelu": (lambda Z: Z * normal_cdf(Z), lambda Z: normal_cdf(Z) + Z * np.exp(-Z * Z / 2) / np.sqrt(2 * np.pi),
             lambda Z: Z * normal_cdf(Z)),
}


def target_matrix(y, K):
    return y if y.ndim == 2 else np.eye(K)[y]


def output_delta(loss, Z, y):
    """∂ℓ_r/∂z_r for each row (no reduction)."""
    Y = target_matrix(y, Z.shape[1])
    if loss == "cross-entropy":
        return hg.softmax(Z) * Y.sum(axis=1, keepdims=True) - Y
    if loss == "squared-error":
        return Z - Y
    if loss == "sigmoid-bce":
        return sigmoid(Z) - Y
    if loss == "poisson":
        return np.exp(Z) - Y
    per_class = hg.SoftmaxBinaryCrossEntropy(reduction="sum")     # seed 002's long formula, checked in test_seeds
    per_class.forward(Z, y)
    return per_class.backward()


def learner(activation, loss, depth, reduction="mean", l2=0.0, mistake=None, at=1):
    """``gradients(params, X, y)`` of an MLP in the rows layout, right or with ``mistake`` at layer ``at``."""
    f, f_prime, wrong_prime = ACTIVATIONS[activation]

    def gradients(params, X, y):
        W = [params[f"W{i + 1}"] for i in range(depth)]
        b = [params[f"b{i + 1}"] for i in range(depth)]
        A, Z = [X], []
        for i in range(depth):
            Z.append(A[-1] @ W[i] + b[i])
            if i < depth - 1:
                A.append(f(Z[-1]))
        n = len(X)
        kappa = (1 / n if reduction == "mean" else 1.0) * (n if mistake == "scale-n" else 1)
        Y = target_matrix(y, Z[-1].shape[1])
        G = kappa * output_delta(loss, Z[-1], y)
        G = G * {"scale-2": 2.0, "scale-half": 0.5}.get(mistake, 1.0)
        if mistake == "missing-target-term":
            G = G + kappa * Y
        if mistake == "softmax-jacobian":                  # Σ_l y_l p_l − y_k
            G = kappa * ((hg.softmax(Z[-1]) * Y).sum(axis=1, keepdims=True) - Y)
        lam = {"l2-twice": 2 * l2, "l2-half": l2 / 2, "missing-l2": 0.0, "l2-over-n": l2 / n}.get(mistake, l2)
        grads = {}
        for i in reversed(range(depth)):
            inputs = Z[i - 1] if mistake == "layer-input" and i + 1 == at else A[i]
            grads[f"W{i + 1}"] = inputs.T @ G + lam * W[i]
            grads[f"b{i + 1}"] = {"bias-unsummed": G.copy(), "bias-averaged": G.mean(axis=0),
                                  "extra-l2": G.sum(axis=0) + l2 * b[i]}.get(mistake, G.sum(axis=0))
            if i > 0:
                back = G @ W[i].T
                if i + 1 == at and mistake == "chain-rule":
                    back = G * A[i]                       # seed 000: ∂f_i/∂σ_i taken as σ_i, one score followed
                if i + 1 == at and mistake == "inner-transpose":
                    back = G @ W[i]
                derivative = wrong_prime if mistake == "activation-derivative" and i == at else f_prime
                G = back * derivative(Z[i - 1])
        if mistake == "sign":
            grads = {name: -g for name, g in grads.items()}
        if mistake == "transpose":
            grads[f"W{at}"] = grads[f"W{at}"].T.copy()
        if mistake == "unknown":
            grads["W1"] = grads["W1"] + 0.1 * (np.arange(len(grads["W1"]))[:, None] == 0)
        return grads

    return gradients


def in_columns(rows_gradients):
    """The same learner in the seeds' layout: X is d × n, W out × in, b out × 1, target matrices K × n."""
    def gradients(params, X, y):
        rows = {name: value.T if name.startswith("W") else value[:, 0] for name, value in params.items()}
        grads = rows_gradients(rows, X.T, y.T if y.ndim == 2 else y)
        return {name: g.T if g.ndim == 2 else g[:, None] for name, g in grads.items()}
    return gradients


def network(widths, activation):
    return hg.mlp(widths[0], widths[1:-1], widths[-1], activation=activation, dtype=np.float64, seed=0)


def problem(loss, rng, n, d, K):
    X = rng.normal(size=(n, d))
    task = hg.losses()[loss].task
    if task == "regression":
        return X, rng.uniform(0, 3, size=(n, K))
    if task == "multilabel":
        return X, rng.integers(0, 2, size=(n, K)).astype(float)
    return X, rng.integers(0, K, size=n)


def mistakes_found(report):
    return {finding.name: finding.mistake for finding in report.findings}


# -- the seeds' mistakes, transcribed in each seed's own layout ----------------------------------


def softmax_column(f):
    e = np.exp(f - f.max())
    return e / e.sum()


def seed001_gradients(params, X, y):
    """Seed 001, section 3, image by image: ∂L/∂W = (y − y′) xᵀ, ∂L/∂b = y − y′, summed over the images.

    Its layout: f(x) = W x + b with W of shape K × d; X holds one image per column.  The 1/N of its
    L = −(1/N) Σ_j Σ_i Y′_ji log Y_ji is never restored.
    """
    W, b = params["W1"], params["b1"]
    grad_W, grad_b = np.zeros_like(W), np.zeros_like(b)
    for j in range(X.shape[1]):
        x = X[:, j:j + 1]
        probabilities = softmax_column(W @ x + b)         # y: the predicted probabilities
        truth = np.eye(len(b))[:, [y[j]]]                 # y′: one-hot
        grad_W += (probabilities - truth) @ x.T
        grad_b += probabilities - truth
    return {"W1": grad_W, "b1": grad_b}


def test_seed001_dropped_mean_is_scale_by_the_batch_size():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(40, 4)), rng.integers(0, 3, size=40)
    report = hg.diagnose(network([4, 3], "identity"), hg.SoftmaxCrossEntropy(), X, y, seed001_gradients,
                         layout="columns")
    assert mistakes_found(report) == {"W1": "scale", "b1": "scale"}
    for finding in report:
        assert "batch size n" in finding.detail and "1/n of the mean" in finding.detail
        assert "3, 8, 5 and 4 times" in finding.detail


def seed003_gradients(params, X, y):
    """Seed 003's final formulas, ∇L = (1/n) Σ_i ∇L_i, its layout: W1 is h × m, W2 is C × h, columns.

    ∇_{ω2} L_i is its last line, [e^{f_j} / Σ_j e^{f_j}]_j max(0, ω1 x + b1)ᵀ: the −1 of row y dropped.
    """
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    grads = {name: np.zeros_like(value) for name, value in params.items()}
    n = X.shape[1]
    for i in range(n):
        x = X[:, i:i + 1]
        pre = W1 @ x + b1
        hidden = np.maximum(0, pre)
        p = softmax_column(W2 @ hidden + b2)
        through = (pre > 0) * (W2.T @ p - W2[y[i]][:, None])     # I(ω1 x + b1) * (ω2ᵀ p − ω2^{y(i)ᵀ})
        grads["W1"] += through @ x.T / n
        grads["b1"] += through / n
        grads["W2"] += p @ hidden.T / n
        grads["b2"] += (p - np.eye(len(p))[:, [y[i]]]) / n
    return grads


def test_seed003_final_W2_line_is_a_missing_target_term_and_the_rest_is_right():
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(30, 4)), rng.integers(0, 3, size=30)
    report = hg.diagnose(network([4, 5, 3], "relu"), hg.SoftmaxCrossEntropy(), X, y, seed003_gradients,
                         layout="columns")
    assert mistakes_found(report) == {"W1": None, "b1": None, "W2": "missing-target-term", "b2": None}
    assert "true class" in report["W2"].detail


LAMBDA = 0.1


def seed000_gradients(params, X, y, literal_output=False):
    """Seed 000's per-sample summaries, averaged over the batch (its L carries ½λΣW² in every sample).

    Its W_i is a column: f_i = W_iᵀ X + b_i, so the rows layout is its own.  Hidden units, as written:
    (S_i − [i = y]) σ_i² (1 − σ_i) X + λW_i; output units: (S_i − [i = y]) σ + λW_i (X read as the
    hidden activation; ``literal_output`` reads it as the network's input instead).
    """
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    grad1, grad2 = np.zeros_like(W1), np.zeros_like(W2)
    for x, label in zip(X, y):
        sigma = sigmoid(W1.T @ x + b1)
        S = softmax_column(W2.T @ sigma + b2)
        for i in range(W1.shape[1]):
            delta = S[i] - (i == label)
            grad1[:, i] += delta * sigma[i] ** 2 * (1 - sigma[i]) * x + LAMBDA * W1[:, i]
            grad2[:, i] += delta * (x if literal_output else sigma) + LAMBDA * W2[:, i]
    return {"W1": grad1 / len(X), "W2": grad2 / len(X)}


def test_seed000_hidden_formula_is_a_chain_rule_mistake_naming_the_wrong_factor():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 3)), rng.integers(0, 3, size=30)
    report = hg.diagnose(network([3, 3, 3], "sigmoid"), hg.SoftmaxCrossEntropy(), X, y, seed000_gradients,
                         l2=LAMBDA)
    assert mistakes_found(report) == {"W1": "chain-rule", "W2": None}
    detail = report["W1"].detail
    assert "its own output A1[i] where the weights belong" in detail and "W2[i, k], not a_i" in detail
    assert "only the output with the unit's own index" in detail and "G2 W2ᵀ" in detail


def test_seed000_output_formula_read_literally_multiplies_the_network_input():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 3)), rng.integers(0, 3, size=30)
    report = hg.diagnose(network([3, 3, 3], "sigmoid"), hg.SoftmaxCrossEntropy(), X, y,
                         lambda *args: {"W2": seed000_gradients(*args, literal_output=True)["W2"]}, l2=LAMBDA)
    assert mistakes_found(report) == {"W2": "layer-input"}
    assert "with X, the network's input, where A1" in report["W2"].detail


def seed004_gradients(params, X, y):
    """Seed 004 with its intermediate line ∂E/∂z_k = Σ_l t_l f(z_l) − t_k, biases folded in.

    w1 = [b1 | W1] is M × (D + 1) and w2 = [b2 | W2] is K × (M + 1) in the seed's columns; x_0 = 1 and
    hidden unit 0 is fixed at 1.  E = −Σ_k t_k ln y_k is summed over the samples.
    """
    w1 = np.hstack([params["b1"], params["W1"]])
    w2 = np.hstack([params["b2"], params["W2"]])
    grad1, grad2 = np.zeros_like(w1), np.zeros_like(w2)
    for r in range(X.shape[1]):
        x = np.concatenate([[1.0], X[:, r]])
        a = w1 @ x
        hidden = np.concatenate([[1.0], np.tanh(a)])
        t = np.eye(w2.shape[0])[y[r]]
        dE_dz = np.sum(t * softmax_column(w2 @ hidden)) - t
        grad2 += np.outer(dE_dz, hidden)
        grad1 += np.outer((w2[:, 1:].T @ dE_dz) * (1 - np.tanh(a) ** 2), x)
    return {"W1": grad1[:, 1:], "b1": grad1[:, :1], "W2": grad2[:, 1:], "b2": grad2[:, :1]}


def test_seed004_intermediate_line_is_a_softmax_jacobian_mistake_in_every_gradient():
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(30, 4)), rng.integers(0, 3, size=30)
    report = hg.diagnose(network([4, 5, 3], "tanh"), hg.SoftmaxCrossEntropy(reduction="sum"), X, y,
                         seed004_gradients, layout="columns")
    assert set(mistakes_found(report).values()) == {"softmax-jacobian"}
    assert "p_y stands where each class's own p_k belongs" in report["W2"].detail


def seed002_gradients(params, X, y, act, act_prime):
    """Seed 002, sections 2 and 3, sample by sample: w_{i,j} joins unit i to unit j, as handgrad's W."""
    depth = len(params) // 2
    grads = {name: np.zeros_like(value) for name, value in params.items()}
    for x, label in zip(X, y):
        activations, logits = [x], []
        for index in range(1, depth + 1):
            logits.append(params[f"b{index}"] + activations[-1] @ params[f"W{index}"])
            activations.append(act(logits[-1]))
        z = logits[-1]
        m, target = len(z), np.eye(len(z))[label]
        soft = softmax_column(z)
        dC_dz = np.array([m * soft[j] - target[j]
                          - sum((1 - target[t]) * soft[j] / (1 - soft[t]) for t in range(m) if t != j)
                          for j in range(m)])
        for index in range(depth, 0, -1):
            grads[f"b{index}"] += dC_dz
            grads[f"W{index}"] += np.outer(activations[index - 1], dC_dz)
            if index > 1:
                dC_dz = (params[f"W{index}"] @ dC_dz) * act_prime(logits[index - 2])
    return grads


def test_seed002_backpropagation_is_judged_right():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(30, 4)), rng.integers(0, 3, size=30)
    act, act_prime, _ = ACTIVATIONS["tanh"]
    report = hg.diagnose(network([4, 5, 4, 3], "tanh"), hg.SoftmaxBinaryCrossEntropy(reduction="sum"), X, y,
                         lambda params, X, y: seed002_gradients(params, X, y, act, act_prime))
    assert report.passed, str(report)


# -- every kind of the catalogue, on networks of depth 1 to 3, each activation and loss ---------

NETWORKS = [
    ([5, 3], "identity", "cross-entropy"),
    ([5, 4], "relu", "softmax-bce"),
    ([4, 6, 3], "sigmoid", "cross-entropy"),
    ([4, 6, 3], "tanh", "softmax-bce"),
    ([4, 5, 2], "relu", "squared-error"),
    ([4, 5, 3], "leaky-relu", "poisson"),
    ([4, 5, 3], "elu", "sigmoid-bce"),
    ([4, 6, 5, 3], "softplus", "cross-entropy"),
    ([4, 5, 5, 3], "gelu", "squared-error"),
    ([4, 5, 5, 3], "tanh", "sigmoid-bce"),
]


def _all(depth):
    return [f"{kind}{i}" for i in range(1, depth + 1) for kind in "Wb"]


def _weights(depth):
    return [f"W{i}" for i in range(1, depth + 1)]


def _biases(depth):
    return [f"b{i}" for i in range(1, depth + 1)]


def _below(at):
    return [f"{kind}{i}" for i in range(1, at + 1) for kind in "Wb"]


# injected mistake: (the kind it must be named, the layer ``at`` it sits in, the names it reaches, applies to)
MISTAKES = {
    "scale-n": ("scale", lambda d: 1, _all, lambda w, a, loss: True),
    "scale-2": ("scale", lambda d: 1, _all, lambda w, a, loss: True),
    "scale-half": ("scale", lambda d: 1, _all, lambda w, a, loss: True),
    "sign": ("sign", lambda d: 1, _all, lambda w, a, loss: True),
    "missing-target-term": ("missing-target-term", lambda d: 1, _all, lambda w, a, loss: True),
    "softmax-jacobian": ("softmax-jacobian", lambda d: 1, _all, lambda w, a, loss: loss == "cross-entropy"),
    "missing-l2": ("missing-l2", lambda d: 1, _weights, lambda w, a, loss: True),
    "l2-twice": ("l2-factor", lambda d: 1, _weights, lambda w, a, loss: True),
    "l2-half": ("l2-factor", lambda d: 1, _weights, lambda w, a, loss: True),
    "l2-over-n": ("l2-factor", lambda d: 1, _weights, lambda w, a, loss: True),
    "extra-l2": ("extra-l2", lambda d: 1, _biases, lambda w, a, loss: True),
    "bias-unsummed": ("bias-reduction", lambda d: 1, _biases, lambda w, a, loss: True),
    "bias-averaged": ("bias-reduction", lambda d: 1, _biases, lambda w, a, loss: True),
    "activation-derivative": ("activation-derivative", lambda d: d - 1, lambda d: _below(d - 1),
                              lambda w, a, loss: len(w) > 2),
    "transpose": ("transpose", lambda d: d, lambda d: [f"W{d}"], lambda w, a, loss: w[-2] != w[-1]),
    "inner-transpose": ("transpose", lambda d: d - 1, lambda d: _below(d - 2),
                        lambda w, a, loss: len(w) > 3 and w[-3] == w[-2]),
    "chain-rule": ("chain-rule", lambda d: d - 1, lambda d: _below(d - 2),
                   lambda w, a, loss: len(w) > 3 and w[-3] == w[-2]),
    "layer-input": ("layer-input", lambda d: d, lambda d: [f"W{d}"], lambda w, a, loss: len(w) > 2),
    "unknown": ("unknown", lambda d: 1, lambda d: ["W1"], lambda w, a, loss: True),
}


def _cases():
    """(mistake, network) pairs: every applicable network under the CI profile, one per mistake otherwise."""
    cases = []
    for rank, (mistake, (_, _, _, applies)) in enumerate(MISTAKES.items()):
        networks = [net for net in NETWORKS if applies(*net)]
        start = rank % len(networks)
        chosen = (networks[start:] + networks[:start])[:count(ci=len(networks), dev=1)]
        cases += [(mistake, net) for net in chosen]
    return cases


@pytest.mark.parametrize("mistake, net", _cases(), ids=lambda v: v if isinstance(v, str) else "-".join(
    [":".join(map(str, v[0])), v[1], v[2]]))
def test_each_injected_mistake_is_named_on_the_gradients_it_reaches(mistake, net):
    widths, activation, loss = net
    kind, at, reached, _ = MISTAKES[mistake]
    depth = len(widths) - 1
    rng = np.random.default_rng(len(mistake) * 100 + depth)
    X, y = problem(loss, rng, 40, widths[0], widths[-1])
    layout = "columns" if rng.random() < 0.5 else "rows"
    gradients = learner(activation, loss, depth, l2=LAMBDA, mistake=mistake, at=at(depth))
    report = hg.diagnose(network(widths, activation), hg.losses()[loss](), X, y,
                         in_columns(gradients) if layout == "columns" else gradients, l2=LAMBDA, layout=layout)
    expected = {name: kind if name in reached(depth) else None for name in _all(depth)}
    assert mistakes_found(report) == expected, str(report)


def test_the_catalogue_has_the_kinds_the_issue_names():
    named = {"scale", "transpose", "sign", "missing-l2", "l2-factor", "extra-l2", "missing-target-term",
             "activation-derivative", "bias-reduction", "unknown"}
    assert named <= set(KINDS)


def _diagnose(mistake, widths=(4, 5, 3), activation="tanh", loss="cross-entropy", reduction="mean", l2=LAMBDA,
              layout="rows", at=1):
    rng = np.random.default_rng(7)
    X, y = problem(loss, rng, 40, widths[0], widths[-1])
    gradients = learner(activation, loss, len(widths) - 1, reduction=reduction, l2=l2, mistake=mistake, at=at)
    return hg.diagnose(network(list(widths), activation), hg.losses()[loss](reduction=reduction), X, y,
                       in_columns(gradients) if layout == "columns" else gradients, l2=l2, layout=layout)


def test_scale_by_n_and_scale_by_2_are_told_apart_and_said():
    by_n, by_2, by_half = (_diagnose(m)["W1"].detail for m in ("scale-n", "scale-2", "scale-half"))
    assert "n times the right one" in by_n and "batch size n" in by_n and "its λW1 term is right" in by_n
    assert "2 times the right one on every batch" in by_2 and "factor of 2 too many" in by_2
    assert "½ times the right one on every batch" in by_half


def test_a_whole_gradient_with_its_sign_flipped_is_sign_and_so_is_a_flipped_data_term():
    whole = _diagnose("sign")["W1"]
    assert whole.mistake == "sign" and "data term" not in whole.detail
    rng = np.random.default_rng(8)
    X, y = problem("cross-entropy", rng, 40, 4, 3)
    right = learner("tanh", "cross-entropy", 2, l2=LAMBDA)

    def data_flipped(params, X, y):
        return {name: -g + 2 * LAMBDA * params[name] if name.startswith("W") else -g
                for name, g in right(params, X, y).items()}

    report = hg.diagnose(network([4, 5, 3], "tanh"), hg.SoftmaxCrossEntropy(), X, y, data_flipped, l2=LAMBDA)
    assert report["W1"].mistake == "sign" and "W1's data term has the opposite sign" in report["W1"].detail


def test_a_bias_divided_by_n_like_its_weights_is_scale_and_alone_is_bias_reduction():
    everywhere = _diagnose("scale-n", reduction="sum")      # sum: the learner's n is spurious... times n
    assert everywhere["b1"].mistake == "scale"
    rng = np.random.default_rng(9)
    X, y = problem("cross-entropy", rng, 40, 4, 3)
    right = learner("tanh", "cross-entropy", 2)

    def divided(params, X, y):
        return {name: g / len(X) for name, g in right(params, X, y).items()}

    report = hg.diagnose(network([4, 5, 3], "tanh"), hg.SoftmaxCrossEntropy(), X, y, divided)
    assert mistakes_found(report) == {"W1": "scale", "b1": "scale", "W2": "scale", "b2": "scale"}
    assert "once more than the mean does" in report["W1"].detail
    assert _diagnose("bias-averaged")["b2"].mistake == "bias-reduction"


def test_two_mistakes_in_one_gradient_name_the_first_and_list_the_other():
    rng = np.random.default_rng(10)
    X, y = problem("cross-entropy", rng, 40, 4, 3)
    report = hg.diagnose(network([4, 3], "identity"), hg.SoftmaxCrossEntropy(), X, y,
                         lambda params, X, y: {"W1": seed001_gradients(params, X, y)["W1"].T}, layout="columns")
    finding = report["W1"]
    assert (finding.mistake, finding.also) == ("transpose", ("scale",))
    assert "comes back transposed, with shape (4, 3) where W1 has shape (3, 4)" in finding.detail
    assert "Also: W1 is n times the right gradient" in finding.detail


def test_the_output_gradient_of_another_loss_is_loss_gradient():
    rng = np.random.default_rng(14)
    X, y = problem("cross-entropy", rng, 40, 4, 3)
    cross_entropy = learner("tanh", "cross-entropy", 2)
    report = hg.diagnose(network([4, 5, 3], "tanh"), hg.SoftmaxBinaryCrossEntropy(), X, y, cross_entropy)
    assert set(mistakes_found(report).values()) == {"loss-gradient"}
    assert "the gradient of the cross-entropy loss" in report["W2"].detail


def test_a_bias_summed_over_the_units_is_bias_reduction_even_where_those_sums_vanish():
    """A softmax's ∂L/∂Z rows sum to 0: the output bias summed over the classes is 0 on every batch."""
    rng = np.random.default_rng(15)
    X, y = problem("cross-entropy", rng, 40, 4, 3)
    right = learner("tanh", "cross-entropy", 2)

    def across(params, X, y):
        Z2 = np.tanh(X @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]
        G2 = (hg.softmax(Z2) - np.eye(3)[y]) / len(X)
        return {"b2": G2.sum(axis=1, keepdims=True), "b1": right(params, X, y)["b1"] / len(X)}

    report = hg.diagnose(network([4, 5, 3], "tanh"), hg.SoftmaxCrossEntropy(), X, y, across)
    assert mistakes_found(report) == {"b1": "bias-reduction", "b2": "bias-reduction"}
    assert "summed over the units instead of over the samples" in report["b2"].detail


def test_an_unknown_mistake_says_where_the_difference_lives():
    finding = _diagnose("unknown")["W1"]
    assert finding.mistake == "unknown" and not finding.correct
    assert "differs in row 0 of 4 and every column (5)" in finding.detail


def test_an_unknown_mistake_in_some_samples_names_them_and_their_labels():
    rng = np.random.default_rng(11)
    X, y = problem("cross-entropy", rng, 40, 4, 3)

    def class_two_without_its_minus_one(params, X, y):
        Y = np.eye(3)[y] * (y != 2)[:, None]
        G = (hg.softmax(X @ params["W1"] + params["b1"]) - Y) / len(X)
        return {"W1": X.T @ G, "b1": G.sum(axis=0)}

    report = hg.diagnose(network([4, 3], "identity"), hg.SoftmaxCrossEntropy(), X, y,
                         class_two_without_its_minus_one)
    detail = report["W1"].detail
    assert report["W1"].mistake == "unknown", detail
    assert "Called one sample at a time, it is wrong for sample" in detail and "(labels 2, 2" in detail
    assert "every row (4) and column 2 of 3" in detail


# -- right gradients are never called wrong ---------------------------------------------------------


@pytest.mark.parametrize("trial", range(count(ci=100, dev=10)))
def test_right_gradients_on_random_networks_are_never_called_wrong(trial):
    rng = np.random.default_rng(1000 + trial)
    depth = int(rng.integers(1, 4))
    widths = [int(w) for w in rng.integers(2, 7, size=depth + 1)]
    activation = str(rng.choice(sorted(ACTIVATIONS)))
    loss = str(rng.choice(sorted(hg.losses())))
    if loss == "softmax-bce":
        widths[-1] = max(widths[-1], 2)
    reduction = str(rng.choice(["mean", "sum"]))
    l2 = float(rng.choice([0.0, 1e-4, 0.3]))
    layout = str(rng.choice(["rows", "columns"]))
    X, y = problem(loss, rng, int(rng.integers(1, 30)), widths[0], widths[-1])
    model = hg.mlp(widths[0], widths[1:-1], widths[-1], activation=activation, dtype=np.float64,
                   seed=int(rng.integers(1000)))
    gradients = learner(activation, loss, depth, reduction=reduction, l2=l2)
    report = hg.diagnose(model, hg.losses()[loss](reduction=reduction), X, y,
                         in_columns(gradients) if layout == "columns" else gradients, l2=l2, layout=layout,
                         seed=trial)
    assert report.passed, str(report)
    assert all(f.correct and f.mistake is None and f.error < 1e-6 for f in report.findings)


# -- the report, and bad input ------------------------------------------------------------------------


def test_the_report_is_a_table_with_a_row_per_returned_gradient():
    report = _diagnose("missing-l2")
    text = str(report)
    assert text.splitlines()[0].startswith("diagnosis of Dense(4, 5) → Tanh() → Dense(5, 3), loss cross-entropy")
    assert "batches of 3, 8, 5 and 4 rows" in text
    assert "FAILED: 2 of 4 gradients wrong: W1 (missing-l2), W2 (missing-l2)" in text
    assert not report.passed and [f.name for f in report] == ["W1", "b1", "W2", "b2"]
    assert report["b1"].correct and report["b1"].mistake is None and report["b1"].detail.startswith("right")
    with pytest.raises(KeyError):
        report["W3"]


def test_some_of_the_names_may_be_returned():
    right = learner("relu", "cross-entropy", 2)
    rng = np.random.default_rng(12)
    X, y = problem("cross-entropy", rng, 20, 4, 3)
    report = hg.diagnose(network([4, 5, 3], "relu"), hg.SoftmaxCrossEntropy(), X, y,
                         lambda params, X, y: {"b2": right(params, X, y)["b2"]})
    assert report.passed and [f.name for f in report] == ["b2"]
    assert str(report).endswith("passed: the gradient returned is right")


def _bad(gradients, layout="rows", model=None):
    rng = np.random.default_rng(13)
    X, y = problem("cross-entropy", rng, 20, 4, 3)
    return hg.diagnose(model or network([4, 5, 3], "relu"), hg.SoftmaxCrossEntropy(), X, y, gradients,
                       layout=layout)


def _raising(params, X, y):
    return {"W1": 1 / 0}


@pytest.mark.parametrize("gradients, layout, message", [
    (_raising, "rows", "gradients(params, X, y) raised ZeroDivisionError at test_diagnose.py line"),
    (lambda params, X, y: [1, 2], "rows", "returned a list; return a dict from parameter names (W1, b1, W2, b2)"),
    (lambda params, X, y: {"W": params["W1"]}, "rows", "returned 'W', which is not a parameter of this network"),
    (lambda params, X, y: {}, "rows", "returned an empty dict"),
    (lambda params, X, y: {"W1": np.zeros((3, 3))}, "rows", "W1 with shape (3, 3)"),
    (lambda params, X, y: {"b1": np.zeros(5)}, "columns", "b1 has shape (5, 1) in the columns layout"),
    (lambda params, X, y: {"b1": np.zeros((1, 5))}, "rows", "b1 has shape (5,) in the rows layout"),
    (lambda params, X, y: {"W2": np.full((5, 3), np.nan)}, "rows", "NaN or infinite values in W2"),
    (lambda params, X, y: {"W2": "gradient"}, "rows", "not an array of numbers"),
    (lambda params, X, y: {"W1": 0 * params["W1"]} if len(y) == 3 else {"b1": params["b1"]}, "rows",
     "return the same names every time"),
    ("not a function", "rows", "gradients must be a function"),
    (lambda params, X, y: {}, "diagonal", "layout must be 'rows' or 'columns'"),
])
def test_bad_input_is_one_line_naming_the_problem(gradients, layout, message):
    with pytest.raises(hg.HandgradError, match=None) as caught:
        _bad(gradients, layout)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_network_with_dropout_is_refused():
    model = hg.Sequential(hg.Dense(4, 5, dtype=np.float64), hg.ReLU(), hg.Dropout(0.2), hg.Dense(5, 3, dtype=np.float64))
    with pytest.raises(hg.HandgradError, match="Dense layers and activations"):
        _bad(lambda params, X, y: {}, model=model)


# -- the command -----------------------------------------------------------------------------------

SEED003_FILE = '''
import numpy as np

def gradients(params, X, y):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    grads = {name: np.zeros_like(value) for name, value in params.items()}
    n = X.shape[1]
    for i in range(n):
        x = X[:, i:i + 1]
        pre = W1 @ x + b1
        hidden = np.maximum(0, pre)
        f = W2 @ hidden + b2
        p = np.exp(f - f.max()) / np.exp(f - f.max()).sum()
        through = (pre > 0) * (W2.T @ p - W2[y[i]][:, None])
        grads["W1"] += through @ x.T / n
        grads["b1"] += through / n
        grads["W2"] += p @ hidden.T / n
        grads["b2"] += (p - np.eye(len(f))[:, [y[i]]]) / n
    return grads
'''


def test_the_command_names_seed_003s_mistake_and_exits_with_1(tmp_path, capsys):
    path = tmp_path / "seed003.py"
    path.write_text(SEED003_FILE)
    assert main(["diagnose", str(path), "--hidden", "8", "--l2", "0", "--layout", "columns"]) == 1
    out = capsys.readouterr().out
    assert "Dense(64, 8) → ReLU() → Dense(8, 10)" in out and "columns layout" in out
    assert "FAILED: 1 of 4 gradients wrong: W2 (missing-target-term)" in out


SEED001_FILE = '''
import numpy as np

def gradients(params, X, y):
    W, b = params["W1"], params["b1"]
    grad_W, grad_b = np.zeros_like(W), np.zeros_like(b)
    for j in range(X.shape[1]):
        x = X[:, j:j + 1]
        f = W @ x + b
        probabilities = np.exp(f - f.max()) / np.exp(f - f.max()).sum()
        truth = np.eye(len(b))[:, [y[j]]]
        grad_W += (probabilities - truth) @ x.T
        grad_b += probabilities - truth
    return {"W1": grad_W, "b1": grad_b}
'''


def test_the_command_diagnoses_seed_001s_softmax_regression_with_no_hidden_layer(tmp_path, capsys):
    path = tmp_path / "seed001.py"
    path.write_text(SEED001_FILE)
    assert main(["diagnose", str(path), "--hidden", "none", "--l2", "0", "--layout", "columns"]) == 1
    out = capsys.readouterr().out
    assert "Dense(64, 10)" in out and "ReLU" not in out
    assert "FAILED: 2 of 2 gradients wrong: W1 (scale), b1 (scale)" in out


def test_the_command_exits_with_0_when_every_gradient_is_right(tmp_path, capsys):
    path = tmp_path / "right.py"
    path.write_text(SEED003_FILE.replace("grads[\"W2\"] += p @ hidden.T / n",
                                         "grads[\"W2\"] += (p - np.eye(len(f))[:, [y[i]]]) @ hidden.T / n"))
    assert main(["diagnose", str(path), "--hidden", "8", "--l2", "0", "--layout", "columns"]) == 0
    assert "passed: all 4 gradients right" in capsys.readouterr().out


@pytest.mark.parametrize("source, argv, message", [
    (None, [], "is not a file; pass the Python file that defines gradients(params, X, y)"),
    ("def gradient(params, X, y):\n    return {}\n", [], "defines no function gradients(params, X, y)"),
    ("import numpy as np\nx = 1 +\n", [], "could not be run (line 2): SyntaxError"),
    ("import numpy as np\n\nraise RuntimeError('half written')\n", [], "could not be run (line 3): RuntimeError"),
    ("def gradients(params, X, y):\n    return {'W1': params['W1'] @ X}\n", ["--hidden", "8"],
     "gradients(params, X, y) raised ValueError at learner.py line 2"),
    ("def gradients(params, X, y):\n    return {}\n", ["--hidden", "8", "--dropout", "0.2"],
     "Dense layers and activations"),
])
def test_bad_input_to_the_command_is_one_line_and_exit_2(tmp_path, capsys, source, argv, message):
    path = tmp_path / "learner.py"
    if source is not None:
        path.write_text(source)
    assert main(["diagnose", str(path), *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("handgrad diagnose: error: ") and message in captured.err
    assert captured.err.count("\n") == 1


# -- the learners' page ------------------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[1] / "docs" / "diagnose.md"


def _fenced(text, language):
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_the_worked_example_of_the_docs_prints_the_report_the_page_shows(tmp_path, capsys, monkeypatch):
    section = DOC.read_text().split("## 2. A worked example")[1].split("## 3.")[0]
    learner, fix = _fenced(section, "python")
    command = shlex.split(_fenced(section, "bash")[0])
    monkeypatch.chdir(tmp_path)
    Path("seed003.py").write_text(learner)
    assert main(command[1:]) == 1
    assert capsys.readouterr().out == _fenced(section, "text")[0]
    Path("seed003.py").write_text(re.sub(r' *grads\["W2"\] \+=.*\n', lambda _: fix, learner))
    assert main(command[1:]) == 0
    assert "passed: all 4 gradients right" in capsys.readouterr().out
