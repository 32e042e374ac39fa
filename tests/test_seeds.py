"""The seed documents' gradient formulas, transcribed into NumPy and checked.

For each document in ``../shared/seeds/`` this module builds the network the
document describes with handgrad, writes the document's final gradient
formulas in the document's own notation (one sample at a time, its own index
conventions and matrix orientation) and compares them with

* central differences of the document's own loss, written out in the same
  notation (``hg.check_function``), and
* the library's gradients (``hg.loss_and_gradients``), mapped into the
  document's notation.

Where a formula does not hold, the test shows the mismatch numerically and
shows that the library agrees with finite differences.  The errata, with the
numbers these tests measure, are listed in ``docs/derivations.md``.
Everything runs in float64.
"""

import numpy as np
import pytest

import handgrad as hg

# A transcribed formula "holds" when hg.check_function passes (worst entry
# within 1e-6 relative of central differences).  It is "wrong" when its worst
# entry is off by more than WRONG relative and the whole gradient by more
# than WRONG in norm: far beyond anything rounding or truncation can cause.
WRONG = 0.1
SAME = dict(rtol=1e-9, atol=1e-12)


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def softmax_vector(f):
    """``e^{f_i} / Σ_j e^{f_j}`` for one score vector (max-shifted)."""
    e = np.exp(f - f.max())
    return e / e.sum()


def unit_vector(index, size):
    e = np.zeros(size)
    e[index] = 1.0
    return e


def build(layers, params):
    """A Sequential of float64 ``layers`` holding ``params`` (in ``parameters()`` order)."""
    model = hg.Sequential(*layers)
    for target, value in zip(model.parameters(), params, strict=True):
        target[...] = value
    return model


def dense(n_in, n_out):
    return hg.Dense(n_in, n_out, dtype=np.float64)


def relative_error(a, b):
    """``‖a − b‖ / max(‖a‖, ‖b‖)`` over lists of arrays taken together."""
    a = np.concatenate([np.ravel(x) for x in a])
    b = np.concatenate([np.ravel(x) for x in b])
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b)))


def assert_wrong(report, formula, reference):
    """The transcribed ``formula`` misses finite differences by a large margin."""
    assert not report.passed
    assert report.max_error > WRONG, str(report)
    assert relative_error(formula, reference) > WRONG


# ---------------------------------------------------------------------------
# All of 000, 001 and 004 derive the softmax Jacobian by the quotient rule.
# Their intermediate quotients carry typos (docs/derivations.md); the results
# are the same in all three: ∂S_i/∂f_j = S_i (1 − S_i) if i = j, −S_i S_j if not.


def test_softmax_jacobian_results_of_seeds_000_001_004_hold():
    f0 = np.random.default_rng(1).normal(size=5)
    for i in range(5):
        def document_row(f, i=i):
            S = softmax_vector(f)
            return [np.array([S[i] * (1 - S[i]) if j == i else -S[i] * S[j] for j in range(5)])]

        report = hg.check_function(lambda f, i=i: softmax_vector(f)[i], document_row, [f0])
        assert report.passed, str(report)


# ---------------------------------------------------------------------------
# Seed 000: one sigmoid hidden layer, softmax output, per-sample loss
#     L = −log S_y + ½ λ Σ W²   (all weights, no biases).
# Its W_i is a weight *column*: f_i = W_iᵀ X + b_i.  That is handgrad's layout
# exactly: Dense.W[:, i] is W_i.  Input width, hidden width and number of
# classes are all 3 so that the document's formulas, read literally,
# type-check (its hidden-layer formula multiplies S_i by σ_i).

LAMBDA = 0.1


def seed000_problem():
    rng = np.random.default_rng(0)
    params = [rng.normal(size=(3, 3)), rng.normal(size=3), rng.normal(size=(3, 3)), rng.normal(size=3)]
    X = rng.normal(size=(4, 3))
    y = np.array([0, 2, 1, 2])
    return params, X, y


def seed000_forward(W1, b1, W2, b2, X):
    sigma = sigmoid(W1.T @ X + b1)            # σ_i = σ(W1_iᵀ X + b1_i)
    S = softmax_vector(W2.T @ sigma + b2)     # S_i = softmax(f)_i,  f_i = W2_iᵀ σ + b2_i
    return sigma, S


def seed000_loss(W1, b1, W2, b2, X, y):
    _, S = seed000_forward(W1, b1, W2, b2, X)
    return -np.log(S[y]) + 0.5 * LAMBDA * (np.sum(W1 ** 2) + np.sum(W2 ** 2))


