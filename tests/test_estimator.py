"""MLPClassifier: scikit-learn's contract, and in float64 scikit-learn's very run for the same random_state."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import (
    load_breast_cancer,
    load_digits,
    load_iris,
    load_wine,
    make_blobs,
    make_multilabel_classification,
)
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score, train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLP
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.class_weight import compute_sample_weight

import handgrad as hg
from handgrad.errors import DataError, HandgradError
from handgrad.estimators import MLPClassifier
from support import ci_only, count

pytestmark = [pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"), pytest.mark.usefixtures("one_blas_thread")]



@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X)[:300], y[:300]


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


def assert_same_run(ours, theirs, rtol=1e-9, atol=1e-12):
    """Two fitted estimators took the same steps: same epochs, losses and weights, to rounding."""
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=rtol)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


# -- scikit-learn's run, retraced ---------------------------------------------------------

PARITY_CASES = {
    "adam-multiclass": ("iris", dict(hidden_layer_sizes=(10,), max_iter=20, batch_size=32)),
    "adam-binary-logistic": ("cancer", dict(hidden_layer_sizes=(8, 5), activation="logistic", max_iter=8,
                                            batch_size=50)),
    "adam-tanh-no-shuffle": ("iris", dict(hidden_layer_sizes=(6,), activation="tanh", shuffle=False, max_iter=10,
                                          batch_size=40, alpha=0.1)),
    "sgd-nesterov-invscaling": ("iris", dict(hidden_layer_sizes=(10,), solver="sgd", learning_rate="invscaling",
                                             learning_rate_init=0.5, power_t=0.3, max_iter=12, batch_size=25)),
    "sgd-momentum-adaptive": ("iris", dict(hidden_layer_sizes=(10,), solver="sgd", learning_rate="adaptive",
                                           nesterovs_momentum=False, learning_rate_init=0.2, tol=10.0,
                                           n_iter_no_change=2, max_iter=14, batch_size=30)),
    "early-stopping-binary": ("cancer", dict(hidden_layer_sizes=(12,), early_stopping=True, max_iter=12,
                                             n_iter_no_change=3, tol=1e-3, learning_rate_init=0.01)),
    "identity-no-hidden-layer": ("iris", dict(hidden_layer_sizes=(), activation="identity", max_iter=10)),
}


@pytest.mark.parametrize("case", sorted(PARITY_CASES))
def test_float64_fit_retraces_scikit_learns_run(case, request):
    """Same random_state: same initial weights, sample order, split, objective and updates, so the same run."""
    data, params = PARITY_CASES[case]
    X, y = request.getfixturevalue(data)
    ours = MLPClassifier(random_state=3, **params).fit(X, y)
    theirs = SklearnMLP(random_state=3, **params).fit(X, y)
    assert_same_run(ours, theirs)
    if params.get("early_stopping"):
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=1e-12)
        assert ours.best_validation_score_ == theirs.best_validation_score_
        assert len(ours.validation_loss_curve_) == ours.n_iter_
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-8, atol=1e-12)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


def test_first_epoch_loss_is_scikit_learns(iris):
    """The issue's symptom: the first epoch's loss started at 2.1 where scikit-learn's starts at 1.2."""
    X, y = iris
    for seed in range(5):
        ours = MLPClassifier(max_iter=1, random_state=seed).fit(X, y)
        theirs = SklearnMLP(max_iter=1, random_state=seed).fit(X, y)
        assert ours.loss_curve_[0] == pytest.approx(theirs.loss_curve_[0], rel=1e-12)


def test_sample_weights_retrace_scikit_learns_weighted_minibatches(iris):
    """Each minibatch normalised by its own weight total, the penalty by it too, as scikit-learn."""
    X, y = iris
    weights = np.random.default_rng(0).uniform(0.2, 3.0, len(y))
    params = dict(hidden_layer_sizes=(10,), max_iter=10, batch_size=32, alpha=0.05, random_state=1)
    ours = MLPClassifier(**params).fit(X, y, sample_weight=weights)
    theirs = SklearnMLP(**params).fit(X, y, sample_weight=weights)
    assert_same_run(ours, theirs)


