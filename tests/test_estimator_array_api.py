"""MLPClassifier and MLPRegressor under scikit-learn's array API dispatch.

With ``sklearn.config_context(array_api_dispatch=True)`` the estimators fit
and predict on PyTorch tensors and array-api-strict arrays (its CPU device
and the simulated "device1"), return arrays of the input's namespace and
device, and end where the NumPy fit ends, to 1e-6 in float64.  Without
dispatch they do what scikit-learn does with such input: read it as NumPy.
(scikit-learn's own checks of the same, ``check_array_api_input`` and its
kin, run in ``test_estimator_sklearn_checks.py``.)
"""

import pickle

import numpy as np
import pytest
import sklearn
from sklearn.datasets import make_classification, make_regression

from handgrad.arrays import NUMPY, ops_for, to_numpy
from handgrad.estimators import MLPClassifier, MLPRegressor

xs = pytest.importorskip("array_api_strict")
torch = pytest.importorskip("torch")
pytest.importorskip("array_api_compat")

pytestmark = [pytest.mark.usefixtures("one_blas_thread"),
              pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")]

RTOL = 1e-6

NAMESPACES = {
    "torch-cpu": lambda a: torch.asarray(a),
    "strict-cpu": lambda a: xs.asarray(a, device=xs.Device("CPU_DEVICE")),
    "strict-device1": lambda a: xs.asarray(a, device=xs.Device("device1")),
}


@pytest.fixture(params=list(NAMESPACES))
def to_namespace(request):
    """Turns a NumPy array into one namespace's array on one device."""
    return NAMESPACES[request.param]


def dispatch():
    return sklearn.config_context(array_api_dispatch=True)


def _classification(n_classes=3):
    X, y = make_classification(n_samples=80, n_features=6, n_informative=4, n_classes=n_classes, random_state=0)
    return X, y


def _regression(n_targets=1):
    X, y = make_regression(n_samples=80, n_features=6, n_targets=n_targets, noise=0.1, random_state=0)
    return X, y / 100


ESTIMATORS = {
    "classifier-adam": (lambda: MLPClassifier((8,), max_iter=15, random_state=0), _classification),
    "classifier-lbfgs": (lambda: MLPClassifier((8,), solver="lbfgs", max_iter=15, random_state=0), _classification),
    "classifier-sgd-binary": (lambda: MLPClassifier((8,), solver="sgd", learning_rate="invscaling", max_iter=15,
                                                    random_state=0), lambda: _classification(2)),
    "classifier-early-stopping-dropout": (lambda: MLPClassifier((8,), early_stopping=True, dropout=0.2, max_iter=15,
                                                                random_state=0, n_iter_no_change=3), _classification),
    "regressor-adam-batch-norm": (lambda: MLPRegressor(hidden_layer_sizes=(8,), batch_norm=True, max_iter=15,
                                                       random_state=0), _regression),
    "regressor-lbfgs-two-targets": (lambda: MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=15,
                                                         random_state=0), lambda: _regression(2)),
}


def assert_same_fit(moved, expected):
    for got, wanted in zip(moved.coefs_ + moved.intercepts_, expected.coefs_ + expected.intercepts_):
        np.testing.assert_allclose(to_numpy(got), wanted, rtol=RTOL, atol=RTOL * np.abs(wanted).max())
    assert moved.n_iter_ == expected.n_iter_
    np.testing.assert_allclose(moved.loss_curve_, expected.loss_curve_, rtol=RTOL)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_a_fit_under_dispatch_equals_the_numpy_fit_and_answers_in_the_inputs_namespace(to_namespace, name):
    make, data = ESTIMATORS[name]
    X, y = data()
    expected = make().fit(X, y)
    X_moved = to_namespace(X)
    with dispatch():
        estimator = make().fit(X_moved, to_namespace(y))
        predicted = estimator.predict(X_moved)
        score = estimator.score(X_moved, to_namespace(y))
    assert_same_fit(estimator, expected)
    assert ops_for(estimator.coefs_[0]) is ops_for(X_moved)
    assert ops_for(predicted) is ops_for(X_moved)
    np.testing.assert_allclose(to_numpy(predicted), expected.predict(X), rtol=RTOL, atol=RTOL)
    assert isinstance(score, float) and score == pytest.approx(expected.score(X, y), abs=RTOL)
    if isinstance(estimator, MLPClassifier):
        assert isinstance(estimator.classes_, np.ndarray)             # labels are encoded on the host
        with dispatch():
            proba = estimator.predict_proba(X_moved)
        assert ops_for(proba) is ops_for(X_moved)
        np.testing.assert_allclose(to_numpy(proba), expected.predict_proba(X), rtol=RTOL, atol=RTOL)


