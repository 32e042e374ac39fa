"""MLPRegressor: scikit-learn's run retraced in float64, multi-output, Poisson, partial_fit, early stopping by R²."""


import numpy as np
import pytest
from sklearn.datasets import load_diabetes, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.neural_network import MLPRegressor as SklearnMLP
from sklearn.preprocessing import StandardScaler

import handgrad as hg
from handgrad.errors import DataError, HandgradError
from handgrad.estimators import MLPRegressor

pytestmark = [pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"), pytest.mark.usefixtures("one_blas_thread")]



@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    return StandardScaler().fit_transform(X), (y - y.mean()) / y.std()


@pytest.fixture(scope="module")
def two_outputs():
    X, Y = make_regression(n_samples=160, n_features=6, n_targets=2, noise=5.0, random_state=0)
    return StandardScaler().fit_transform(X), Y / Y.std(axis=0)


def same_weights(ours, theirs, rtol=1e-9, atol=1e-12):
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


PARITY_CASES = {
    "adam": dict(hidden_layer_sizes=(12,), max_iter=15, batch_size=64),
    "sgd-nesterov": dict(hidden_layer_sizes=(12, 6), solver="sgd", learning_rate_init=0.01, max_iter=10,
                         batch_size=50, activation="tanh"),
    "early-stopping": dict(hidden_layer_sizes=(12,), early_stopping=True, max_iter=15, tol=0.0,
                           learning_rate_init=0.01),
    "poisson": dict(loss="poisson", hidden_layer_sizes=(8,), max_iter=10, batch_size=100, learning_rate_init=0.01),
}


@pytest.mark.parametrize("case", sorted(PARITY_CASES))
def test_float64_fit_retraces_scikit_learns_run(diabetes, case):
    X, y = diabetes
    params = PARITY_CASES[case]
    if params.get("loss") == "poisson":
        y = np.round(np.exp(y))                      # counts
    ours = MLPRegressor(random_state=2, **params).fit(X, y)
    theirs = SklearnMLP(random_state=2, **params).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    same_weights(ours, theirs)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-8, atol=1e-12)
    assert ours.out_activation_ == theirs.out_activation_ and ours.n_outputs_ == theirs.n_outputs_ == 1
    if params.get("early_stopping"):
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=1e-9)
        assert len(ours.validation_loss_curve_) == ours.n_iter_


def test_multi_output_takes_scikit_learns_steps_and_reports_the_summed_loss(two_outputs):
    """scikit-learn differentiates the sum over outputs and reports the mean: same steps, loss_ × n_outputs."""
    X, Y = two_outputs
    params = dict(hidden_layer_sizes=(10,), max_iter=8, batch_size=40, alpha=0.0, random_state=0)
    ours = MLPRegressor(**params).fit(X, Y)
    theirs = SklearnMLP(**params).fit(X, Y)
    same_weights(ours, theirs)
    np.testing.assert_allclose(ours.loss_curve_, 2 * np.asarray(theirs.loss_curve_), rtol=1e-9)
    assert ours.predict(X).shape == Y.shape and ours.n_outputs_ == 2
    assert ours.score(X, Y) == pytest.approx(r2_score(Y, ours.predict(X)))


def test_lbfgs_regression_follows_scikit_learns_path(diabetes):
    X, y = diabetes
    params = dict(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=20, random_state=0)
    ours = MLPRegressor(**params).fit(X, y)
    theirs = SklearnMLP(**params).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-8)
    same_weights(ours, theirs, rtol=1e-5, atol=1e-7)


def test_sample_weights_retrace_scikit_learn(diabetes):
    X, y = diabetes
    w = np.random.default_rng(1).uniform(0.1, 2.0, len(y))
    params = dict(hidden_layer_sizes=(8,), max_iter=6, batch_size=64, alpha=0.01, random_state=0)
    ours = MLPRegressor(**params).fit(X, y, sample_weight=w)
    theirs = SklearnMLP(**params).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    same_weights(ours, theirs)


def test_partial_fit_continues_and_lbfgs_has_none(diabetes):
    X, y = diabetes
    reg = MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
    for _ in range(30):
        reg.partial_fit(X[:300], y[:300])
    assert reg.n_iter_ == 1 and reg.t_ == 30 * 300
    assert reg.score(X[300:], y[300:]) > 0.3
    with pytest.raises(DataError, match="output"):
        reg.partial_fit(X, np.column_stack([y, y]))
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")


def test_early_stopping_is_scored_by_r2_and_keeps_the_best_epoch(diabetes):
    X, y = diabetes
    reg = MLPRegressor(hidden_layer_sizes=(32,), early_stopping=True, learning_rate_init=0.01, max_iter=200,
                       n_iter_no_change=5, random_state=0).fit(X, y)
    assert reg.n_iter_ < 200 and reg.best_validation_score_ == max(reg.validation_scores_)
    assert len(reg.validation_loss_curve_) == reg.n_iter_
    assert -1 < reg.best_validation_score_ < 1
    with pytest.raises(DataError, match="validation set is too small"):
        MLPRegressor(early_stopping=True, validation_fraction=0.05).fit(X[:20], y[:20])


def test_poisson_needs_counts(diabetes):
    X, y = diabetes
    with pytest.raises(DataError, match="negative"):
        MLPRegressor(loss="poisson", max_iter=2).fit(X, y)
    reg = MLPRegressor(loss="poisson", hidden_layer_sizes=(8,), max_iter=30, learning_rate_init=0.01,
                       random_state=0).fit(X, np.round(np.exp(y)))
    assert reg.out_activation_ == "exp" and (reg.predict(X) > 0).all()


def test_float32_input_trains_in_float32(diabetes):
    X, y = diabetes
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X.astype(np.float32), y)
    assert reg.coefs_[0].dtype == np.float32 and reg.predict(X).dtype == np.float32


def test_a_column_vector_target_warns_as_in_scikit_learn(diabetes):
    from sklearn.exceptions import DataConversionWarning

    X, y = diabetes
    with pytest.warns(DataConversionWarning):
        reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2).fit(X, y.reshape(-1, 1))
    assert reg.predict(X).shape == (len(y),)


def test_convergence_warnings(diabetes):
    X, y = diabetes
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPRegressor(hidden_layer_sizes=(4,), max_iter=2).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        MLPRegressor(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=2).fit(X, y)


def test_the_losses_offered_are_the_registrys_regression_losses():
    assert set(hg.estimators.estimator_losses("regression")) >= {"squared_error", "poisson"}
    with pytest.raises(HandgradError, match="'loss' parameter"):
        MLPRegressor(loss="cross_entropy").fit(np.zeros((4, 2)), np.zeros(4))