def test_lbfgs_follows_scikit_learns_path(iris):
    """L-BFGS-B from the same start on the same objective: the same iterates, to rounding."""
    X, y = iris
    params = dict(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=25, alpha=1e-3, random_state=0)
    ours = MLPClassifier(**params).fit(X, y)
    theirs = SklearnMLP(**params).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 25
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-8)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert len(ours.loss_curve_) == ours.n_iter_ and ours.loss_curve_[-1] == pytest.approx(ours.loss_)
    assert not hasattr(ours, "best_loss_") and not hasattr(ours, "validation_scores_")


def test_lbfgs_stops_on_max_fun_and_warns(iris):
    X, y = iris
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        clf = MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", max_fun=5, random_state=0).fit(X, y)
    assert clf.n_iter_ <= 5
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=3, random_state=0).fit(X, y)


def test_lbfgs_has_no_partial_fit_as_in_scikit_learn(iris):
    X, y = iris
    clf = MLPClassifier(solver="lbfgs")
    assert not hasattr(clf, "partial_fit")
    with pytest.raises(AttributeError, match="has no attribute .partial_fit."):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    assert hasattr(MLPClassifier(solver="sgd"), "partial_fit")


def test_lbfgs_on_float32_input_optimises_in_float64_and_keeps_float32_weights(iris):
    X, y = iris
    clf = MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=200, random_state=0).fit(
        X.astype(np.float32), y)
    assert clf.coefs_[0].dtype == np.float32 and clf.predict_proba(X).dtype == np.float32
    assert clf.n_iter_ < 200 and clf.score(X, y) > 0.97          # converged: gtol reached in float64


# -- fitted attributes, dtypes, labels -------------------------------------------------------

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
    assert clf.validation_loss_curve_ is None
    assert clf.score(X, y) > 0.9


@pytest.mark.parametrize("dtype, forced, expected", [
    (np.float64, None, np.float64), (np.float32, None, np.float32), (np.int64, None, np.float64),
    (np.float64, "float32", np.float32), (np.float32, "float64", np.float64)])
def test_weights_follow_the_inputs_dtype_unless_forced(blobs, dtype, forced, expected):
    X, y = blobs
    clf = small(max_iter=3, dtype=forced).fit(X.astype(dtype), y)
    assert all(a.dtype == expected for a in clf.coefs_ + clf.intercepts_)
    assert clf.predict_proba(X).dtype == expected


def test_binary_problems_have_one_logistic_output_as_in_scikit_learn(cancer):
    X, y = cancer
    labels = np.array(["benign", "malignant"])[y]
    clf = small().fit(X, labels)
    assert clf.n_outputs_ == 1 and clf.out_activation_ == "logistic" and clf.coefs_[-1].shape == (16, 1)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    assert clf.score(X, labels) > 0.95


def test_softmax_bce_trains_softmax_outputs_for_two_classes(cancer):
    X, y = cancer
    clf = small(loss="softmax_bce").fit(X, y)
    assert clf.n_outputs_ == 2 and clf.out_activation_ == "softmax"
    assert clf.score(X, y) > 0.95
    with pytest.raises(HandgradError, match="multilabel"):
        small(loss="softmax_bce").fit(X[:50], np.column_stack([y[:50], 1 - y[:50]]))


def test_boolean_and_string_labels(blobs):
    X, y = blobs
    for labels in (y == 0, np.array(["a", "b", "c"])[y], np.array(["x", "y", "z"], dtype=object)[y]):
        clf = small(max_iter=20).fit(X, labels)
        predicted = clf.predict(X)
        assert predicted.dtype == SklearnMLP(max_iter=1).fit(X, labels).predict(X).dtype
        assert (predicted == labels).mean() > 0.9


def test_feature_names_come_from_a_dataframe(blobs):
    pd = pytest.importorskip("pandas")
    X, y = blobs
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    clf = small(max_iter=5).fit(frame, y)
    np.testing.assert_array_equal(clf.feature_names_in_, ["a", "b", "c", "d"])
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(X)