def seed000_output_gradient(W, S, y, X):
    """Output units: ∂L/∂W_i = (S_i − 1) X + λW_i if i = y, else S_i X + λW_i."""
    grad = np.empty_like(W)
    for i in range(W.shape[1]):
        grad[:, i] = ((S[i] - 1) if i == y else S[i]) * X + LAMBDA * W[:, i]
    return grad


def seed000_hidden_gradient_as_written(W1, sigma, S, y, X):
    """Hidden units, as written: ∂L/∂W_i = (S_i − 1) σ_i² (1 − σ_i) X + λW_i if i = y,
    else S_i σ_i² (1 − σ_i) X + λW_i."""
    grad = np.empty_like(W1)
    for i in range(W1.shape[1]):
        grad[:, i] = ((S[i] - 1) if i == y else S[i]) * sigma[i] ** 2 * (1 - sigma[i]) * X + LAMBDA * W1[:, i]
    return grad


def seed000_hidden_gradient_corrected(W1, W2, sigma, S, y, X):
    """∂L/∂W1_i = (Σ_k (S_k − [k = y]) W2[i, k]) σ_i (1 − σ_i) X + λ W1_i.

    Hidden unit i reaches the loss through every score f_k (weight
    ``W2[i, k]``), and ``∂σ_i/∂a_i = σ_i (1 − σ_i)`` appears once.
    """
    delta = S - unit_vector(y, len(S))        # ∂L_pre/∂f_k
    through_scores = W2 @ delta               # Σ_k ∂L_pre/∂f_k · ∂f_k/∂σ_i
    grad = np.empty_like(W1)
    for i in range(W1.shape[1]):
        grad[:, i] = through_scores[i] * sigma[i] * (1 - sigma[i]) * X + LAMBDA * W1[:, i]
    return grad


def seed000_library(params, x, y):
    model = build([dense(3, 3), hg.Sigmoid(), dense(3, 3)], params)
    loss = hg.SoftmaxCrossEntropy(reduction="sum")   # one sample: the per-sample loss
    return model, loss, hg.loss_and_gradients(model, loss, x[None, :], np.array([y]), l2=LAMBDA)


def test_seed000_network_and_l2_match_library():
    params, X, y = seed000_problem()
    for x, label in zip(X, y):
        model, loss, (value, grads) = seed000_library(params, x, label)
        assert value == pytest.approx(seed000_loss(*params, x, label), rel=1e-12)
        report = hg.gradcheck(model, loss, x[None, :], np.array([label]), l2=LAMBDA)
        assert report.passed, str(report)
        # λ is the document's λ: each weight gradient carries + λW, no bias does.
        _, grads_no_l2 = hg.loss_and_gradients(model, loss, x[None, :], np.array([label]))
        np.testing.assert_allclose(grads[0] - grads_no_l2[0], LAMBDA * params[0], **SAME)
        np.testing.assert_allclose(grads[2] - grads_no_l2[2], LAMBDA * params[2], **SAME)
        np.testing.assert_allclose(grads[1], grads_no_l2[1], **SAME)
        np.testing.assert_allclose(grads[3], grads_no_l2[3], **SAME)


def test_seed000_average_of_per_sample_losses_is_the_mean_objective():
    """Averaging L = −log S_y + ½λΣW² over samples gives reduction="mean" with l2=λ:
    the ½λΣW² term is the same in every sample, so the average keeps it once."""
    params, X, y = seed000_problem()
    W1, b1, W2, b2 = params
    model = build([dense(3, 3), hg.Sigmoid(), dense(3, 3)], params)
    value, grads = hg.loss_and_gradients(model, hg.SoftmaxCrossEntropy(reduction="mean"), X, y, l2=LAMBDA)
    assert value == pytest.approx(np.mean([seed000_loss(*params, x, label) for x, label in zip(X, y)]), rel=1e-12)
    per_sample = []
    for x, label in zip(X, y):
        sigma, S = seed000_forward(W1, b1, W2, b2, x)
        per_sample.append(seed000_hidden_gradient_corrected(W1, W2, sigma, S, label, x))
    np.testing.assert_allclose(np.mean(per_sample, axis=0), grads[0], **SAME)


