"""MLPClassifier: scikit-learn's contract, its objective and stopping rule, and accuracy against scikit-learn."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits, load_wine, make_blobs
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score, train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLP
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from threadpoolctl import threadpool_limits

import handgrad as hg
from handgrad.errors import DataError, HandgradError
from handgrad.estimator import MLPClassifier
from support import ci_only

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Small matrices: one BLAS thread is fastest, and on a busy machine several threads thrash."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def blobs():
    """Three well-separated classes in 4 dimensions: (X, y) with 150 rows."""
    return make_blobs(n_samples=150, centers=3, n_features=4, cluster_std=1.5, random_state=0)


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


def small(**params):
    """A quick estimator: one hidden layer of 16, a brisk rate, a fixed seed."""
    defaults = dict(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=50, random_state=0)
    return MLPClassifier(**{**defaults, **params})


def sklearn_objective(clf, X, y, alpha):
    """scikit-learn's full-batch objective: mean log-loss + α/(2n) Σ‖W‖², computed here in float64."""
    log_p = clf.predict_log_proba(X)
    index = np.searchsorted(clf.classes_, y)
    penalty = sum(float(np.sum(W.astype(np.float64) ** 2)) for W in clf.coefs_)
    return -log_p[np.arange(len(y)), index].mean() + alpha / (2 * len(y)) * penalty


# -- fitted attributes ---------------------------------------------------------

def test_fitted_attributes_follow_scikit_learn(blobs):
    X, y = blobs
    clf = small(hidden_layer_sizes=(16, 8)).fit(X, y)
    assert [W.shape for W in clf.coefs_] == [(4, 16), (16, 8), (8, 3)]
    assert [b.shape for b in clf.intercepts_] == [(16,), (8,), (3,)]
    assert clf.n_layers_ == 4 and clf.n_outputs_ == 3 and clf.out_activation_ == "softmax"
    assert clf.n_features_in_ == 4
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert len(clf.loss_curve_) == clf.n_iter_ and clf.t_ == clf.n_iter_ * len(X)
    assert clf.loss_ == clf.loss_curve_[-1] and clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert clf.coefs_[0].dtype == np.float32
    assert clf.score(X, y) > 0.9


