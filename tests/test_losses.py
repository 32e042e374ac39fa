"""Losses: values against their formulas, gradients against central differences, stability."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit, log_expit, logsumexp

import handgrad as hg
from handgrad.errors import HandgradError
from handgrad.nn.losses import loss_from_config

LOSSES = [hg.SoftmaxCrossEntropy, hg.SoftmaxBinaryCrossEntropy]
REDUCTIONS = ["mean", "sum"]
TARGET_KINDS = ["labels", "one-hot", "probabilities"]


def make_targets(kind, n, m, rng):
    labels = rng.integers(0, m, size=n)
    if kind == "labels":
        return labels
    if kind == "one-hot":
        return np.eye(m)[labels]
    return rng.dirichlet(np.ones(m), size=n)


def target_matrix(y, m):
    return np.eye(m)[y] if y.ndim == 1 else y


def reference_cross_entropy(Z, Y, reduction):
    """``−Σ_t y_t log softmax(z)_t`` per row, written independently of the library."""
    log_p = Z - logsumexp(Z, axis=1, keepdims=True)
    total = -(Y * log_p).sum()
    return total / len(Z) if reduction == "mean" else total


def reference_binary_cross_entropy(Z, Y, reduction):
    """Seed 002: ``−Σ_t [y_t ln s_t + (1 − y_t) ln(1 − s_t)]`` with ``s = softmax(z)``.

    ``ln(1 − s_t) = logsumexp(z_{≠t}) − logsumexp(z)``, one class at a time, so
    the reference stays exact in float64 for logits far apart.
    """
    n, m = Z.shape
    lse = logsumexp(Z, axis=1)
    total = 0.0
    for t in range(m):
        log_s = Z[:, t] - lse
        log_1ms = logsumexp(np.delete(Z, t, axis=1), axis=1) - lse
        total -= (Y[:, t] * log_s + (1 - Y[:, t]) * log_1ms).sum()
    return total / n if reduction == "mean" else total


REFERENCES = {hg.SoftmaxCrossEntropy: reference_cross_entropy,
              hg.SoftmaxBinaryCrossEntropy: reference_binary_cross_entropy}


@pytest.mark.parametrize("loss_cls", LOSSES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", TARGET_KINDS)
@settings(max_examples=12, deadline=None)
@given(n=st.integers(1, 6), m=st.integers(2, 6), seed=st.integers(0, 2**32 - 1),
       scale=st.sampled_from([0.1, 1.0, 5.0]))
def test_loss_backward_matches_central_differences(loss_cls, reduction, kind, n, m, seed, scale):
    rng = np.random.default_rng(seed)
    Z = scale * rng.standard_normal((n, m))
    y = make_targets(kind, n, m, rng)
    report = hg.gradcheck(loss_cls(reduction), Z, y)
    assert report.max_error < 1e-6, str(report)


@pytest.mark.parametrize("loss_cls", LOSSES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", TARGET_KINDS)
def test_loss_value_matches_the_formula(loss_cls, reduction, kind, rng):
    Z = 3 * rng.standard_normal((7, 4))
    y = make_targets(kind, 7, 4, rng)
    expected = REFERENCES[loss_cls](Z, target_matrix(y, 4), reduction)
    value = loss_cls(reduction).forward(Z, y)
    assert isinstance(value, float)
    assert value == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("loss_cls", LOSSES)
def test_labels_and_their_one_hot_matrix_give_the_same_loss_and_gradient(loss_cls, rng):
    Z = rng.standard_normal((5, 3))
    y = rng.integers(0, 3, size=5)
    loss = loss_cls()
    value_labels, grad_labels = loss.forward(Z, y), loss.backward().copy()
    value_matrix, grad_matrix = loss.forward(Z, np.eye(3)[y]), loss.backward()
    assert value_labels == pytest.approx(value_matrix, rel=1e-14)
    np.testing.assert_allclose(grad_labels, grad_matrix, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("loss_cls", LOSSES)
def test_mean_reduction_is_the_sum_divided_by_the_number_of_samples(loss_cls, rng):
    Z, y = rng.standard_normal((6, 4)), rng.integers(0, 4, size=6)
    total, mean = loss_cls("sum"), loss_cls("mean")
    assert mean.forward(Z, y) == pytest.approx(total.forward(Z, y) / 6, rel=1e-14)
    np.testing.assert_allclose(mean.backward(), total.backward() / 6, rtol=1e-14)


def test_cross_entropy_gradient_is_softmax_minus_targets(rng):
    Z, y = rng.standard_normal((5, 4)), rng.integers(0, 4, size=5)
    loss = hg.SoftmaxCrossEntropy("mean")
    loss.forward(Z, y)
    expected = (hg.softmax(Z) - np.eye(4)[y]) / 5
    np.testing.assert_allclose(loss.backward(), expected, rtol=1e-13, atol=1e-17)


@pytest.mark.parametrize("loss_cls", LOSSES)
def test_unnormalised_target_rows_still_get_the_exact_gradient(loss_cls, rng):
    Z = rng.standard_normal((4, 3))
    Y = rng.uniform(0, 2, size=(4, 3))              # rows do not sum to one
    report = hg.gradcheck(loss_cls("sum"), Z, Y)
    assert report.max_error < 1e-6, str(report)


@pytest.mark.parametrize("loss_cls", LOSSES)
def test_backward_writes_into_out_and_keeps_float32(loss_cls, rng):
    Z = rng.standard_normal((5, 3)).astype(np.float32)
    loss = loss_cls()
    loss.forward(Z, rng.integers(0, 3, size=5))
    out = np.empty_like(Z)
    assert loss.backward(out=out) is out
    assert out.dtype == np.float32 and loss.backward().dtype == np.float32


def test_softmax_and_log_softmax_agree_and_normalise(rng):
    Z = 50 * rng.standard_normal((6, 5))
    P = hg.softmax(Z)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(hg.log_softmax(Z), Z - logsumexp(Z, axis=1, keepdims=True), rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(np.exp(hg.log_softmax(Z)), P, rtol=1e-12, atol=1e-300)


# --- SoftmaxBinaryCrossEntropy far from zero ---------------------------------------------
#
# With two classes and y = e_k, both terms of seed 002's loss equal the log of
# the sigmoid of the logit gap, so the loss and its gradient have closed forms:
#     C = 2 softplus(z_j − z_k) = −2 log σ(z_k − z_j),   ∂C/∂z_k = −2 σ(z_j − z_k) = −∂C/∂z_j.

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("gap", [-2e4, -1e4, -800.0, -30.0, -1.0, 0.0, 1.0, 30.0, 800.0, 1e4, 2e4])
def test_binary_cross_entropy_with_two_classes_matches_the_closed_form_for_any_gap(dtype, gap):
    Z = np.array([[gap / 2, -gap / 2]], dtype=dtype)             # z_0 − z_1 = gap, |z| ≤ 1e4
    loss = hg.SoftmaxBinaryCrossEntropy("sum")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = loss.forward(Z, np.array([0]))
        grad = loss.backward()
    gap64 = float(Z[0, 0]) - float(Z[0, 1])
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    assert value == pytest.approx(-2 * log_expit(gap64), rel=rtol, abs=1e-300)
    np.testing.assert_allclose(grad[0], [-2 * expit(-gap64), 2 * expit(-gap64)], rtol=rtol, atol=1e-300)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_is_finite_and_exact_for_logits_of_ten_thousand(dtype):
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4], [1e4, 9999.0, -1e4]], dtype=dtype)
    Z64 = Z.astype(np.float64)
    for y in (np.array([1, 2, 2, 0]), np.array([0, 0, 0, 1]), np.full((4, 3), 1 / 3, dtype=dtype)):
        loss = hg.SoftmaxBinaryCrossEntropy("sum")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            value = loss.forward(Z, y)
            grad = loss.backward()
        assert np.isfinite(value) and np.isfinite(grad).all()
        Y = target_matrix(y, 3).astype(np.float64)
        assert value == pytest.approx(reference_binary_cross_entropy(Z64, Y, "sum"), rel=1e-6)
        np.testing.assert_allclose(grad, reference_binary_cross_entropy_gradient(Z64, Y), rtol=1e-5, atol=1e-6)


def reference_binary_cross_entropy_gradient(Z, Y):
    """``∂C/∂z_j = m s_j − y_j − Σ_{t≠j} (1 − y_t) e^{z_j} / Σ_{k≠t} e^{z_k}`` (summed reduction).

    Each ratio is ``exp(z_j − logsumexp(z_{≠t}))`` with ``z_j`` among the
    ``z_{≠t}``, so its exponent is ≤ 0 and nothing overflows.
    """
    n, m = Z.shape
    S = np.exp(Z - logsumexp(Z, axis=1, keepdims=True))
    grad = m * S - Y
    for t in range(m):
        lse_others = logsumexp(np.delete(Z, t, axis=1), axis=1, keepdims=True)
        exponent = Z - lse_others
        exponent[:, t] = -np.inf                         # the sum runs over t ≠ j
        ratio = np.exp(exponent)
        grad -= (1 - Y[:, [t]]) * ratio
    return grad


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 4), m=st.integers(2, 5), seed=st.integers(0, 2**32 - 1),
       scale=st.sampled_from([1.0, 50.0, 1e3, 1e4]))
def test_binary_cross_entropy_matches_the_log_domain_reference_at_any_scale(n, m, seed, scale):
    rng = np.random.default_rng(seed)
    Z = np.clip(scale * rng.standard_normal((n, m)), -1e4, 1e4)
    Y = make_targets("probabilities", n, m, rng)
    loss = hg.SoftmaxBinaryCrossEntropy("sum")
    value = loss.forward(Z, Y)
    assert value == pytest.approx(reference_binary_cross_entropy(Z, Y, "sum"), rel=1e-10)
    np.testing.assert_allclose(loss.backward(), reference_binary_cross_entropy_gradient(Z, Y), rtol=1e-9, atol=1e-12)


def test_cross_entropy_is_finite_and_exact_for_logits_of_ten_thousand():
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]])
    y = np.array([1, 0])
    loss = hg.SoftmaxCrossEntropy("sum")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = loss.forward(Z, y)
        grad = loss.backward()
    assert value == pytest.approx(2e4 + np.log(3), rel=1e-14)
    np.testing.assert_allclose(grad, [[1.0, -1.0, 0.0], [1 / 3 - 1, 1 / 3, 1 / 3]], atol=1e-15)


@pytest.mark.parametrize("loss_cls", LOSSES)
def test_unknown_reduction_is_refused(loss_cls):
    with pytest.raises(HandgradError, match="unknown reduction"):
        loss_cls("average")


def test_binary_cross_entropy_needs_two_classes():
    with pytest.raises(HandgradError, match="at least 2 classes"):
        hg.SoftmaxBinaryCrossEntropy().forward(np.zeros((3, 1)), np.zeros(3, dtype=int))


@pytest.mark.parametrize("loss", [hg.SoftmaxCrossEntropy("sum"), hg.SoftmaxBinaryCrossEntropy("mean")])
def test_loss_config_round_trips(loss):
    rebuilt = loss_from_config(loss.config())
    assert type(rebuilt) is type(loss) and rebuilt.reduction == loss.reduction
    with pytest.raises(HandgradError, match="unknown loss"):
        loss_from_config({"type": "HingeLoss"})


@pytest.mark.parametrize("loss_cls", LOSSES)
@pytest.mark.parametrize("target_dtype", [np.int64, np.float64])
def test_float32_logits_keep_float32_gradients_whatever_the_target_dtype(loss_cls, target_dtype, rng):
    Z = rng.standard_normal((5, 3)).astype(np.float32)
    Y = np.eye(3, dtype=target_dtype)[rng.integers(0, 3, size=5)]
    loss = loss_cls()
    loss.forward(Z, Y)
    assert loss.backward().dtype == np.float32


# --- SquaredError (regression) and SigmoidBinaryCrossEntropy (multilabel) ----------------

NEW_LOSSES = [hg.SquaredError, hg.SigmoidBinaryCrossEntropy]


def new_targets(loss_cls, shape, n, k, rng):
    """Targets of shape (n,) (one output) or (n, k): reals for regression, 0/1 or probabilities for multilabel."""
    size = (n,) if shape == "vector" else (n, k)
    if loss_cls is hg.SquaredError:
        return 2 * rng.standard_normal(size)
    return rng.integers(0, 2, size).astype(float) if rng.random() < 0.5 else rng.random(size)


def reference_new_loss(loss_cls, Z, Y, reduction):
    """``½‖z − y‖²`` and ``−Σ_k [y_k log σ(z_k) + (1 − y_k) log σ(−z_k)]`` per row, through SciPy's log_expit."""
    if loss_cls is hg.SquaredError:
        total = 0.5 * ((Z - Y) ** 2).sum()
    else:
        total = -(Y * log_expit(Z) + (1 - Y) * log_expit(-Z)).sum()
    return total / len(Z) if reduction == "mean" else total