def test_seed000_output_formula_holds_when_X_is_the_hidden_activation():
    params, X, y = seed000_problem()
    W1, b1, W2, b2 = params
    for x, label in zip(X, y):
        def document(W2, x=x, label=label):
            sigma, S = seed000_forward(W1, b1, W2, b2, x)
            return [seed000_output_gradient(W2, S, label, sigma)]

        report = hg.check_function(lambda W2, x=x, label=label: seed000_loss(W1, b1, W2, b2, x, label),
                                   document, [W2])
        assert report.passed, str(report)
        _, _, (_, grads) = seed000_library(params, x, label)
        np.testing.assert_allclose(document(W2)[0], grads[2], **SAME)


def test_seed000_output_formula_with_the_network_input_as_X_is_wrong_and_library_is_right():
    params, X, y = seed000_problem()
    W1, b1, W2, b2 = params
    x, label = X[0], y[0]

    def literal(W2):
        _, S = seed000_forward(W1, b1, W2, b2, x)
        return [seed000_output_gradient(W2, S, label, x)]   # "∂f_i/∂W_i = X", X the network input

    report = hg.check_function(lambda W2: seed000_loss(W1, b1, W2, b2, x, label), literal, [W2])
    _, _, (_, grads) = seed000_library(params, x, label)
    assert_wrong(report, literal(W2), [grads[2]])


def test_seed000_hidden_formula_is_wrong_and_library_is_right():
    params, X, y = seed000_problem()
    W1, b1, W2, b2 = params
    for x, label in zip(X, y):
        def loss(W1, x=x, label=label):
            return seed000_loss(W1, b1, W2, b2, x, label)

        def as_written(W1, x=x, label=label):
            sigma, S = seed000_forward(W1, b1, W2, b2, x)
            return [seed000_hidden_gradient_as_written(W1, sigma, S, label, x)]

        def corrected(W1, x=x, label=label):
            sigma, S = seed000_forward(W1, b1, W2, b2, x)
            return [seed000_hidden_gradient_corrected(W1, W2, sigma, S, label, x)]

        model, hg_loss, (_, grads) = seed000_library(params, x, label)
        assert_wrong(hg.check_function(loss, as_written, [W1]), as_written(W1), [grads[0]])
        report = hg.check_function(loss, corrected, [W1])
        assert report.passed, str(report)
        np.testing.assert_allclose(corrected(W1)[0], grads[0], **SAME)
        assert hg.gradcheck(model, hg_loss, x[None, :], np.array([label]), l2=LAMBDA).passed


# ---------------------------------------------------------------------------
# Seed 001: softmax regression f(x) = W x + b (W of shape C × d, so handgrad's
# Dense.W is Wᵀ), loss L = −(1/N) Σ_j Σ_i Y'_ji log Y_ji with one-hot Y'.


def seed001_problem(n_images):
    rng = np.random.default_rng(1)
    W, b = rng.normal(size=(3, 4)), rng.normal(size=3)
    X = rng.normal(size=(n_images, 4))
    Y_true = np.eye(3)[rng.integers(0, 3, size=n_images)]     # Y'
    return W, b, X, Y_true


def seed001_loss(W, b, X, Y_true):
    total = 0.0
    for x, y_true in zip(X, Y_true):                # image j
        total += y_true @ np.log(softmax_vector(W @ x + b))
    return -total / len(X)


def seed001_gradients_as_written(W, b, X, Y_true):
    """∂L/∂W = (y − y') x and ∂L/∂b = y − y', one term per image, added up.

    ``(y − y') x`` with W of shape C × d is the outer product ``(y − y') xᵀ``.
    """
    grad_W, grad_b = np.zeros_like(W), np.zeros_like(b)
    for x, y_true in zip(X, Y_true):
        y = softmax_vector(W @ x + b)
        grad_W += np.outer(y - y_true, x)
        grad_b += y - y_true
    return [grad_W, grad_b]


def seed001_library(W, b, X, Y_true):
    model = build([dense(4, 3)], [W.T, b])
    return hg.loss_and_gradients(model, hg.SoftmaxCrossEntropy(reduction="mean"), X, Y_true)


def test_seed001_formula_holds_for_one_image():
    W, b, X, Y_true = seed001_problem(1)
    report = hg.check_function(lambda W, b: seed001_loss(W, b, X, Y_true),
                               lambda W, b: seed001_gradients_as_written(W, b, X, Y_true), [W, b])
    assert report.passed, str(report)
    value, (grad_W_code, grad_b) = seed001_library(W, b, X, Y_true)
    assert value == pytest.approx(seed001_loss(W, b, X, Y_true), rel=1e-12)
    grad_W, _ = seed001_gradients_as_written(W, b, X, Y_true)
    np.testing.assert_allclose(grad_W, grad_W_code.T, **SAME)


