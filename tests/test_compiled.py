"""The compiled kernels (``handgrad._kernels``, C in ``csrc/``) against the NumPy code each one stands for.

The NumPy code in handgrad.nn and handgrad.optim is the reference.  Each
kernel is run beside it, for float32 and float64, on shapes that reach every
branch of the C code: no rows, one row, one column (which NumPy sums
pairwise), and widths that are not a multiple of any vector width.  Where
the two do the same IEEE operations in the same order the results must be
bit for bit equal; where the kernel calls a C-library function (exp, log,
tanh, expm1, log1p, erfc) that NumPy or SciPy computes its own way, the
bound each test states is the one the kernel is documented to meet
(handgrad._compiled).

The last tests cover the policy (``compiled=`` and ``HANDGRAD_NO_COMPILED``)
and the install without a C compiler, which must succeed and train with
NumPy.
"""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import handgrad as hg
from handgrad import _compiled
from support import PROFILE, ci_only

ROOT = Path(__file__).resolve().parents[1]
DTYPES = [np.float32, np.float64]
# (rows, columns): none, one, a single column (pairwise sums of under 8, up to 128 and over 128 entries), and
# widths that no vector width divides.
SHAPES = [(0, 5), (1, 1), (1, 7), (5, 1), (9, 1), (200, 1), (3, 17), (130, 37)]


def _kernels_module():
    try:
        from handgrad import _kernels
    except ImportError:
        if PROFILE == "ci":
            pytest.fail("handgrad._kernels is not built: CI installs with a C compiler, so the build failed")
        pytest.skip("handgrad._kernels is not built here (installed without a C compiler)")
    return _kernels


@pytest.fixture(scope="module")
def kernels():
    """The extension itself, whatever HANDGRAD_NO_COMPILED says: these tests check the kernels, not the policy."""
    return _kernels_module()


@pytest.fixture
def compiled_switch(monkeypatch):
    """A process in which the kernels have not been loaded yet, and neither switch is set."""
    for name in _compiled.SWITCHES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_compiled, "_kernels", _compiled._UNLOADED)