@pytest.mark.parametrize("loss_cls", NEW_LOSSES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", ["vector", "matrix"])
@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 6), k=st.integers(1, 5), seed=st.integers(0, 2**32 - 1),
       scale=st.sampled_from([0.1, 1.0, 5.0]))
def test_new_loss_backward_matches_central_differences(loss_cls, reduction, shape, n, k, seed, scale):
    rng = np.random.default_rng(seed)
    k = 1 if shape == "vector" else k
    Z = scale * rng.standard_normal((n, k))
    y = new_targets(loss_cls, shape, n, k, rng)
    report = hg.gradcheck(loss_cls(reduction), Z, y)
    assert report.max_error < 1e-6, str(report)


@pytest.mark.parametrize("loss_cls", NEW_LOSSES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_new_loss_values_and_gradients_match_their_formulas(loss_cls, reduction, rng):
    Z = 3 * rng.standard_normal((7, 4))
    Y = new_targets(loss_cls, "matrix", 7, 4, rng)
    loss = loss_cls(reduction)
    assert loss.forward(Z, Y) == pytest.approx(reference_new_loss(loss_cls, Z, Y, reduction), rel=1e-13)
    kappa = 1 / 7 if reduction == "mean" else 1.0
    residual = Z - Y if loss_cls is hg.SquaredError else expit(Z) - Y
    np.testing.assert_allclose(loss.backward(), residual * kappa, rtol=1e-13, atol=1e-17)


def test_squared_error_reads_a_target_vector_as_the_one_output_column(rng):
    Z, y = rng.standard_normal((5, 1)), rng.standard_normal(5)
    loss = hg.SquaredError("sum")
    assert loss.forward(Z, y) == pytest.approx(0.5 * ((Z[:, 0] - y) ** 2).sum(), rel=1e-14)
    np.testing.assert_allclose(loss.backward()[:, 0], Z[:, 0] - y, rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_bce_is_finite_and_exact_for_logits_of_ten_thousand(dtype):
    Z = np.array([[1e4, -1e4, 1e4, -1e4, 0.0]], dtype=dtype)
    Y = np.array([[1.0, 0.0, 0.0, 1.0, 1.0]])
    loss = hg.SigmoidBinaryCrossEntropy("sum")
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        value = loss.forward(Z, Y.astype(dtype))
        grad = loss.backward()
    assert value == pytest.approx(2e4 + np.log(2), rel=1e-6 if dtype == np.float32 else 1e-14)
    np.testing.assert_array_equal(grad, np.array([[0.0, 0.0, 1.0, -1.0, -0.5]], dtype=dtype))
    assert grad.dtype == dtype
    half = hg.SigmoidBinaryCrossEntropy("sum").forward(np.array([[1e4]], dtype=dtype), np.array([[0.5]], dtype=dtype))
    assert half == pytest.approx(5e3, rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_squared_error_is_finite_for_outputs_of_ten_thousand(dtype):
    loss = hg.SquaredError()
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        value = loss.forward(np.array([[1e4, -1e4]], dtype=dtype), np.array([[-1e4, 1e4]], dtype=dtype))
        grad = loss.backward()
    assert value == pytest.approx(4e8) and grad.dtype == dtype
    np.testing.assert_array_equal(grad, [[2e4, -2e4]])


@pytest.mark.parametrize("loss_cls, task", [(hg.SoftmaxCrossEntropy, "classification"),
                                             (hg.SoftmaxBinaryCrossEntropy, "classification"),
                                             (hg.SquaredError, "regression"),
                                             (hg.SigmoidBinaryCrossEntropy, "multilabel")])
def test_each_loss_declares_its_task_and_round_trips(loss_cls, task):
    assert loss_cls.task == task
    assert hg.losses(task=task)[loss_cls.name] is loss_cls
    rebuilt = loss_from_config(loss_cls("sum").config())
    assert type(rebuilt) is loss_cls and rebuilt.reduction == "sum"


def test_short_names_of_the_new_losses():
    assert hg.losses()["squared-error"] is hg.SquaredError
    assert hg.losses()["sigmoid-bce"] is hg.SigmoidBinaryCrossEntropy


def test_predictions_and_probabilities_follow_the_task(rng):
    Z = np.array([[2.0, -1.0, 0.0], [-3.0, 0.5, 4.0]])
    np.testing.assert_array_equal(hg.SigmoidBinaryCrossEntropy().predict(Z), [[1, 0, 0], [0, 1, 1]])
    np.testing.assert_allclose(hg.SigmoidBinaryCrossEntropy().probabilities(Z), expit(Z), rtol=1e-15)
    np.testing.assert_array_equal(hg.SquaredError().predict(Z), Z)
    np.testing.assert_array_equal(hg.SoftmaxCrossEntropy().predict(Z), [0, 2])
    with pytest.raises(HandgradError, match="regression loss predicts values, not probabilities"):
        hg.SquaredError().probabilities(Z)
    model = hg.Sequential(hg.Dense(4, 3, dtype=np.float64), seed=0)
    X = rng.standard_normal((5, 4))
    np.testing.assert_array_equal(model.predict(X, loss=hg.SquaredError()), model(X))
    np.testing.assert_array_equal(model.predict(X, loss=hg.SigmoidBinaryCrossEntropy()), (model(X) > 0).astype(int))
    np.testing.assert_allclose(model.predict_proba(X, loss=hg.SigmoidBinaryCrossEntropy()), expit(model(X)),
                               rtol=1e-14)


BAD_TARGETS = [
    (hg.SquaredError, 3, np.array(["a", "b", "c", "d"]), "y has dtype <U1; pass real targets"),
    (hg.SquaredError, 3, np.full((4, 3), np.nan), "regression targets must be finite numbers"),
    (hg.SquaredError, 3, np.zeros((4, 2)), "regression targets have 2 columns but the model has 3 outputs"),
    (hg.SquaredError, 3, np.zeros(4), r"regression targets of shape \(n,\) need a model with one output, this "
                                      r"one has 3; pass targets of shape \(n, 3\)"),
    (hg.SquaredError, 3, np.zeros((4, 3, 1)), r"y must be real targets of shape \(n,\) or \(n, K\)"),
    (hg.SquaredError, 3, np.zeros((5, 3)), "X has 4 samples but y has 5"),
    (hg.SigmoidBinaryCrossEntropy, 3, np.full((4, 3), 2.0), r"multilabel targets must lie in \[0, 1\]"),
    (hg.SigmoidBinaryCrossEntropy, 3, np.full((4, 3), -0.5), r"multilabel targets must lie in \[0, 1\]"),
    (hg.SigmoidBinaryCrossEntropy, 3, np.full((4, 3), np.nan), r"multilabel targets must lie in \[0, 1\]"),
    (hg.SigmoidBinaryCrossEntropy, 3, np.array([0, 1, 2, 0]), r"multilabel targets of shape \(n,\) need a model "
                                                               r"with one output"),
]


@pytest.mark.parametrize("loss_cls, k, y, message", BAD_TARGETS)
def test_each_loss_checks_its_own_targets_in_one_line(loss_cls, k, y, message, rng):
    model = hg.Sequential(hg.Dense(2, k, dtype=np.float64), seed=0)
    X = rng.standard_normal((4, 2))
    for call in (lambda: hg.loss_and_gradients(model, loss_cls(), X, y),
                 lambda: hg.fit(model, loss_cls(), X, y, epochs=1, seed=0)):
        with pytest.raises(hg.DataError, match=message) as info:
            call()
        assert "\n" not in str(info.value)