def test_seed001_formula_drops_the_mean_and_library_is_right():
    N = 8
    W, b, X, Y_true = seed001_problem(N)

    def loss(W, b):
        return seed001_loss(W, b, X, Y_true)

    def as_written(W, b):
        return seed001_gradients_as_written(W, b, X, Y_true)

    def with_mean(W, b):
        return [g / N for g in seed001_gradients_as_written(W, b, X, Y_true)]

    value, (grad_W_code, grad_b_code) = seed001_library(W, b, X, Y_true)
    library = [grad_W_code.T, grad_b_code]
    assert value == pytest.approx(loss(W, b), rel=1e-12)
    assert_wrong(hg.check_function(loss, as_written, [W, b]), as_written(W, b), library)
    # The whole discrepancy is the missing 1/N: written = N × right.
    for written, right in zip(as_written(W, b), library):
        np.testing.assert_allclose(written, N * right, **SAME)
    report = hg.check_function(loss, with_mean, [W, b])
    assert report.passed, str(report)
    for mine, theirs in zip(with_mean(W, b), library):
        np.testing.assert_allclose(mine, theirs, **SAME)


def test_seed001_step6_is_wrong_and_the_result_of_step7_is_right():
    """Step (6) turns (5)'s Σ_{j≠i} Y'_j / y_j (−y_i y_j) into Σ_{j≠i} y'_i / y_i (−y_i y_j).

    For one image, writing i for the class whose score is differentiated,
    (6) reads −y'_i + y'_i y_i + Σ_{j≠i} y'_i y_j, which is identically 0 (the
    y_j sum to 1).  Step (7)'s right-hand side −y'_i + y_i Σ_j y'_j is right.
    """
    W, b, X, Y_true = seed001_problem(1)
    f0, y_true = W @ X[0] + b, Y_true[0]

    def loss(f):
        return -y_true @ np.log(softmax_vector(f))

    def step6(f):
        y = softmax_vector(f)
        return [np.array([-y_true[i] + y_true[i] * y[i] + sum(y_true[i] * y[j] for j in range(3) if j != i)
                          for i in range(3)])]

    def step7(f):
        y = softmax_vector(f)
        return [-y_true + y * y_true.sum()]

    np.testing.assert_allclose(step6(f0)[0], 0, atol=1e-15)
    library = hg.SoftmaxCrossEntropy(reduction="sum")
    library.forward(f0[None, :], y_true[None, :])
    assert_wrong(hg.check_function(loss, step6, [f0]), step6(f0), [library.backward()[0]])
    report = hg.check_function(loss, step7, [f0])
    assert report.passed, str(report)
    np.testing.assert_allclose(step7(f0)[0], library.backward()[0], **SAME)


# ---------------------------------------------------------------------------
# Seed 002: L layers with a generic activation, softmax output, and the
# per-class binary cross-entropy of the softmax outputs summed over samples r:
#     C = −Σ_t Σ_r [y_t ln soft(z, t) + (1 − y_t) ln(1 − soft(z, t))].
# r_z_j = b_j + Σ_i w_{i,j} r_a_i: w_{i,j} joins unit i of layer l−1 to unit j
# of layer l, which is handgrad's Dense.W[i, j] as it stands.

ACTIVATIONS = {
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "sigmoid": (sigmoid, lambda z: sigmoid(z) * (1 - sigmoid(z))),
    "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(float)),
    "identity": (lambda z: z, np.ones_like),
}


def soft(z, j, without=None):
    """``soft(z, j)``, or ``soft(z_{≠t}, j)`` for ``without=t``: e^{z_j} over Σ_s e^{z_s}, s ≠ t."""
    keep = np.ones(len(z), dtype=bool)
    if without is not None:
        keep[without] = False
    shift = z.max()
    return np.exp(z[j] - shift) / np.exp(z[keep] - shift).sum()


def log_sum_exp(v):
    return v.max() + np.log(np.exp(v - v.max()).sum())


def seed002_cost(Z, Y):
    """C summed over samples (rows of Z) and classes t.

    Section 1's rewriting gives both logarithms without forming 1 − soft(z, t),
    which rounds badly once soft(z, t) nears 1:
    ln soft(z, t) = z_t − ln Σ_s e^{z_s} and
    ln(1 − soft(z, t)) = ln Σ_{s≠t} e^{z_s} − ln Σ_s e^{z_s}.
    """
    total = 0.0
    for z, y in zip(Z, Y):
        for t in range(len(z)):
            ln_soft = z[t] - log_sum_exp(z)
            ln_one_minus_soft = log_sum_exp(np.delete(z, t)) - log_sum_exp(z)
            total -= y[t] * ln_soft + (1 - y[t]) * ln_one_minus_soft
    return total