def within_ulps(actual, expected, ulps):
    """Each entry within ``ulps`` units in the last place of the larger of the two; NaNs in the same places."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(actual), nan)
    a, e = actual[~nan], expected[~nan]
    same = a == e                                   # infinities of one sign included
    spacing = np.spacing(np.maximum(np.abs(a), np.abs(e)))
    with np.errstate(invalid="ignore"):             # inf − inf where same
        worst = np.max(np.where(same, 0, np.abs(a - e) / spacing), initial=0)
    assert worst <= ulps, f"{worst:.1f} ulps apart, allowed {ulps}"


def _activations():
    return [hg.Identity(), hg.Sigmoid(), hg.Tanh(), hg.ReLU(), hg.LeakyReLU(0.01), hg.LeakyReLU(3.0), hg.ELU(0.7),
            hg.Softplus(), hg.GELU()]


def _ids(pieces):
    return [f"{type(p).__name__}({next(iter(p.config().values()), '')})" if len(p.config()) > 1
            else type(p).__name__ for p in pieces]


# Forward agreement, in ulps: the C library's tanh, exp (sigmoid, softplus) and expm1 (ELU) against NumPy's
# SIMD ones, each a few ulps from the exact value; 0 where no such function is involved.  GELU's erfc is SciPy's
# in NumPy: float32 evaluates it in double and rounds, so the two agree; in float64 SciPy's erfc and the C
# library's differ by up to ~1e-14 relative, and far in the negative tail (z < −20, where z·Φ(z) < 1e-88) the
# rounding of −z/√2 alone moves either by 1e-13: a relative bound, below.
FORWARD_ULPS = {"Identity": 0, "ReLU": 0, "LeakyReLU": 0, "Sigmoid": 4, "Tanh": 4, "ELU": 4, "Softplus": 4,
                "GELU": 2}
GELU_FLOAT64_RTOL = 2e-13


def _pre_activations(rng, n, k, dtype):
    Z = 4 * rng.standard_normal((n, k))
    if Z.size >= 8:                  # the corners: both zeros, the tails, far tails
        Z.flat[:8] = [0.0, -0.0, 30.0, -30.0, 90.0, -90.0, 1e4, -1e4]
    return Z.astype(dtype), rng.standard_normal(k).astype(dtype)


def _forward_pair(kernels, act, Z, b, in_place):
    """(reference A, kernel A, kernel Φ or None) for pre-activation Z + b."""
    kind, param = _compiled.activation_kind(act)
    gelu = isinstance(act, hg.GELU)
    Z_ref = Z.copy()
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):     # GELU(−inf) = −inf · 0 is NaN in both
        A_ref = _compiled.numpy_bias_activation(act, Z_ref, b, Z_ref if in_place else np.empty_like(Z))
    Z_k = Z.copy()
    A_k = Z_k if in_place else np.empty_like(Z)
    Phi = np.empty_like(Z) if gelu else None
    kernels.bias_activation(Z_k, b, A_k, kind, param, Phi)
    if not in_place:
        np.testing.assert_array_equal(Z_k, Z_ref)       # Z keeps Z + b, exactly as Dense's out += b leaves it
    if gelu:
        within_ulps(Phi, act._Phi, 2 if Z.dtype == np.float32 else 1000)
    return A_ref, A_k


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("act", _activations(), ids=_ids(_activations()))
def test_bias_activation_equals_the_dense_bias_add_and_the_activation_forward(kernels, act, shape, dtype, rng):
    Z, b = _pre_activations(rng, *shape, dtype)
    for in_place in ((False,) if isinstance(act, hg.GELU) else (True, False)):
        A_ref, A_k = _forward_pair(kernels, act, Z, b, in_place)
        if isinstance(act, hg.GELU) and dtype == np.float64:
            np.testing.assert_allclose(A_k, A_ref, rtol=GELU_FLOAT64_RTOL, atol=0)
        else:
            within_ulps(A_k, A_ref, FORWARD_ULPS[type(act).__name__])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", _activations(), ids=_ids(_activations()))
def test_bias_activation_propagates_nan_and_infinity_as_numpy_does(kernels, act, dtype):
    Z = np.array([[np.nan, np.inf, -np.inf, 0.0, 1.0]], dtype=dtype)
    b = np.zeros(5, dtype=dtype)
    A_ref, A_k = _forward_pair(kernels, act, Z, b, in_place=False)
    within_ulps(A_k, A_ref, FORWARD_ULPS[type(act).__name__])


def _backward_bound(act, G, dtype):
    """Per entry: how far the kernel's G ⊙ act′ may be from NumPy's, and the bound for the bias gradient."""
    eps = np.finfo(dtype).eps
    if isinstance(act, hg.Softplus):                    # expm1(−A): the C library's against NumPy's
        scale = 4 * eps * np.abs(np.expm1(-act._A) * G)
    elif isinstance(act, hg.GELU):                      # e^{−z²/2}: the C library's exp against NumPy's
        Z, Phi = act._Z, act._Phi
        with np.errstate(over="ignore", under="ignore"):
            scale = 4 * eps * (np.abs(Z * np.exp(-0.5 * Z * Z)) + Phi) * np.abs(G)
    else:
        return None, None
    rows = max(G.shape[0], 1)
    return scale, (rows + 4) * np.sum(scale, axis=0) + rows * eps * np.sum(np.abs(G), axis=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("act", _activations(), ids=_ids(_activations()))
def test_activation_gradient_bias_equals_the_backward_and_the_dense_bias_gradient(kernels, act, shape, dtype, rng):
    """Both read the same forward state (the NumPy forward's), so only the backward's own arithmetic is compared.

    Bit for bit (db as np.sum(axis=0) adds, pairwise for one column) unless the backward calls exp or expm1.
    """
    Z, b = _pre_activations(rng, *shape, dtype)
    with np.errstate(over="ignore", under="ignore"):
        _compiled.numpy_bias_activation(act, Z, b, np.empty_like(Z) if isinstance(act, hg.GELU) else Z)
    G = rng.standard_normal(shape).astype(dtype)
    kind, param = _compiled.activation_kind(act)
    gelu = isinstance(act, hg.GELU)
    saved = act._Z if gelu else getattr(act, "_A", Z)    # Identity keeps nothing: its output is Z
    out_ref, db_ref = np.empty_like(G), np.empty(shape[1], dtype=dtype)
    with np.errstate(over="ignore", under="ignore"):
        _compiled.numpy_activation_gradient_bias(act, G, out_ref, db_ref)
    out_k, db_k = np.full_like(G, np.nan), np.full(shape[1], np.nan, dtype=dtype)
    kernels.activation_gradient_bias(G, saved, out_k, db_k, kind, param, act._Phi if gelu else None)
    entry_bound, db_bound = _backward_bound(act, G, dtype)
    if entry_bound is None:
        np.testing.assert_array_equal(out_k, out_ref)
        np.testing.assert_array_equal(db_k, db_ref)
    else:
        assert np.all(np.abs(out_k - out_ref) <= entry_bound)
        assert np.all(np.abs(db_k - db_ref) <= db_bound)


@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_gradient_bias_may_write_over_its_gradient(kernels, dtype, rng):
    A = np.maximum(rng.standard_normal((6, 9)), 0).astype(dtype)
    G = rng.standard_normal((6, 9)).astype(dtype)
    out, db = np.empty_like(G), np.empty(9, dtype=dtype)
    kernels.activation_gradient_bias(G, A, out, db, _compiled.ACTIVATIONS["ReLU"][0], 0.0, None)
    db_again = np.empty_like(db)
    kernels.activation_gradient_bias(G, A, G, db_again, _compiled.ACTIVATIONS["ReLU"][0], 0.0, None)
    np.testing.assert_array_equal(G, out)
    np.testing.assert_array_equal(db_again, db)


# -- softmax cross-entropy -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 10), (7, 3), (33, 9), (130, 10), (9000, 4)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_softmax_cross_entropy_equals_the_loss_forward_and_backward(kernels, shape, dtype, reduction, rng):
    """The value to a few float32 ulps (bit for bit where exp and log agree, as for float64 here); each entry of
    the gradient κ(P − Y) within a few ulps of κ (P − 1 cancels near P = 1, so the bound is absolute)."""
    n, k = shape
    Z = (3 * rng.standard_normal(shape)).astype(dtype)
    Z[0, 0] = 80.0                                           # a confident row: P near 1
    y = rng.integers(0, k, n)
    loss = hg.SoftmaxCrossEntropy(reduction=reduction)
    G_ref = np.empty_like(Z)
    value_ref = _compiled.numpy_softmax_cross_entropy(loss, Z, y, G_ref)
    G_k = np.empty_like(Z)
    scale = 1.0 / n if reduction == "mean" else 1.0
    value_k = kernels.softmax_cross_entropy(Z, y, G_k, scale)
    eps = float(np.finfo(dtype).eps)          # a Python float: pytest 9.2 refuses a NumPy scalar as a tolerance
    assert value_k == pytest.approx(value_ref, rel=8 * eps, abs=8 * eps * scale)
    np.testing.assert_allclose(G_k, G_ref, rtol=0, atol=8 * eps * scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_may_write_its_gradient_over_the_logits(kernels, dtype, rng):
    Z = rng.standard_normal((5, 4)).astype(dtype)
    y = rng.integers(0, 4, 5)
    G = np.empty_like(Z)
    value = kernels.softmax_cross_entropy(Z, y, G, 0.2)
    assert kernels.softmax_cross_entropy(Z, y, Z, 0.2) == value
    np.testing.assert_array_equal(Z, G)


def test_softmax_cross_entropy_stays_finite_for_logits_of_ten_thousand(kernels):
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], dtype=np.float32)
    G = np.empty_like(Z)
    value = kernels.softmax_cross_entropy(Z, np.array([0, 0]), G, 0.5)
    assert value == pytest.approx(1e4)                       # the second row's −log p = 2e4, halved
    assert np.isfinite(G).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_counts_the_rows_argmax_gets_right(kernels, dtype, rng):
    """The count (the training loop's accuracy) is np.argmax's: the first of tied maxima, the first NaN."""
    Z = rng.integers(-2, 3, (300, 4)).astype(dtype)          # many ties
    Z[:5] = [[np.nan, 1, 1, 0], [0, np.nan, 2, np.nan], [-0.0, 0.0, -1, -1], [0.0, -0.0, -1, -1], [1, 1, 1, 1]]
    y = rng.integers(0, 4, 300)
    y[:5] = [0, 1, 1, 0, 0]
    G = np.empty_like(Z)
    plain = kernels.softmax_cross_entropy(Z[5:], y[5:], G[5:], 0.1)
    value, correct = kernels.softmax_cross_entropy(Z, y, G, 0.1, True)
    assert correct == np.count_nonzero(Z.argmax(axis=1) == y)
    assert kernels.softmax_cross_entropy(Z[5:], y[5:], G[5:], 0.1, True)[0] == plain


def test_softmax_cross_entropy_refuses_a_label_out_of_range(kernels):
    Z = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"label y\[1\] = 3 is outside 0..2"):
        kernels.softmax_cross_entropy(Z, np.array([0, 3]), np.empty_like(Z), 0.5)


# -- the gather --------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["float32 rows", "float64 rows", "int64 labels", "float targets"])
def test_take_rows_equals_np_take(kernels, source, rng):
    data = {"float32 rows": rng.standard_normal((50, 13)).astype(np.float32),
            "float64 rows": rng.standard_normal((50, 13)),
            "int64 labels": rng.integers(0, 10, 50),
            "float targets": rng.standard_normal((50, 3))}[source]
    for count in (0, 1, 37):
        idx = rng.integers(0, 50, count)
        out, expected = np.empty((count, *data.shape[1:]), data.dtype), np.empty((count, *data.shape[1:]), data.dtype)
        kernels.take_rows(data, idx, out)
        _compiled.numpy_take_rows(data, idx, expected)
        np.testing.assert_array_equal(out, expected)


def test_take_rows_refuses_an_index_out_of_bounds(kernels):
    with pytest.raises(IndexError, match="index 5 is out of bounds for 5 rows"):
        kernels.take_rows(np.zeros((5, 2)), np.array([0, 5]), np.empty((2, 2)))


# -- the optimizer updates -----------------------------------------------------------------------

UPDATES = {
    "adam": lambda: hg.Adam(3e-3),
    "adam-eps-on-v": lambda: hg.Adam(3e-3, eps=1e-3, eps_on="v"),
    "sgd": lambda: hg.SGD(0.05),
    "momentum": lambda: hg.SGD(0.05, momentum=0.9),
    "nesterov": lambda: hg.SGD(0.05, momentum=0.9, nesterov=True),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(UPDATES))
@pytest.mark.parametrize("size, n_decayed", [(0, 0), (1, 1), (7, 3), (1001, 0), (1001, 1001), (4099, 2050)])
@pytest.mark.parametrize("l2", [0.0, 0.03])
def test_compiled_updates_equal_the_numpy_updates_bit_for_bit(name, size, n_decayed, l2, dtype, rng, kernels,
                                                              monkeypatch):
    """``step_flat`` with the kernels against ``add_l2_gradient`` + ``step``, over several steps; sizes above 128
    also run split over two threads (the split point must change nothing)."""
    monkeypatch.setattr(_compiled, "TWO_THREADS_FROM", 128)
    param = rng.standard_normal(size).astype(dtype)
    grads = [rng.standard_normal(size).astype(dtype) for _ in range(4)]
    compiled, reference = UPDATES[name](), UPDATES[name]()
    assert compiled.prepare(param, compiled=True)
    p_compiled, p_reference = param.copy(), param.copy()
    for g in grads:
        g_compiled, g_reference = g.copy(), g.copy()
        compiled.step_flat(p_compiled, g_compiled, l2, n_decayed)
        hg.nn.objective.add_l2_gradient(p_reference, g_reference, n_decayed, l2)
        reference.step([p_reference], [g_reference])
        np.testing.assert_array_equal(g_compiled, g_reference)       # the decay term is left in the gradient
    np.testing.assert_array_equal(p_compiled, p_reference)
    for ours, theirs in zip(compiled.state, reference.state):
        for key in reference.state_names:
            np.testing.assert_array_equal(ours[key], theirs[key])


@pytest.mark.parametrize("threads", [1, 2])
def test_the_adam_kernel_gives_the_same_bits_on_one_thread_and_on_two(kernels, threads, rng):
    size = 10_000
    start = [rng.standard_normal(size).astype(np.float32) for _ in range(4)]
    start[3] = np.abs(start[3])
    results = []
    for t in (1, threads):
        p, g, m, v = (a.copy() for a in start)
        for _ in range(3):
            kernels.adam(p, g, m, v, 6000, 1e-4, 0.9, 0.999, 0.1, 0.001, 1e-3, 1e-8, t)
        results.append((p, g, m, v))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_two_thread_updates_work_in_a_forked_child(kernels):
    """The helper thread does not survive fork(): a child must start its own, not wait for its parent's."""
    p, g, m, v = (np.ones(4096, dtype=np.float32) for _ in range(4))
    kernels.adam(p, g, m, v, 0, 0.0, 0.9, 0.999, 0.1, 0.001, 1e-3, 1e-8, 2)      # the parent's helper starts
    pid = os.fork()
    if pid == 0:                                                                    # the child
        try:
            kernels.adam(p, g, m, v, 0, 0.0, 0.9, 0.999, 0.1, 0.001, 1e-3, 1e-8, 2)
            os._exit(0)
        except BaseException:
            os._exit(1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung in a two-thread update")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", ["adam", "nesterov"])
def test_a_whole_fit_gives_the_same_weights_with_and_without_the_kernels(kernels, dtype, optimizer, rng):
    """The updates, the fused layers and the gather are bit for bit; so is the cross-entropy kernel in float64.
    In float32 its exp and log are the C library's, which may differ from NumPy's SIMD ones in the last bit, so
    there the update alone is checked bit for bit (sample weights keep the loss on its NumPy path) and the
    whole kernel run within rounding (tests/test_compiled_fit.py covers more networks)."""
    X = rng.standard_normal((90, 6)).astype(dtype)
    y = rng.integers(0, 3, 90)
    weights = np.ones(90) if dtype == np.float32 else None
    runs = []
    for compiled in (True, False):
        model = hg.mlp(6, [16, 8], 3, dtype=dtype, seed=2)
        history = hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=UPDATES[optimizer](), epochs=5,
                         batch_size=16, l2=1e-3, seed=0, compiled=compiled, sample_weight=weights)
        runs.append((model.get_weights(), history["train_loss"]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]


# -- the checks at the boundary --------------------------------------------------------------------


def test_the_kernels_refuse_arrays_they_cannot_take(kernels):
    f32 = np.zeros(8, dtype=np.float32)
    with pytest.raises(TypeError, match="g must have the dtype of the other arrays"):
        kernels.adam(f32, np.zeros(8), f32.copy(), f32.copy(), 0, 0.0, 0.9, 0.999, 0.1, 0.001, 1e-3, 1e-8, 1)
    with pytest.raises(ValueError, match="must be C-contiguous"):
        kernels.sgd(np.zeros(16, dtype=np.float32)[::2], f32, None, 0, 0.0, 0.1, 0.0, False, 1)
    with pytest.raises(ValueError, match="n_decayed must lie in 0..8"):
        kernels.sgd(f32, f32.copy(), None, 9, 0.0, 0.1, 0.0, False, 1)
    with pytest.raises(ValueError, match="must be writable"):
        read_only = f32.copy()
        read_only.flags.writeable = False
        kernels.sgd(read_only, f32, None, 0, 0.0, 0.1, 0.0, False, 1)
    Z = np.zeros((3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="b must have 4 entries"):
        kernels.bias_activation(Z, np.zeros(3, dtype=np.float32), Z, 3, 0.0, None)
    with pytest.raises(ValueError, match="unknown activation kind 99"):
        kernels.bias_activation(Z, np.zeros(4, dtype=np.float32), Z, 99, 0.0, None)
    with pytest.raises(ValueError, match="GELU keeps Z for its backward"):
        kernels.bias_activation(Z, np.zeros(4, dtype=np.float32), Z, 7, 0.0, np.empty_like(Z))
    buffer = np.zeros(20, dtype=np.float32)
    with pytest.raises(ValueError, match="A must be Z itself or not overlap it"):
        kernels.bias_activation(buffer[:12].reshape(3, 4), np.zeros(4, dtype=np.float32),
                                buffer[4:16].reshape(3, 4), 3, 0.0, None)


# -- when the kernels are used -------------------------------------------------------------------------


def test_compiled_none_uses_the_kernels_whenever_they_are_built(kernels, compiled_switch):
    assert hg.Adam().prepare(np.zeros(3, dtype=np.float32)) is True
    assert _compiled.loaded()


@pytest.mark.parametrize("switch", _compiled.SWITCHES)
def test_either_environment_variable_switches_the_kernels_off(compiled_switch, monkeypatch, switch):
    monkeypatch.setenv(switch, "1")
    assert hg.Adam().prepare(np.zeros(3, dtype=np.float32)) is False
    with pytest.raises(hg.HandgradError, match=f"compiled=True asks for handgrad's compiled kernels, but {switch} "
                                               "is set; .*pass compiled=None$"):
        hg.Adam().prepare(np.zeros(3, dtype=np.float32), compiled=True)


def test_compiled_false_runs_numpy_and_never_loads_the_kernels(compiled_switch, rng):
    X, y = rng.standard_normal((20, 4)).astype(np.float32), rng.integers(0, 2, 20)
    hg.fit(hg.mlp(4, [5], 2, seed=0), hg.SoftmaxCrossEntropy(), X, y, epochs=2, compiled=False)
    assert _compiled._kernels is _compiled._UNLOADED


def test_compiled_true_without_the_extension_is_refused_in_one_line(compiled_switch, monkeypatch, rng):
    monkeypatch.setattr(_compiled, "_import", lambda: None)            # as an install without a C compiler
    X, y = rng.standard_normal((20, 4)).astype(np.float32), rng.integers(0, 2, 20)
    with pytest.raises(hg.HandgradError) as caught:
        hg.fit(hg.mlp(4, [5], 2, seed=0), hg.SoftmaxCrossEntropy(), X, y, epochs=1, compiled=True)
    assert "\n" not in str(caught.value)
    assert "handgrad was installed without them (no C compiler when it was built)" in str(caught.value)
    hg.fit(hg.mlp(4, [5], 2, seed=0), hg.SoftmaxCrossEntropy(), X, y, epochs=1)     # automatic: NumPy, no error


def test_the_build_records_the_digest_of_the_sources_it_was_built_from(kernels):
    from handgrad._csrc_digest import digest

    sources = Path(_compiled.__file__).resolve().parents[2] / "csrc"
    if not sources.is_dir():
        pytest.skip("an installed handgrad without its csrc/ beside it: nothing to compare the build with")
    assert kernels.SOURCES == digest(sources)


def test_a_build_from_other_sources_is_not_loaded_and_says_how_to_rebuild(compiled_switch, monkeypatch, capsys,
                                                                         tmp_path):
    stale = type(sys)("handgrad._kernels")
    stale.SOURCES, stale.__file__ = "0" * 16, str(tmp_path / "_kernels.so")
    monkeypatch.setitem(sys.modules, "handgrad._kernels", stale)
    monkeypatch.setattr(hg, "_kernels", stale, raising=False)
    monkeypatch.setattr(_compiled, "_stale", None)
    sources = Path(_compiled.__file__).resolve().parents[2] / "csrc"
    if not sources.is_dir():
        pytest.skip("an installed handgrad without its csrc/ beside it: no sources to be stale against")
    assert _compiled.kernels() is None
    assert "built from other sources" in capsys.readouterr().err
    with pytest.raises(hg.HandgradError, match=r"rebuild it with pip install -e \."):
        _compiled.for_run(True)


def test_updates_go_to_two_threads_only_from_the_threshold_and_with_two_cpus(monkeypatch):
    monkeypatch.setattr(_compiled, "_usable_cpus", lambda: 2)
    monkeypatch.setattr(_compiled, "TWO_THREADS_FROM", None)          # as measured so far: one thread always
    assert _compiled.update_threads(10**9) == 1
    monkeypatch.setattr(_compiled, "TWO_THREADS_FROM", 1 << 20)
    assert _compiled.update_threads((1 << 20) - 1) == 1
    assert _compiled.update_threads(1 << 20) == 2
    monkeypatch.setattr(_compiled, "_usable_cpus", lambda: 1)
    assert _compiled.update_threads(10**9) == 1


def test_activation_kind_knows_handgrads_own_activations_only():
    assert _compiled.activation_kind(hg.LeakyReLU(0.2)) == (_compiled.ACTIVATIONS["LeakyReLU"][0], 0.2)
    assert _compiled.activation_kind(hg.ReLU()) == (_compiled.ACTIVATIONS["ReLU"][0], 0.0)

    class Shifted(hg.ReLU):
        pass

    assert _compiled.activation_kind(Shifted()) is None
    assert _compiled.activation_kind(hg.Dense(2, 2)) is None


# -- the install without a C compiler ----------------------------------------------------------------

FALLBACK_CHECK = textwrap.dedent("""
    import numpy as np
    import handgrad as hg
    from handgrad import _compiled
    assert hg.__file__.startswith({prefix!r}), hg.__file__
    assert not _compiled.available()
    try:
        import handgrad._kernels
    except ImportError:
        pass
    else:
        raise AssertionError("handgrad._kernels was built without a compiler?")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, 4)).astype(np.float32), rng.integers(0, 3, 60)
    model = hg.mlp(4, [8], 3, seed=0)
    history = hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, epochs=3, l2=1e-3, seed=0)
    assert np.isfinite(history["train_loss"]).all()
    try:
        hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, epochs=1, compiled=True)
    except hg.HandgradError as error:
        print("refused:", error)
    else:
        raise AssertionError("compiled=True ran without the kernels")
""")


@ci_only
def test_pip_install_without_a_c_compiler_succeeds_and_trains_with_numpy(tmp_path):
    """``pip install`` of a copy of the source, offline, with CC=/bin/false: the install succeeds (the extension
    is optional), the package has no _kernels module, and training runs with NumPy."""
    source = tmp_path / "src-copy"
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name if source.exists() else _mkdir(source) / name)
    shutil.copytree(ROOT / "csrc", source / "csrc")
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__",
                                                                                "*.egg-info"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", *_compiled.SWITCHES)}
    env.update(CC="/bin/false", CXX="/bin/false", PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    # --ignore-installed: the venv sees the outer environment's handgrad, which pip must neither replace nor touch.
    install = subprocess.run([str(python), "-m", "pip", "install", "--verbose", "--no-deps", "--no-build-isolation",
                              "--no-index", "--ignore-installed", str(source)],
                             env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    assert "handgrad: the compiled kernels were not built" in install.stdout + install.stderr
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()
    check = subprocess.run([str(python), "-c", FALLBACK_CHECK.format(prefix=site)], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "refused: compiled=True asks for handgrad's compiled kernels" in check.stdout


def _mkdir(path):
    path.mkdir(parents=True)
    return path