def test_partial_fit_and_sample_weights_under_dispatch(to_namespace):
    X, y = _classification()
    weights = np.linspace(0.5, 2.0, len(y))
    expected = MLPClassifier((8,), random_state=0)
    estimator = MLPClassifier((8,), random_state=0)
    for _ in range(3):
        expected.partial_fit(X, y, classes=[0, 1, 2], sample_weight=weights)
        with dispatch():
            estimator.partial_fit(to_namespace(X), to_namespace(y), classes=to_namespace(np.arange(3)),
                                  sample_weight=to_namespace(weights))
    assert_same_fit(estimator, expected)


def test_string_labels_come_back_as_numpy(to_namespace):
    X, y = _classification()
    names = np.array(["cat", "dog", "emu"])[y]
    with dispatch():
        estimator = MLPClassifier((8,), max_iter=5, random_state=0).fit(to_namespace(X), names)
        predicted = estimator.predict(to_namespace(X))
    assert isinstance(predicted, np.ndarray) and set(predicted) <= set(names)


def test_without_dispatch_torch_input_is_read_as_numpy():
    X, y = _classification()
    estimator = MLPClassifier((8,), max_iter=5, random_state=0).fit(torch.asarray(X), torch.asarray(y))
    assert estimator._net.ops is NUMPY and isinstance(estimator.coefs_[0], np.ndarray)
    assert isinstance(estimator.predict(torch.asarray(X)), np.ndarray)


def test_a_fit_without_dispatch_after_one_with_it_brings_the_network_back(to_namespace):
    X, y = _classification()
    estimator = MLPClassifier((8,), max_iter=5, random_state=0, warm_start=True)
    with dispatch():
        estimator.fit(to_namespace(X), to_namespace(y))
    estimator.fit(X, y)
    assert estimator._net.ops is NUMPY and isinstance(estimator.coefs_[0], np.ndarray)


def test_another_namespace_after_fit_is_refused_naming_the_method(to_namespace):
    X, y = _classification()
    with dispatch():
        estimator = MLPClassifier((8,), max_iter=5, random_state=0).fit(to_namespace(X), to_namespace(y))
        with pytest.raises(ValueError, match=r"MLPClassifier.predict_proba\(\) must use the same namespace"):
            estimator.predict_proba(X)


def test_move_estimator_to_moves_the_whole_network():
    from sklearn.utils._array_api import move_estimator_to

    X, y = _classification()
    estimator = MLPClassifier((8,), max_iter=5, random_state=0).fit(X, y)
    with dispatch():
        moved = move_estimator_to(estimator, ops_for(torch).xp, "cpu")
        proba = moved.predict_proba(torch.asarray(X))
    assert isinstance(proba, torch.Tensor) and moved.coefs_[0] is moved._net.layers[0].W
    np.testing.assert_allclose(proba.numpy(), estimator.predict_proba(X), rtol=1e-12)
    assert estimator._net.ops is NUMPY                                  # the original stays where it was


def test_pickles_and_model_files_of_an_estimator_fitted_on_torch_hold_numpy_arrays(tmp_path):
    import handgrad as hg

    X, y = _classification()
    with dispatch():
        estimator = MLPClassifier((8,), max_iter=5, random_state=0).fit(torch.asarray(X), torch.asarray(y))
    restored = pickle.loads(pickle.dumps(estimator))
    assert isinstance(restored.coefs_[0], np.ndarray)
    hg.save(estimator, tmp_path / "estimator.npz")
    loaded = hg.load(tmp_path / "estimator.npz")
    assert isinstance(loaded.coefs_[0], np.ndarray)
    np.testing.assert_allclose(loaded.predict_proba(X), restored.predict_proba(X), rtol=1e-12)
    with dispatch():
        np.testing.assert_allclose(restored.predict_proba(X), estimator.predict_proba(torch.asarray(X)).numpy(),
                                   rtol=1e-12)