def test_string_labels_and_binary_problem_give_two_probability_columns(blobs):
    X, y = blobs
    keep = y < 2
    labels = np.array(["cat", "dog"])[y[keep]]
    clf = small().fit(X[keep], labels)
    np.testing.assert_array_equal(clf.classes_, ["cat", "dog"])
    proba = clf.predict_proba(X[keep])
    assert proba.shape == (keep.sum(), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(clf.predict_log_proba(X[keep]), np.log(proba), rtol=1e-10, atol=1e-12)
    predicted = clf.predict(X[keep])
    np.testing.assert_array_equal(predicted, clf.classes_[proba.argmax(axis=1)])
    assert (predicted == labels).mean() > 0.95


def test_feature_names_come_from_a_dataframe(blobs):
    pd = pytest.importorskip("pandas")
    X, y = blobs
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    clf = small().fit(frame, y)
    np.testing.assert_array_equal(clf.feature_names_in_, ["a", "b", "c", "d"])
    with pytest.raises(DataError, match="feature names"):
        clf.predict(frame.rename(columns={"a": "z"}))


def test_float64_dtype_keeps_float64_weights(blobs):
    X, y = blobs
    clf = small(dtype="float64", max_iter=5).fit(X, y)
    assert all(W.dtype == np.float64 for W in clf.coefs_ + clf.intercepts_)


# -- the objective: alpha and sample weights -------------------------------------

def test_alpha_gives_scikit_learns_objective(blobs):
    """With one full batch, the recorded loss is mean log-loss + α/(2n)·Σ‖W‖² at the epoch's start weights."""
    X, y = blobs
    alpha = 0.5
    clf = small(alpha=alpha, batch_size=len(X), max_iter=3, dtype="float64").fit(X, y)
    expected = sklearn_objective(clf, X, y, alpha)
    clf.set_params(warm_start=True, max_iter=1).fit(X, y)
    assert clf.loss_curve_[-1] == pytest.approx(expected, rel=1e-12)


def test_integer_sample_weights_equal_repeated_samples(blobs):
    """Full-batch training on weights w equals training on each row repeated w times (0 = removed)."""
    X, y = blobs
    X, y = X[:60], y[:60]
    weights = np.random.default_rng(0).integers(0, 4, size=len(y))
    params = dict(batch_size="auto", max_iter=20, dtype="float64", alpha=0.3)
    weighted = small(**params).fit(X, y, sample_weight=weights)
    repeated = small(**params).fit(np.repeat(X, weights, axis=0), np.repeat(y, weights))
    assert len(np.repeat(y, weights)) <= 200        # "auto" keeps both runs full-batch
    for a, b in zip(weighted.coefs_ + weighted.intercepts_, repeated.coefs_ + repeated.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-12)


def test_weighted_target_rows_scale_the_cross_entropy_gradient_exactly(blobs):
    """The identity the weights rest on: target row w·e_y gives w times the row's loss and gradient."""
    X, y = blobs
    X, y = X[:30], y[:30]
    weights = np.random.default_rng(1).integers(0, 4, size=len(y))
    model = hg.mlp(4, [8], 3, dtype=np.float64, seed=0)
    loss = hg.SoftmaxCrossEntropy(reduction="sum")
    targets = np.eye(3)[y] * weights[:, None]
    value, grads = hg.loss_and_gradients(model, loss, X, targets)
    value_rep, grads_rep = hg.loss_and_gradients(model, loss, np.repeat(X, weights, axis=0), np.repeat(y, weights))
    assert value == pytest.approx(value_rep, rel=1e-12)
    for g, g_rep in zip(grads, grads_rep):
        np.testing.assert_allclose(g, g_rep, rtol=1e-10, atol=1e-12)


def test_bad_sample_weights_are_refused(blobs):
    X, y = blobs
    with pytest.raises(DataError, match="non-negative"):
        small().fit(X, y, sample_weight=-np.ones(len(y)))
    with pytest.raises(DataError, match="shape"):
        small().fit(X, y, sample_weight=np.ones(len(y) + 1))
    with pytest.raises(DataError, match="sums to zero"):
        small().fit(X, y, sample_weight=np.zeros(len(y)))
    with pytest.raises(HandgradError, match="cross_entropy"):
        small(loss="softmax_bce").fit(X, y, sample_weight=np.ones(len(y)))


def test_softmax_bce_loss_trains(blobs):
    X, y = blobs
    clf = small(loss="softmax_bce").fit(X, y)
    assert clf.score(X, y) > 0.9 and clf.loss_curve_[-1] < clf.loss_curve_[0]


# -- the stopping rule and the schedules, against scikit-learn's own -------------------

@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_stops_after_n_iter_no_change_epochs_like_scikit_learn(blobs, solver):
    X, y = blobs
    params = dict(hidden_layer_sizes=(8,), solver=solver, tol=100.0, n_iter_no_change=4, max_iter=50, random_state=0)
    ours = MLPClassifier(**params).fit(X, y)
    theirs = SklearnMLP(**params).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 6   # the first epoch sets best_loss_; then 4 + 1 without progress


def test_adaptive_learning_rate_divides_by_five_like_scikit_learn(blobs):
    X, y = blobs
    params = dict(hidden_layer_sizes=(8,), solver="sgd", learning_rate="adaptive", learning_rate_init=0.01,
                  tol=100.0, n_iter_no_change=2, max_iter=100, random_state=0)
    ours = MLPClassifier(**params).fit(X, y)
    theirs = SklearnMLP(**params).fit(X, y)
    # The first plateau ends at epoch 4 (epoch 1 sets best_loss_, then 3 epochs over n_iter_no_change=2), each
    # later one 3 epochs on; 0.01 / 5**6 <= 1e-6, so the seventh plateau stops: 4 + 6 * 3 = 22 epochs.
    assert ours.n_iter_ == theirs.n_iter_ == 22


def test_invscaling_sets_the_rate_from_samples_seen(blobs):
    X, y = blobs
    clf = small(solver="sgd", learning_rate="invscaling", learning_rate_init=0.5, power_t=0.25, max_iter=4).fit(X, y)
    assert clf._optimizer.lr == pytest.approx(0.5 / (clf.t_ + 1) ** 0.25)


def test_reaching_max_iter_warns_convergence_warning(blobs):
    X, y = blobs
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\)"):
        small(max_iter=3).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = small(tol=100.0, n_iter_no_change=1, max_iter=10).fit(X, y)
    assert clf.n_iter_ == 3