# -- multilabel ------------------------------------------------------------------------------

def test_multilabel_indicator_targets_retrace_scikit_learn():
    X, Y = make_multilabel_classification(n_samples=120, n_features=8, n_classes=4, random_state=0)
    X = StandardScaler().fit_transform(X)
    params = dict(hidden_layer_sizes=(16,), max_iter=15, random_state=0)
    ours = MLPClassifier(**params).fit(X, Y)
    theirs = SklearnMLP(**params).fit(X, Y)
    assert_same_run(ours, theirs)
    assert ours.out_activation_ == "logistic" and ours.n_outputs_ == 4
    np.testing.assert_array_equal(ours.classes_, [0, 1, 2, 3])
    predicted = ours.predict(X)
    assert predicted.shape == Y.shape and predicted.dtype == theirs.predict(X).dtype
    np.testing.assert_array_equal(predicted, theirs.predict(X))
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-8)
    assert ours.score(X, Y) == theirs.score(X, Y)


def test_multilabel_early_stopping_scores_subset_accuracy_without_stratifying():
    X, Y = make_multilabel_classification(n_samples=200, n_features=8, n_classes=3, random_state=2)   # random_state=1 takes scikit-learn 7 s to draw
    clf = small(early_stopping=True, max_iter=30).fit(X, Y)
    assert all(0 <= s <= 1 for s in clf.validation_scores_)
    assert len(clf.validation_loss_curve_) == clf.n_iter_


# -- class weights -------------------------------------------------------------------------

@pytest.mark.parametrize("class_weight", ["balanced", {0: 1.0, 1: 3.0, 2: 0.5}, {1: 2.0}])
def test_class_weight_is_exactly_the_matching_sample_weight(blobs, class_weight):
    X, y = blobs
    X, y = X[20:], y[20:]                      # unbalanced classes
    by_class = small(max_iter=10, batch_size=32, class_weight=class_weight).fit(X, y)
    by_sample = small(max_iter=10, batch_size=32).fit(X, y, sample_weight=compute_sample_weight(class_weight, y))
    for a, b in zip(by_class.coefs_ + by_class.intercepts_, by_sample.coefs_ + by_sample.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert by_class.loss_curve_ == by_sample.loss_curve_


def test_class_weight_multiplies_sample_weight_and_checks_its_labels(blobs):
    X, y = blobs
    w = np.linspace(0.5, 2.0, len(y))
    both = small(max_iter=5, class_weight={0: 2.0}).fit(X, y, sample_weight=w)
    product = small(max_iter=5).fit(X, y, sample_weight=w * np.where(y == 0, 2.0, 1.0))
    np.testing.assert_array_equal(both.coefs_[0], product.coefs_[0])
    with pytest.raises(DataError, match="not classes of y"):
        small(class_weight={7: 1.0}).fit(X, y)
    with pytest.raises(DataError, match="partial_fit"):
        small(class_weight="balanced").partial_fit(X, y, classes=[0, 1, 2])


# -- stopping, schedules, early stopping ------------------------------------------------------

@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_tol_and_n_iter_no_change_stop_where_scikit_learn_stops(blobs, solver):
    X, y = blobs
    params = dict(hidden_layer_sizes=(8,), solver=solver, tol=100.0, n_iter_no_change=4, max_iter=50, random_state=0)
    ours = MLPClassifier(**params).fit(X, y)
    theirs = SklearnMLP(**params).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 6   # the first epoch sets best_loss_; then 4 + 1 without progress


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
    assert len(scores) == len(stopped.validation_loss_curve_) == stopped.n_iter_ < 60
    assert stopped.best_validation_score_ == max(scores) and stopped.best_loss_ is None
    best_epoch = int(np.argmax(scores))
    assert best_epoch < stopped.n_iter_ - 1          # it trained past the best epoch, then went back
    truncated = small(**{**params, "max_iter": best_epoch + 1}).fit(X, y)
    for a, b in zip(stopped.coefs_, truncated.coefs_):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_split_is_stratified_and_reports_scikit_learns_message(blobs):
    X, y = blobs
    y = y.copy()
    y[0] = 3                                     # a class with one member cannot be split
    with pytest.raises(DataError, match="The least populated class.* in y ha.* only 1 member"):
        small(early_stopping=True).fit(X, y)
    with pytest.raises(DataError, match="test_size = 1 should be greater or equal to the number of classes"):
        small(early_stopping=True, validation_fraction=0.01).fit(X[:60], y[:60] % 2)


# -- partial_fit, warm_start, pickling -------------------------------------------------------

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
    with pytest.raises(DataError, match="not in `self.classes_`"):
        clf.partial_fit(X, y)
    with pytest.raises(DataError, match="is not the same as on last call"):
        clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])
    with pytest.raises(HandgradError, match="early_stopping"):
        small(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])


