"""The estimators' losses: the Poisson deviance, and sample weights in every built-in loss.

Each gradient is checked against central differences (``hg.gradcheck``,
``hg.check_function``) and against PyTorch autograd in float64, whose side
is written from the definitions only.
"""

import numpy as np
import pytest
from scipy.special import xlogy

import handgrad as hg
from handgrad.errors import DataError
from handgrad.nn.losses import loss_from_config

torch = pytest.importorskip("torch")

REDUCTIONS = ["mean", "sum"]


def counts(rng, shape):
    return rng.poisson(2.0, size=shape).astype(np.float64)


# -- the Poisson deviance -------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("k", [1, 3])
def test_poisson_value_is_half_the_deviance(reduction, k, rng):
    Z = rng.standard_normal((7, k))
    Y = counts(rng, (7, k))
    mu = np.exp(Z)
    per_sample = (xlogy(Y, Y / mu) - Y + mu).sum(axis=1)          # Σ_k [y log(y/μ) − y + μ]
    expected = per_sample.mean() if reduction == "mean" else per_sample.sum()
    assert hg.PoissonDeviance(reduction).forward(Z, Y) == pytest.approx(expected, rel=1e-13)
    assert hg.PoissonDeviance().forward(np.log(np.maximum(Y, 1e-300)), Y) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_poisson_gradient_matches_central_differences(reduction, rng):
    Z = rng.standard_normal((6, 3))
    report = hg.gradcheck(hg.PoissonDeviance(reduction), Z, counts(rng, (6, 3)))
    assert report.max_error < 1e-7, str(report)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_poisson_gradient_matches_torch(reduction, rng):
    Z = rng.standard_normal((8, 2))
    Y = counts(rng, (8, 2))
    loss = hg.PoissonDeviance(reduction)
    value = loss.forward(Z, Y)
    grad = loss.backward()
    z = torch.tensor(Z, requires_grad=True)
    y = torch.tensor(Y)
    # torch's poisson_nll_loss(log_input=True) is e^z − y z; the deviance adds y log y − y, constant in z
    terms = torch.nn.functional.poisson_nll_loss(z, y, log_input=True, full=False, reduction="none")
    terms = terms + torch.special.xlogy(y, y) - y
    total = terms.sum() / (len(Z) if reduction == "mean" else 1)
    total.backward()
    assert value == pytest.approx(total.item(), rel=1e-13)
    np.testing.assert_allclose(grad, z.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_poisson_is_a_registered_regression_loss_that_predicts_means(rng):
    assert hg.losses(task="regression")["poisson"] is hg.PoissonDeviance
    assert loss_from_config(hg.PoissonDeviance("sum").config()).reduction == "sum"
    Z = rng.standard_normal((3, 2))
    np.testing.assert_allclose(hg.PoissonDeviance().predict(Z), np.exp(Z))
    with pytest.raises(DataError, match="non-negative"):
        hg.PoissonDeviance().check_targets(-np.ones((3, 1)), 3, 1, np.float64)


def test_a_network_trains_on_counts_with_the_poisson_deviance(rng):
    X = rng.standard_normal((400, 3))
    rate = np.exp(0.5 * X[:, :1] - 0.3 * X[:, 1:2])
    y = rng.poisson(rate).astype(float)
    model = hg.mlp(3, [8], 1, dtype=np.float64, seed=0)
    history = hg.fit(model, hg.PoissonDeviance(), X, y, epochs=60, batch_size=50, seed=0,
                     optimizer=hg.Adam(0.01))
    assert history["train_loss"][-1] < history["train_loss"][0]
    predicted = model.predict(X, loss=hg.PoissonDeviance()).ravel()
    assert np.corrcoef(predicted, rate.ravel())[0, 1] > 0.9


# -- sample weights in every built-in loss ----------------------------------------------------

def targets_for(loss_cls, rng, n, k):
    if loss_cls.task == "classification":
        return rng.integers(0, k, n)
    if loss_cls.task == "multilabel":
        return (rng.random((n, k)) > 0.5).astype(float)
    if loss_cls is hg.PoissonDeviance:
        return counts(rng, (n, k))
    return rng.standard_normal((n, k))


BUILT_IN = [hg.SoftmaxCrossEntropy, hg.SoftmaxBinaryCrossEntropy, hg.SquaredError, hg.SigmoidBinaryCrossEntropy,
            hg.PoissonDeviance]


@pytest.mark.parametrize("loss_cls", BUILT_IN, ids=lambda c: c.__name__)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_weighted_loss_is_the_weighted_sum_or_mean_of_the_per_sample_losses(loss_cls, reduction, rng):
    n, k = 6, 3
    Z = rng.standard_normal((n, k))
    y = targets_for(loss_cls, rng, n, k)
    w = rng.uniform(0, 3, n)
    per_sample = np.array([loss_cls("sum").forward(Z[i:i + 1], y[i:i + 1]) for i in range(n)])
    expected = w @ per_sample / (w.sum() if reduction == "mean" else 1)
    assert loss_cls(reduction).forward(Z, y, sample_weight=w) == pytest.approx(expected, rel=1e-12)
    ones = loss_cls(reduction).forward(Z, y, sample_weight=np.ones(n))
    assert ones == pytest.approx(loss_cls(reduction).forward(Z, y), rel=1e-14)


@pytest.mark.parametrize("loss_cls", BUILT_IN, ids=lambda c: c.__name__)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_weighted_gradient_matches_central_differences(loss_cls, reduction, rng):
    n, k = 5, 3
    y = targets_for(loss_cls, rng, n, k)
    w = rng.uniform(0, 3, n)
    w[1] = 0.0                                             # a zero weight removes its sample's gradient
    loss = loss_cls(reduction)

    def f(Z):
        return loss.forward(Z, y, sample_weight=w)

    def grad_f(Z):
        loss.forward(Z, y, sample_weight=w)
        return [loss.backward().copy()]

    Z = rng.standard_normal((n, k))
    report = hg.check_function(f, grad_f, [Z])
    assert report.max_error < 1e-7, str(report)
    assert not grad_f(Z)[0][1].any()


def torch_per_sample(loss_cls, z, y):
    """Each loss's per-sample value, from its definition, in torch."""
    if loss_cls is hg.SoftmaxCrossEntropy:
        return torch.nn.functional.cross_entropy(z, torch.as_tensor(y), reduction="none")
    if loss_cls is hg.SoftmaxBinaryCrossEntropy:
        s = torch.softmax(z, dim=1)
        Y = torch.nn.functional.one_hot(torch.as_tensor(y), z.shape[1]).double()
        return -(Y * torch.log(s) + (1 - Y) * torch.log(1 - s)).sum(dim=1)
    y = torch.as_tensor(y)
    if loss_cls is hg.SquaredError:
        return 0.5 * ((z - y) ** 2).sum(dim=1)
    if loss_cls is hg.SigmoidBinaryCrossEntropy:
        return torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none").sum(dim=1)
    return (torch.exp(z) - y * z + torch.special.xlogy(y, y) - y).sum(dim=1)


@pytest.mark.parametrize("loss_cls", BUILT_IN, ids=lambda c: c.__name__)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_weighted_loss_and_gradient_match_torch(loss_cls, reduction, rng):
    n, k = 9, 4
    Z = rng.standard_normal((n, k))
    y = targets_for(loss_cls, rng, n, k)
    w = rng.uniform(0, 2, n)
    loss = loss_cls(reduction)
    value = loss.forward(Z, y, sample_weight=w)
    grad = loss.backward()
    z = torch.tensor(Z, requires_grad=True)
    weights = torch.tensor(w)
    total = (weights * torch_per_sample(loss_cls, z, y)).sum()
    if reduction == "mean":
        total = total / weights.sum()
    total.backward()
    assert value == pytest.approx(total.item(), rel=1e-12)
    np.testing.assert_allclose(grad, z.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_fit_with_sample_weights_equals_fit_on_repeated_rows_in_full_batches(rng):
    """Integer weights are copies of the samples: the same full-batch steps, to rounding."""
    X = rng.standard_normal((30, 4))
    y = rng.integers(0, 3, 30)
    w = rng.integers(0, 4, 30)
    weighted, repeated = (hg.mlp(4, [6], 3, dtype=np.float64, seed=0) for _ in range(2))
    hg.fit(weighted, hg.SoftmaxCrossEntropy(), X, y, sample_weight=w, epochs=20, batch_size=30, alpha=0.1, seed=0,
           shuffle=False, optimizer=hg.Adam(0.01))
    hg.fit(repeated, hg.SoftmaxCrossEntropy(), np.repeat(X, w, axis=0), np.repeat(y, w), epochs=20,
           batch_size=int(w.sum()), alpha=0.1, seed=0, shuffle=False, optimizer=hg.Adam(0.01))
    np.testing.assert_allclose(weighted.get_weights(), repeated.get_weights(), rtol=1e-9, atol=1e-12)