def test_early_stopping_keeps_the_best_validation_epoch(digits_split):
    X, _, y, _ = digits_split
    params = dict(early_stopping=True, n_iter_no_change=2, tol=0.0, max_iter=60, learning_rate_init=0.05)
    stopped = small(**params).fit(X, y)
    scores = stopped.validation_scores_
    assert len(scores) == stopped.n_iter_ < 60
    assert stopped.best_validation_score_ == max(scores) and stopped.best_loss_ is None
    best_epoch = int(np.argmax(scores))
    assert best_epoch < stopped.n_iter_ - 1          # it trained past the best epoch, then went back
    truncated = small(**{**params, "max_iter": best_epoch + 1}).fit(X, y)
    for a, b in zip(stopped.coefs_, truncated.coefs_):
        np.testing.assert_array_equal(a, b)


# -- partial_fit, warm_start, pickling -------------------------------------------

def test_partial_fit_learns_over_calls(digits_split):
    X, X_test, y, y_test = digits_split
    clf = small()
    for _epoch in range(8):
        for start in range(0, len(X), 300):
            clf.partial_fit(X[start:start + 300], y[start:start + 300], classes=np.arange(10))
    assert clf.n_iter_ == 1 and clf.t_ == 8 * len(X)
    assert clf.score(X_test, y_test) > 0.9


def test_partial_fit_needs_classes_first_and_rejects_new_labels(blobs):
    X, y = blobs
    with pytest.raises(DataError, match="classes must be passed"):
        small().partial_fit(X, y)
    clf = small().partial_fit(X[y < 2], y[y < 2], classes=[0, 1])
    with pytest.raises(DataError, match="not in classes_"):
        clf.partial_fit(X, y)
    with pytest.raises(HandgradError, match="early_stopping"):
        small(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])


def test_partial_fit_with_a_subset_of_classes_keeps_all_outputs(blobs):
    X, y = blobs
    clf = small().partial_fit(X[y == 0], y[y == 0], classes=[0, 1, 2])
    assert clf.predict_proba(X).shape == (len(X), 3)


def test_warm_start_continues_and_refuses_a_changed_network(blobs):
    X, y = blobs
    clf = small(max_iter=5, warm_start=True).fit(X, y)
    first = clf.loss_curve_[:]
    clf.fit(X, y)
    assert clf.loss_curve_[:5] == first and len(clf.loss_curve_) == 10
    assert clf.loss_curve_[5] < first[0]
    with pytest.raises(HandgradError, match="warm_start=False"):
        clf.set_params(hidden_layer_sizes=(4,)).fit(X, y)


def test_pickled_estimator_predicts_and_trains_on_identically(blobs):
    X, y = blobs
    clf = small(max_iter=5).fit(X, y)
    copy = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))
    clf.partial_fit(X, y)
    copy.partial_fit(X, y)
    for a, b in zip(clf.coefs_, copy.coefs_):
        np.testing.assert_array_equal(a, b)


def test_verbose_prints_the_loss_of_each_epoch(blobs, capsys):
    X, y = blobs
    clf = small(max_iter=3, verbose=True).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"Iteration {i + 1}, loss = {clf.loss_curve_[i]:.8f}" for i in range(3)]


# -- user mistakes -------------------------------------------------------------------