def seed002_logit_gradient(z, y):
    """Section 2: ∂C/∂z_j = m soft(z, j) − y_j − Σ_{t≠j} (1 − y_t) soft(z_{≠t}, j), one sample."""
    m = len(z)
    return np.array([m * soft(z, j) - y[j] - sum((1 - y[t]) * soft(z, j, without=t) for t in range(m) if t != j)
                     for j in range(m)])


def seed002_targets(rng, n, m, kind):
    if kind == "one-hot":
        return np.eye(m)[rng.integers(0, m, size=n)]
    return rng.dirichlet(np.ones(m), size=n)   # class probabilities


def test_seed002_section1_log_softmax_derivatives_hold():
    z0 = np.random.default_rng(2).normal(size=4)
    for t in range(4):
        # The rewriting used in seed002_cost, checked against the plain logarithms.
        assert np.log(soft(z0, t)) == pytest.approx(z0[t] - log_sum_exp(z0), rel=1e-12)
        assert np.log(1 - soft(z0, t)) == pytest.approx(log_sum_exp(np.delete(z0, t)) - log_sum_exp(z0), rel=1e-12)

        def d_ln_soft(z, t=t):
            # j = t: 1 − soft(z, t);  j ≠ t: −soft(z, j)
            return [np.array([1 - soft(z, t) if j == t else -soft(z, j) for j in range(4)])]

        def d_ln_one_minus_soft(z, t=t):
            # j = t: −soft(z, t);  j ≠ t: soft(z_{≠t}, j) − soft(z, j)
            return [np.array([-soft(z, t) if j == t else soft(z, j, without=t) - soft(z, j) for j in range(4)])]

        for f, grad in ((lambda z, t=t: np.log(soft(z, t)), d_ln_soft),
                        (lambda z, t=t: np.log(1 - soft(z, t)), d_ln_one_minus_soft)):
            report = hg.check_function(f, grad, [z0])
            assert report.passed, str(report)


@pytest.mark.parametrize("kind", ["one-hot", "probabilities"])
def test_seed002_section2_logit_gradient_holds_and_is_the_library_gradient(kind):
    rng = np.random.default_rng(3)
    Z = 2 * rng.normal(size=(5, 4))
    Y = seed002_targets(rng, 5, 4, kind)

    def document(Z):
        return [np.array([seed002_logit_gradient(z, y) for z, y in zip(Z, Y)])]

    report = hg.check_function(lambda Z: seed002_cost(Z, Y), document, [Z])
    assert report.passed, str(report)
    loss = hg.SoftmaxBinaryCrossEntropy(reduction="sum")
    assert loss.forward(Z, Y) == pytest.approx(seed002_cost(Z, Y), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), document(Z)[0], **SAME)


def test_seed002_library_gradient_equals_the_document_formula_for_spread_logits():
    """One class 40 above the rest: 1 − soft(z, t*) is about 1e-17, below float64's
    resolution next to 1, so forming it as 1 − s would lose every digit.  The
    library's O(m) rearrangement (losses.py) must still give the document's value."""
    rng = np.random.default_rng(4)
    Z = rng.normal(size=(6, 5))
    Z[np.arange(6), rng.integers(0, 5, size=6)] += 40
    assert (1 - hg.softmax(Z).max(axis=1) < 1e-15).all()
    Y = seed002_targets(rng, 6, 5, "probabilities")
    loss = hg.SoftmaxBinaryCrossEntropy(reduction="sum")
    loss.forward(Z, Y)
    document = np.array([seed002_logit_gradient(z, y) for z, y in zip(Z, Y)])
    np.testing.assert_allclose(loss.backward(), document, rtol=1e-9, atol=1e-12)


def seed002_problem(rng, widths, n_samples):
    weights = [rng.normal(size=(a, b)) for a, b in zip(widths, widths[1:])]   # w_{i,j}
    biases = [rng.normal(size=b) for b in widths[1:]]
    X = rng.normal(size=(n_samples, widths[0]))
    Y = seed002_targets(rng, n_samples, widths[-1], "one-hot")
    return weights, biases, X, Y