def test_partial_fit_with_a_subset_of_classes_keeps_all_outputs(blobs):
    X, y = blobs
    clf = small().partial_fit(X[y == 0], y[y == 0], classes=[0, 1, 2])
    assert clf.predict_proba(X).shape == (len(X), 3)


def test_warm_start_continues_and_starts_afresh_when_the_network_changes(blobs):
    X, y = blobs
    clf = small(max_iter=5, warm_start=True).fit(X, y)
    first = clf.loss_curve_[:]
    clf.fit(X, y)
    assert clf.loss_curve_[:5] == first and len(clf.loss_curve_) == 10
    assert clf.loss_curve_[5] < first[0]
    clf.set_params(hidden_layer_sizes=(4,)).fit(X, y)
    assert [W.shape for W in clf.coefs_] == [(4, 4), (4, 3)] and len(clf.loss_curve_) == 5
    fresh = small(max_iter=5, hidden_layer_sizes=(4,)).fit(X, y)
    np.testing.assert_array_equal(clf.coefs_[0], fresh.coefs_[0])
    with pytest.raises(DataError, match="warm_start can only be used where `y` has the same classes"):
        clf.fit(X[y < 2], y[y < 2])


def test_coefs_are_the_networks_own_arrays_and_assignments_are_read_back(blobs):
    X, y = blobs
    clf = small(max_iter=5).fit(X, y)
    before = clf.predict_proba(X)
    clf.coefs_[-1] *= 0                          # in place: the network sees it at once
    clf.intercepts_[-1] = np.array([5.0, 0.0, 0.0])   # a new array: read back before predicting
    np.testing.assert_allclose(clf.predict_proba(X)[:, 0], np.exp(5) / (np.exp(5) + 2))
    assert not np.allclose(before, clf.predict_proba(X))


def test_pickled_estimator_predicts_and_trains_on_identically(blobs):
    X, y = blobs
    clf = small(max_iter=5).fit(X, y)
    copy = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))
    clf.partial_fit(X, y)
    copy.partial_fit(X, y)
    for a, b in zip(clf.coefs_, copy.coefs_):
        np.testing.assert_array_equal(a, b)
    copy.coefs_[0][0, 0] = 123.0                # still the network's own array after unpickling
    assert copy._net.layers[0].W[0, 0] == 123.0


def test_verbose_prints_the_loss_of_each_epoch(blobs, capsys):
    X, y = blobs
    clf = small(max_iter=3, verbose=True).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"Iteration {i + 1}, loss = {clf.loss_curve_[i]:.8f}" for i in range(3)]


# -- dropout and batch normalisation ---------------------------------------------------------

