"""Sparse input: the first Dense layer multiplies CSR rows, fit slices minibatches from CSR, nothing is densified."""

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits

import handgrad as hg
from handgrad.estimators import MLPClassifier, MLPRegressor

pytestmark = [pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"), pytest.mark.usefixtures("one_blas_thread")]


def sparse_data(n, d, density, seed, dtype, fmt):
    """A random n × d matrix with about ``density`` n d stored entries, built without SciPy's slow sampler."""
    rng = np.random.default_rng(seed)
    nnz = int(n * d * density)
    rows, cols = rng.integers(0, n, nnz), rng.integers(0, d, nnz)
    return sp.coo_matrix((rng.random(nnz).astype(dtype), (rows, cols)), shape=(n, d)).asformat(fmt)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600] / 16.0, y[:600]


def test_dense_layer_forward_and_backward_agree_with_the_dense_input():
    rng = np.random.default_rng(0)
    X = sp.random(20, 30, density=0.2, format="csr", random_state=0)
    G = rng.standard_normal((20, 5))
    dense, sparse = hg.Dense(30, 5, dtype=np.float64, seed=1), hg.Dense(30, 5, dtype=np.float64, seed=1)
    np.testing.assert_allclose(sparse.forward(X), dense.forward(X.toarray()), rtol=1e-14)
    sparse.backward(G, input_grad=False)
    dense.backward(G, input_grad=False)
    np.testing.assert_allclose(sparse.dW, dense.dW, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(sparse.db, dense.db)


@pytest.mark.parametrize("convert", [sp.csr_matrix, sp.csc_matrix, sp.csr_array, sp.coo_matrix],
                         ids=["csr", "csc", "csr_array", "coo"])
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_sparse_input_trains_the_same_network_as_dense_input(digits, convert, solver):
    X, y = digits
    params = dict(hidden_layer_sizes=(16,), solver=solver, max_iter=5, random_state=0)
    dense = MLPClassifier(**params).fit(X, y)
    sparse = MLPClassifier(**params).fit(convert(X), y)
    for a, b in zip(sparse.coefs_ + sparse.intercepts_, dense.coefs_ + dense.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(sparse.predict_proba(convert(X)), dense.predict_proba(X), rtol=1e-6, atol=1e-9)


def test_sparse_input_for_the_regressor_and_partial_fit(digits):
    X, y = digits
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0)
    reg.partial_fit(sp.csr_matrix(X), y.astype(float))
    twin = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0).partial_fit(X, y.astype(float))
    np.testing.assert_allclose(reg.coefs_[0], twin.coefs_[0], rtol=1e-9, atol=1e-12)


def test_hg_fit_takes_a_sparse_matrix():
    X = sp.random(300, 40, density=0.1, format="csr", random_state=1, dtype=np.float32)
    y = np.asarray(X.sum(axis=1)).ravel() > np.median(np.asarray(X.sum(axis=1)))
    model = hg.mlp(40, [16], 2, seed=0)
    history = hg.fit(model, hg.SoftmaxCrossEntropy(), X, y.astype(int), epochs=30, batch_size=32, seed=0,
                     optimizer=hg.Adam(0.01))
    assert history["train_accuracy"][-1] > 0.9
    assert (model.predict(X) == y).mean() > 0.9


def test_a_large_sparse_matrix_trains_without_ever_being_densified():
    """20,000 × 50,000 at density 1e-4: dense it would be 8 GB (float64); the whole fit stays under 60 MB.

    What it does allocate: the network (400,000 weights), Adam's two moments,
    a gradient per minibatch, and the 20,000 × 2 probabilities.
    """
    n, d = 20_000, 50_000
    X = sparse_data(n, d, 1e-4, 0, np.float64, "csr")
    signal = np.asarray(X[:, :500].sum(axis=1)).ravel()
    y = (signal > 0).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, batch_size=500, random_state=0)
    tracemalloc.start()
    try:
        clf.fit(X, y)
        proba = clf.predict_proba(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    dense_bytes = n * d * 8
    assert peak < 60e6 < dense_bytes / 100, f"peak {peak / 1e6:.1f} MB"
    assert proba.shape == (n, 2) and clf.coefs_[0].shape == (d, 8)


def test_a_large_sparse_matrix_with_lbfgs_stays_sparse():
    """The whole training set in one product, still sparse: dense it would be 4 GB (float32).

    L-BFGS-B itself keeps 10 pairs of correction vectors of the 200,000
    parameters in float64 (32 MB), which is most of the peak.
    """
    n, d = 20_000, 50_000
    X = sparse_data(n, d, 1e-4, 1, np.float32, "csc")
    y = np.random.default_rng(0).integers(0, 3, n)
    clf = MLPClassifier(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=3, random_state=0)
    tracemalloc.start()
    try:
        clf.fit(X, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100e6, f"peak {peak / 1e6:.1f} MB"
    assert clf.coefs_[0].dtype == np.float32