def seed002_forward(weights, biases, x, act):
    """Per sample: z_j^(l) = b_j^(l) + Σ_i w_{i,j}^(l) a_i^(l−1), a^(0) = x, a^(l) = act z^(l) below L."""
    activations, logits = [x], []
    for l, (w, b) in enumerate(zip(weights, biases), start=1):
        z = b + activations[-1] @ w          # Σ_i a_i w_{i,j}, i.e. wᵀa for a column a
        logits.append(z)
        if l < len(weights):
            activations.append(act(z))
    return activations, logits


def seed002_backprop(weights, biases, X, Y, act, act_prime):
    """Section 3, summed over samples r.

    ∂C/∂b_j = Σ_r ∂C/∂z_j;  ∂C/∂w_{i,j} = Σ_r ∂C/∂z_j a_i^(l−1);
    ∂C/∂a_i^(l−1) = Σ_j ∂C/∂z_j w_{i,j};  ∂C/∂z_j^(l) = ∂C/∂a_j^(l) act'(z_j^(l)).
    """
    grad_w = [np.zeros_like(w) for w in weights]
    grad_b = [np.zeros_like(b) for b in biases]
    for x, y in zip(X, Y):
        activations, logits = seed002_forward(weights, biases, x, act)
        dC_dz = seed002_logit_gradient(logits[-1], y)
        for l in range(len(weights) - 1, -1, -1):
            grad_b[l] += dC_dz
            grad_w[l] += np.outer(activations[l], dC_dz)
            if l > 0:
                dC_da = weights[l] @ dC_dz
                dC_dz = dC_da * act_prime(logits[l - 1])
    return [g for pair in zip(grad_w, grad_b) for g in pair]


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_seed002_section3_backprop_holds_and_matches_library(activation):
    act, act_prime = ACTIVATIONS[activation]
    rng = np.random.default_rng(5)
    widths = [4, 5, 4, 3]                  # L = 3 layers
    weights, biases, X, Y = seed002_problem(rng, widths, 3)
    params = [p for pair in zip(weights, biases) for p in pair]

    def cost(*params):
        logits = [seed002_forward(params[0::2], params[1::2], x, act)[1][-1] for x in X]
        return seed002_cost(np.array(logits), Y)

    def document(*params):
        return seed002_backprop(params[0::2], params[1::2], X, Y, act, act_prime)

    report = hg.check_function(cost, document, params)
    assert report.passed, str(report)
    layer = hg.activations()[activation]
    model = build([dense(4, 5), layer(), dense(5, 4), layer(), dense(4, 3)], params)
    value, grads = hg.loss_and_gradients(model, hg.SoftmaxBinaryCrossEntropy(reduction="sum"), X, Y)
    assert value == pytest.approx(cost(*params), rel=1e-12)
    for mine, theirs in zip(document(*params), grads, strict=True):
        np.testing.assert_allclose(mine, theirs, **SAME)


# ---------------------------------------------------------------------------
# Seed 003: S = W2 max(0, W1 X + b1) + b2 for a column X, W1 of shape h × m,
# W2 of shape C × h (handgrad's Dense.W are W1ᵀ and W2ᵀ), L = (1/n) Σ L_i with
# L_i = −log(e^{f_y} / Σ_j e^{f_j}).


def seed003_problem():
    rng = np.random.default_rng(6)
    m, h, C, n = 4, 5, 3, 6
    params = [rng.normal(size=(h, m)), rng.normal(size=h), rng.normal(size=(C, h)), rng.normal(size=C)]
    X = rng.normal(size=(n, m))
    y = rng.integers(0, C, size=n)
    return params, X, y


def seed003_loss(W1, b1, W2, b2, X, y):
    losses = [-np.log(softmax_vector(W2 @ np.maximum(0, W1 @ x + b1) + b2)[label]) for x, label in zip(X, y)]
    return np.mean(losses)                                  # L = (1/n) Σ L_i


def seed003_sample_gradients(W1, b1, W2, b2, x, label):
    """The document's final ∇L_i formulas for one sample, by name."""
    pre = W1 @ x + b1
    indicator = (pre > 0).astype(float)                     # I(ω1 x + b1)
    hidden = np.maximum(0, pre)                             # max(0, ω1 x + b1)
    f = W2 @ hidden + b2
    p = np.exp(f) / np.exp(f).sum()                         # e^f / Σ_j e^{f_j}
    through_scores = indicator * (W2.T @ p - W2[label])     # I(·) * (ω2ᵀ e^f / Σ e^{f_j} − ω2^{yT})
    e_y = unit_vector(label, len(f))
    return {
        "W1": np.outer(through_scores, x),                  # (…) x^{(i)T}
        "b1": through_scores,
        "W2 by rows": np.outer(p - e_y, hidden),            # row y carries (e^{f_y}/Σ − 1)
        "W2 final": np.outer(p, hidden),                    # [e^{f_j}/Σ]_j max(0, ω1 x + b1)ᵀ
        "b2": p - e_y,
    }


