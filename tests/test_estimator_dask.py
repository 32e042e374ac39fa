"""MLPClassifier and MLPRegressor on a real dask.distributed cluster: incremental training and distributed searches.

One ``LocalCluster`` of two single-threaded worker processes serves the whole
module; the same code runs on a multi-machine cluster by giving ``Client``
the scheduler's address instead (docs/estimator.md, "Scaling out").  It runs
in the CI profile only (tests/support.py).
"""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, train_test_split
from threadpoolctl import threadpool_limits

from handgrad.estimators import MLPClassifier, MLPRegressor
from support import PROFILE

if PROFILE != "ci":     # before importing dask: the quick profile pays for none of it
    pytest.skip("a real dask cluster takes 20 s to start and feed: run with HANDGRAD_TEST_PROFILE=ci",
                allow_module_level=True)

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
dask_ml_wrappers = pytest.importorskip("dask_ml.wrappers")
joblib = pytest.importorskip("joblib")

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N_TRAIN, CHUNK = 1500, 100
CLASSES = np.arange(10)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def digits():
    """Digits scaled to [0, 1], shuffled and stratified: the first N_TRAIN rows train, the rest test."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, train_size=N_TRAIN, random_state=0, stratify=y)
    return np.concatenate([X_train, X_test]), np.concatenate([y_train, y_test])


def incremental_estimator():
    return MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.01, batch_size=20, random_state=0)


def test_incremental_trains_over_the_chunks_of_a_dask_array(client, digits):
    X, y = digits
    X_train = da.from_array(X[:N_TRAIN], chunks=(CHUNK, X.shape[1]))
    y_train = da.from_array(y[:N_TRAIN], chunks=CHUNK)
    assert X_train.numblocks[0] == N_TRAIN // CHUNK
    wrapper = dask_ml_wrappers.Incremental(incremental_estimator(), shuffle_blocks=False, scoring="accuracy")
    with distributed.get_task_stream(client) as tasks:
        for _ in range(3):
            wrapper.partial_fit(X_train, y_train, classes=CLASSES)
    workers = {task["worker"] for task in tasks.data}
    assert workers and workers <= set(client.scheduler_info()["workers"])
    fitted = wrapper.estimator_
    assert fitted.t_ == 3 * N_TRAIN
    X_test = da.from_array(X[N_TRAIN:], chunks=(CHUNK, X.shape[1]))
    assert wrapper.score(X_test, da.from_array(y[N_TRAIN:], chunks=CHUNK)) > 0.9

    # The cluster ran exactly the partial_fit calls a local loop over the same blocks makes.
    local = incremental_estimator()
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(3):
            for start in range(0, N_TRAIN, CHUNK):
                local.partial_fit(X[start:start + CHUNK], y[start:start + CHUNK], classes=CLASSES)
    for ours, theirs in zip(local.coefs_ + local.intercepts_, fitted.coefs_ + fitted.intercepts_):
        np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)


def test_grid_search_runs_on_the_cluster_through_joblib(client, digits):
    X, y = digits
    X, y = X[:600], y[:600]
    grid = {"hidden_layer_sizes": [(2,), (32,)], "alpha": [1e-4, 1.0]}
    estimator = MLPClassifier(learning_rate_init=0.01, max_iter=20, random_state=0)
    with distributed.get_task_stream(client) as tasks, joblib.parallel_backend("dask"):
        search = GridSearchCV(estimator, grid, cv=3).fit(X, y)
    assert any("fit_and_score" in str(task["key"]) for task in tasks.data)
    with threadpool_limits(limits=1, user_api="blas"):
        local = GridSearchCV(estimator, grid, cv=3).fit(X, y)
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"])
    assert search.best_params_ == local.best_params_
    assert search.best_params_["hidden_layer_sizes"] == (32,)
    assert search.best_score_ > 0.8


def regression_data(digits):
    """Digits again, the target being the digit's value scaled to [0, 1]: a regression that the pixels explain."""
    X, y = digits
    return X, y / 9.0


def test_incremental_trains_the_regressor_over_the_chunks(client, digits):
    X, y = regression_data(digits)
    X_train = da.from_array(X[:N_TRAIN], chunks=(CHUNK, X.shape[1]))
    y_train = da.from_array(y[:N_TRAIN], chunks=CHUNK)

    def estimator():
        return MLPRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01, batch_size=20, random_state=0)

    wrapper = dask_ml_wrappers.Incremental(estimator(), shuffle_blocks=False, scoring="r2")
    for _ in range(3):
        wrapper.partial_fit(X_train, y_train)
    assert wrapper.estimator_.t_ == 3 * N_TRAIN
    X_test = da.from_array(X[N_TRAIN:], chunks=(CHUNK, X.shape[1]))
    predicted = wrapper.predict(X_test).compute()          # block by block on the workers
    assert r2_score(y[N_TRAIN:], predicted) > 0.6
    local = estimator()
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(3):
            for start in range(0, N_TRAIN, CHUNK):
                local.partial_fit(X[start:start + CHUNK], y[start:start + CHUNK])
    fitted = wrapper.estimator_
    for ours, theirs in zip(local.coefs_ + local.intercepts_, fitted.coefs_ + fitted.intercepts_):
        np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)


def test_a_regressor_search_over_both_solvers_runs_on_the_cluster(client, digits):
    X, y = regression_data(digits)
    X, y = X[:500], y[:500]
    grid = {"solver": ["adam", "lbfgs"], "alpha": [1e-4, 1.0]}
    estimator = MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=30, random_state=0)
    with distributed.get_task_stream(client) as tasks, joblib.parallel_backend("dask"):
        search = GridSearchCV(estimator, grid, cv=3).fit(X, y)
    assert any("fit_and_score" in str(task["key"]) for task in tasks.data)
    with threadpool_limits(limits=1, user_api="blas"):
        local = GridSearchCV(estimator, grid, cv=3).fit(X, y)
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"],
                               rtol=1e-6)
    assert search.best_score_ > 0.5