def test_dropout_and_batch_norm_train_and_predict_deterministically(digits_split):
    X, X_test, y, y_test = digits_split
    clf = small(hidden_layer_sizes=(64,), dropout=0.2, batch_norm=True, max_iter=15).fit(X, y)
    kinds = [type(layer).__name__ for layer in clf._net.layers]
    assert kinds == ["Dense", "BatchNorm", "ReLU", "Dropout", "Dense"]
    assert not clf._net.training
    np.testing.assert_array_equal(clf.predict_proba(X_test), clf.predict_proba(X_test))
    assert clf.score(X_test, y_test) > 0.9
    again = small(hidden_layer_sizes=(64,), dropout=0.2, batch_norm=True, max_iter=15).fit(X, y)
    np.testing.assert_array_equal(again.coefs_[0], clf.coefs_[0])      # the masks come from random_state
    with pytest.raises(HandgradError, match="dropout needs a stochastic solver"):
        small(solver="lbfgs", dropout=0.1).fit(X, y)


def test_batch_norm_works_with_lbfgs(iris):
    X, y = iris
    clf = MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", batch_norm=True, max_iter=50,
                        random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.9


# -- user mistakes -----------------------------------------------------------------------------

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
    with pytest.warns(UserWarning, match="larger than sample size"):
        small(batch_size=1000, max_iter=1).fit(X, y)
    with pytest.raises(HandgradError, match="hidden_layer_sizes must be > 0"):
        small(hidden_layer_sizes=(4, 0)).fit(X, y)


# -- scikit-learn's tools -----------------------------------------------------------------------

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


def test_cross_val_score_and_a_two_process_grid_search(digits_split):
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
    grid = {"hidden_layer_sizes": [(2,), (32,)], "solver": ["adam", "lbfgs"]}
    search = GridSearchCV(small(max_iter=20), grid, cv=3, n_jobs=2).fit(X, y)
    assert search.best_params_["hidden_layer_sizes"] == (32,)   # 2 hidden units cannot separate 10 digits
    assert search.best_estimator_.score(X, y) > 0.9


def test_the_handgrad_package_offers_both_estimators_lazily():
    assert hg.MLPClassifier is MLPClassifier
    assert hg.MLPRegressor.__name__ == "MLPRegressor"


# -- accuracy against scikit-learn's MLPClassifier, 5 seeds -------------------------------------

ACCURACY_CASES = {"iris": (load_iris, 100), "wine": (load_wine, 100), "breast_cancer": (load_breast_cancer, 60),
                  "digits": (load_digits, 20)}


@pytest.mark.parametrize("name", sorted(ACCURACY_CASES))
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_accuracy_equals_scikit_learns_over_five_seeds(name, solver):
    """Default parameters, same split and scaling, seeds 0–4: the same test accuracy, seed by seed.

    (Fewer epochs than the defaults keep the test quick; benchmarks/sklearn_compare.py runs the defaults.)
    """
    load, max_iter = ACCURACY_CASES[name]
    X, y = load(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    ours, theirs = [], []
    for seed in range(count(ci=5, dev=2)):           # the quick profile compares seeds 0-1
        for cls, scores in ((MLPClassifier, ours), (SklearnMLP, theirs)):
            pipe = make_pipeline(StandardScaler(), cls(solver=solver, max_iter=max_iter, random_state=seed))
            scores.append(pipe.fit(X_train, y_train).score(X_test, y_test))
    assert ours == pytest.approx(theirs, abs=1.5 / len(y_test)), (ours, theirs)    # at most one sample apart


def test_a_user_defined_loss_is_an_estimator_option(blobs):
    """A Loss subclass registers itself; the classifier offers it, and refuses weights it cannot take."""
    class HalfCrossEntropy(hg.Loss):
        """Half the cross-entropy: value and gradient of hg.SoftmaxCrossEntropy, halved."""

        def __init__(self, reduction="mean"):
            super().__init__(reduction)
            self._inner = hg.SoftmaxCrossEntropy(reduction)

        def forward(self, Z, y):
            return 0.5 * self._inner.forward(Z, y)

        def backward(self, out=None):
            return 0.5 * self._inner.backward()

    X, y = blobs
    clf = small(loss="half_cross_entropy", max_iter=20).fit(X, y)
    assert clf.score(X, y) > 0.9 and clf.out_activation_ == "softmax"
    with pytest.raises(HandgradError, match="takes no sample_weight"):
        small(loss="half_cross_entropy").fit(X, y, sample_weight=np.ones(len(y)))