def seed003_gradient(name, W1, b1, W2, b2, X, y):
    """∇L = (1/n) Σ_i ∇L_i for one of the named formulas."""
    return np.mean([seed003_sample_gradients(W1, b1, W2, b2, x, label)[name] for x, label in zip(X, y)], axis=0)


def seed003_library(params, X, y):
    W1, b1, W2, b2 = params
    model = build([dense(4, 5), hg.ReLU(), dense(5, 3)], [W1.T, b1, W2.T, b2])
    loss = hg.SoftmaxCrossEntropy(reduction="mean")
    value, (dW1, db1, dW2, db2) = hg.loss_and_gradients(model, loss, X, y)
    return model, loss, value, [dW1.T, db1, dW2.T, db2]    # back in the document's orientation


def test_seed003_relu_inputs_stay_clear_of_the_kink():
    """Precondition of the checks below: no pre-activation within reach of the difference step."""
    (W1, b1, _, _), X, _ = seed003_problem()
    assert np.abs(X @ W1.T + b1).min() > 1e-3


def test_seed003_W1_b1_b2_and_row_form_of_W2_hold():
    params, X, y = seed003_problem()
    names = ["W1", "b1", "W2 by rows", "b2"]

    def document(*params):
        return [seed003_gradient(name, *params, X, y) for name in names]

    report = hg.check_function(lambda *params: seed003_loss(*params, X, y), document, params, names=names)
    assert report.passed, str(report)
    model, loss, value, library = seed003_library(params, X, y)
    assert value == pytest.approx(seed003_loss(*params, X, y), rel=1e-12)
    for mine, theirs in zip(document(*params), library):
        np.testing.assert_allclose(mine, theirs, **SAME)
    assert hg.gradcheck(model, loss, X, y).passed


def test_seed003_final_W2_formula_is_wrong_and_library_is_right():
    params, X, y = seed003_problem()
    W1, b1, _, b2 = params

    def loss(W2):
        return seed003_loss(W1, b1, W2, b2, X, y)

    def final(W2):
        return [seed003_gradient("W2 final", W1, b1, W2, b2, X, y)]

    model, hg_loss, _, library = seed003_library(params, X, y)
    assert_wrong(hg.check_function(loss, final, [params[2]]), final(params[2]), [library[2]])
    assert hg.gradcheck(model, hg_loss, X, y).passed


# ---------------------------------------------------------------------------
# Seed 004: y_k = f(Σ_{j=0}^M w_kj^(2) h(Σ_{i=0}^D w_ji^(1) x_i)) with h = tanh,
# f = softmax, E = −Σ_k t_k ln y_k per sample (summed over samples here).
# Biases are folded in: x_0 = 1 and hidden unit 0 is fixed at 1, so column 0
# of each folded matrix holds a bias.


def fold(W1, b1, W2, b2):
    """Seed 004's weights from handgrad's.

    ``w1[j − 1, i]`` joins input i = 0..D (i = 0: the constant x_0 = 1) to
    hidden unit j = 1..M; ``w2[k − 1, j]`` joins hidden unit j = 0..M (j = 0:
    the unit fixed at 1) to output k = 1..K.  So ``w1 = [b1 | W1ᵀ]`` and
    ``w2 = [b2 | W2ᵀ]``.
    """
    return np.column_stack([b1, W1.T]), np.column_stack([b2, W2.T])


def unfold(w1, w2):
    """handgrad's ``[W1, b1, W2, b2]`` from the folded matrices."""
    return [w1[:, 1:].T, w1[:, 0], w2[:, 1:].T, w2[:, 0]]


def seed004_forward(w1, w2, x):
    x = np.concatenate([[1.0], x])                        # x_0 = 1
    a = w1 @ x                                            # a_j = Σ_{i=0}^D w_ji x_i, j = 1..M
    hidden = np.concatenate([[1.0], np.tanh(a)])          # unit 0 fixed at 1, then h(a_j)
    z = w2 @ hidden                                       # z_k = Σ_{j=0}^M w_kj h_j
    return x, a, hidden, z