def test_mistakes_raise_handgrads_errors_that_scikit_learn_also_recognises(blobs):
    X, y = blobs
    with pytest.raises(HandgradError, match="'alpha' parameter") as bad_param:
        small(alpha=-1.0).fit(X, y)
    assert isinstance(bad_param.value, InvalidParameterError)
    with pytest.raises(HandgradError) as unfitted:
        small().predict(X)
    assert isinstance(unfitted.value, NotFittedError)
    X_nan = X.copy()
    X_nan[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN") as nan:
        small().fit(X_nan, y)
    assert "\n" not in str(nan.value)
    with pytest.raises(DataError, match="one class"):
        small().fit(X, np.zeros(len(y)))
    with pytest.raises(DataError, match="features"):
        small(max_iter=2).fit(X, y).predict(X[:, :3])
    with pytest.warns(UserWarning, match="larger than"):
        small(batch_size=1000, max_iter=1).fit(X, y)


# -- scikit-learn's tools ---------------------------------------------------------------

def test_pipeline_scales_then_classifies(digits_split):
    X, X_test, y, y_test = digits_split
    pipe = make_pipeline(StandardScaler(), small(max_iter=30)).fit(X * 16, y)
    assert pipe.score(X_test * 16, y_test) > 0.93
    np.testing.assert_array_equal(pipe.predict(X_test * 16), pipe[-1].predict(pipe[0].transform(X_test * 16)))


def test_clone_is_unfitted_and_refits_to_the_same_model(blobs):
    X, y = blobs
    clf = small(hidden_layer_sizes=(7,), alpha=0.01).fit(X, y)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params()
    with pytest.raises(NotFittedError):
        twin.predict(X)
    np.testing.assert_array_equal(twin.fit(X, y).predict_proba(X), clf.predict_proba(X))


def test_cross_val_score_matches_a_manual_loop(digits_split):
    X, _, y, _ = digits_split
    X, y = X[:600], y[:600]
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    estimator = small(max_iter=20)
    scores = cross_val_score(estimator, X, y, cv=folds)
    manual = [clone(estimator).fit(X[tr], y[tr]).score(X[te], y[te]) for tr, te in folds.split(X, y)]
    np.testing.assert_array_equal(scores, manual)
    assert scores.min() > 0.8


@ci_only
def test_grid_search_in_two_processes_picks_the_best_setting(digits_split):
    X, _, y, _ = digits_split
    X, y = X[:600], y[:600]
    grid = {"hidden_layer_sizes": [(2,), (32,)], "alpha": [1e-4, 1.0]}
    search = GridSearchCV(small(max_iter=20), grid, cv=3, n_jobs=2).fit(X, y)
    assert search.best_params_["hidden_layer_sizes"] == (32,)   # 2 hidden units cannot separate 10 digits
    best = search.best_params_
    refit = cross_val_score(small(max_iter=20, **best), X, y, cv=3)
    assert search.best_score_ == pytest.approx(refit.mean(), abs=1e-12)
    assert search.best_estimator_.score(X, y) > 0.9


# -- accuracy against scikit-learn's MLPClassifier -------------------------------------

ACCURACY_CASES = {
    "digits": (load_digits, dict(hidden_layer_sizes=(64,), max_iter=200)),
    "breast_cancer": (load_breast_cancer, dict(hidden_layer_sizes=(64,), max_iter=300)),
    "wine": (load_wine, dict(hidden_layer_sizes=(64,), max_iter=500)),
}
ACCURACY_TOLERANCE = 0.015
SEEDS = (0, 1, 2)


@pytest.mark.parametrize("name", sorted(ACCURACY_CASES))
def test_accuracy_matches_scikit_learn(name):
    """Same split, scaling, settings and seeds: mean test accuracy at least scikit-learn's minus 0.015."""
    load, settings = ACCURACY_CASES[name]
    X, y = load(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    ours, theirs = [], []
    for seed in SEEDS:
        for cls, scores in ((MLPClassifier, ours), (SklearnMLP, theirs)):
            pipe = make_pipeline(StandardScaler(), cls(random_state=seed, **settings)).fit(X_train, y_train)
            scores.append(pipe.score(X_test, y_test))
    assert np.mean(ours) >= np.mean(theirs) - ACCURACY_TOLERANCE, (ours, theirs)