def seed004_error(w1, w2, X, T):
    return sum(-t @ np.log(softmax_vector(seed004_forward(w1, w2, x)[3])) for x, t in zip(X, T))


def seed004_gradients(w1, w2, X, T):
    """∂E/∂w_kj^(2) = (y_k − t_k) h_j and ∂E/∂w_ji^(1) = Σ_k (y_k − t_k) w_kj^(2) (1 − h²(a_j)) x_i."""
    grad_1, grad_2 = np.zeros_like(w1), np.zeros_like(w2)
    for x, t in zip(X, T):
        x, a, hidden, z = seed004_forward(w1, w2, x)
        delta = softmax_vector(z) - t                     # ∂E/∂z_k = f(z_k) − t_k
        grad_2 += np.outer(delta, hidden)
        # Hidden units j = 1..M only: unit 0 is a constant with no incoming weights.
        grad_1 += np.outer((w2[:, 1:].T @ delta) * (1 - np.tanh(a) ** 2), x)
    return [grad_1, grad_2]


def seed004_problem():
    rng = np.random.default_rng(7)
    D, M, K, n = 4, 5, 3, 4
    params = [rng.normal(size=(D, M)), rng.normal(size=M), rng.normal(size=(M, K)), rng.normal(size=K)]
    X = rng.normal(size=(n, D))
    T = np.eye(K)[rng.integers(0, K, size=n)]
    return params, X, T


def seed004_model(params):
    return build([dense(4, 5), hg.Tanh(), dense(5, 3)], params)


def test_seed004_folded_biases_give_the_library_network():
    params, X, _ = seed004_problem()
    w1, w2 = fold(*params)
    for mine, theirs in zip(unfold(w1, w2), params):
        np.testing.assert_array_equal(mine, theirs)
    logits = np.array([seed004_forward(w1, w2, x)[3] for x in X])
    np.testing.assert_allclose(logits, seed004_model(params)(X), **SAME)


def test_seed004_weight_formulas_hold_and_match_library():
    params, X, T = seed004_problem()
    w1, w2 = fold(*params)
    report = hg.check_function(lambda w1, w2: seed004_error(w1, w2, X, T),
                               lambda w1, w2: seed004_gradients(w1, w2, X, T), [w1, w2], names=["w1", "w2"])
    assert report.passed, str(report)
    model = seed004_model(params)
    loss = hg.SoftmaxCrossEntropy(reduction="sum")
    value, grads = hg.loss_and_gradients(model, loss, X, T)
    assert value == pytest.approx(seed004_error(w1, w2, X, T), rel=1e-12)
    for mine, theirs in zip(unfold(*seed004_gradients(w1, w2, X, T)), grads):
        np.testing.assert_allclose(mine, theirs, **SAME)


def seed004_logit_error(z, t):
    return -t @ np.log(softmax_vector(z))


def test_seed004_intermediate_logit_line_is_wrong_and_final_result_is_right():
    rng = np.random.default_rng(8)
    z = rng.normal(size=4)
    t = unit_vector(2, 4)

    def intermediate(z):
        return [np.sum(t * softmax_vector(z)) - t]      # Σ_l t_l f(z_l) − t_k

    def final(z):
        return [softmax_vector(z) - t]                  # f(z_k) − t_k

    def loss(z):
        return seed004_logit_error(z, t)

    library = hg.SoftmaxCrossEntropy(reduction="sum")
    library.forward(z[None, :], t[None, :])
    assert_wrong(hg.check_function(loss, intermediate, [z]), intermediate(z), [library.backward()[0]])
    report = hg.check_function(loss, final, [z])
    assert report.passed, str(report)
    np.testing.assert_allclose(final(z)[0], library.backward()[0], **SAME)


def test_seed004_final_logit_result_needs_targets_summing_to_one():
    """Before using Σ_l t_l = 1 the step reads f(z_k) Σ_l t_l − t_k; that general form is
    what the library computes, so unnormalised targets get the right gradient too."""
    z = np.random.default_rng(9).normal(size=4)
    t = np.array([0.5, 0.0, 2.0, 1.0])

    def general(z):
        return [softmax_vector(z) * t.sum() - t]

    def one_hot_form(z):
        return [softmax_vector(z) - t]

    def loss(z):
        return seed004_logit_error(z, t)

    assert hg.check_function(loss, general, [z]).passed
    assert not hg.check_function(loss, one_hot_form, [z]).passed
    report = hg.gradcheck(hg.SoftmaxCrossEntropy(reduction="sum"), z[None, :], t[None, :])
    assert report.passed, str(report)
