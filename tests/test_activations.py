"""LeakyReLU, ELU, Softplus and GELU: settings, derivatives, in-place use, extreme inputs.

test_layers.py already checks every registered activation (with its default
settings) against central differences and its forward formula; this file
covers what the defaults do not: other settings, the in-place contract, the
tails, and bad arguments.
"""

import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.special import expit

import handgrad as hg
from handgrad.errors import HandgradError

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
NEW = [hg.LeakyReLU, hg.ELU, hg.Softplus, hg.GELU]

erf = np.vectorize(math.erf)       # libm's erf/erfc, independent of the SciPy functions the library uses
erfc = np.vectorize(math.erfc)


def gaussian_cdf(z):
    return 0.5 * erfc(-z / math.sqrt(2))


# Derivatives written independently of the library (from Z, not from the output).
DERIVATIVES = {
    hg.LeakyReLU: lambda z, s=0.01: np.where(z > 0, 1.0, s),
    hg.ELU: lambda z, a=1.0: np.where(z > 0, 1.0, a * np.exp(z)),
    hg.Softplus: expit,
    hg.GELU: lambda z: gaussian_cdf(z) + z * np.exp(-z * z / 2) / math.sqrt(2 * math.pi),
}


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 5), width=st.integers(1, 5), seed=SEEDS, scale=st.sampled_from([0.1, 1.0, 4.0]),
       slope=st.sampled_from([0.0, 0.01, 0.3, 1.0, 2.5]))
def test_leaky_relu_with_any_slope_matches_central_differences(n, width, seed, scale, slope):
    X = scale * np.random.default_rng(seed).standard_normal((n, width))
    assume(np.abs(X).min() > 1e-4)          # no derivative at the kink
    report = hg.gradcheck(hg.LeakyReLU(slope), X, seed=seed)
    assert report.max_error < 1e-6, str(report)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 5), width=st.integers(1, 5), seed=SEEDS, scale=st.sampled_from([0.1, 1.0, 4.0]),
       alpha=st.sampled_from([0.0, 0.5, 1.0, 3.0]))
def test_elu_with_any_alpha_matches_central_differences(n, width, seed, scale, alpha):
    X = scale * np.random.default_rng(seed).standard_normal((n, width))
    assume(np.abs(X).min() > 1e-4)          # the derivative jumps at 0 unless alpha = 1
    report = hg.gradcheck(hg.ELU(alpha), X, seed=seed)
    assert report.max_error < 1e-6, str(report)


@pytest.mark.parametrize("layer, reference", [
    (hg.LeakyReLU(0.2), lambda z: np.where(z > 0, z, 0.2 * z)),
    (hg.LeakyReLU(1.5), lambda z: np.where(z > 0, z, 1.5 * z)),
    (hg.LeakyReLU(0.0), lambda z: np.maximum(z, 0)),
    (hg.ELU(0.5), lambda z: np.where(z > 0, z, 0.5 * (np.exp(z) - 1))),
], ids=["slope-0.2", "slope-1.5", "slope-0", "alpha-0.5"])
def test_settings_enter_the_forward_formula(layer, reference, rng):
    Z = 3 * rng.standard_normal((6, 5))
    np.testing.assert_allclose(layer.forward(Z), reference(Z), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("cls", NEW, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_is_the_derivative_also_when_forward_overwrote_its_input(cls, dtype, rng):
    """``in_place`` layers get ``out=Z`` from Sequential; their backward must not need Z."""
    Z = (3 * rng.standard_normal((8, 6))).astype(dtype)
    G = rng.standard_normal((8, 6)).astype(dtype)
    expected = G.astype(np.float64) * DERIVATIVES[cls](Z.astype(np.float64))
    layer = cls()
    if cls.in_place:
        buffer = Z.copy()
        assert layer.forward(buffer, out=buffer) is buffer
    else:
        layer.forward(Z)
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(layer.backward(G), expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def test_only_gelu_needs_its_input_for_backward():
    assert [cls.in_place for cls in NEW] == [True, True, True, False]


def test_leaky_relu_takes_the_slope_at_exactly_zero_like_pytorch():
    layer = hg.LeakyReLU(0.1)
    layer.forward(np.array([[-1.0, 0.0, 2.0]]))
    np.testing.assert_array_equal(layer.backward(np.array([[5.0, 5.0, 5.0]])), [[0.5, 0.5, 5.0]])


@pytest.mark.parametrize("cls", NEW, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inputs_of_ten_thousand_and_beyond_give_finite_values_and_no_warnings(cls, dtype):
    big = 1e30 if dtype == np.float32 else 1e300
    Z = np.array([[-big, -1e4, -50.0, -1e-30, 0.0, 1e-30, 50.0, 1e4, big]], dtype=dtype)
    layer = cls()
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        A = layer.forward(Z)
        dZ = layer.backward(np.ones_like(Z))
    assert A.dtype == dtype and dZ.dtype == dtype
    assert np.isfinite(A).all() and np.isfinite(dZ).all()
    assert A[0, -1] == Z[0, -1] and A[0, -2] == Z[0, -2]          # identity far on the right
    assert dZ[0, -1] == 1 and dZ[0, -2] == 1


def test_softplus_keeps_relative_precision_in_both_tails():
    z = np.linspace(-700, 700, 2801)
    layer = hg.Softplus()
    A = layer.forward(z[None, :])[0]
    exact = np.where(z > 0, z + np.log1p(np.exp(-np.abs(z))), np.log1p(np.exp(z)))
    np.testing.assert_allclose(A, exact, rtol=1e-15, atol=0)
    # σ(z) = −expm1(−A) from the output alone, to a few ulps wherever σ is a normal number.
    np.testing.assert_allclose(layer.backward(np.ones((1, z.size)))[0], expit(z), rtol=4e-15, atol=0)


def test_gelu_is_exact_in_the_negative_tail_where_one_plus_erf_cancels():
    z = np.array([-1.0, -5.0, -10.0, -20.0, -37.0])
    layer = hg.GELU()
    A = layer.forward(z[None, :])[0]
    exact = z * gaussian_cdf(z)                            # math.erfc: full relative precision
    naive = z * 0.5 * (1 + erf(z / math.sqrt(2)))          # cancels to 0 below about −8
    # erfc's relative condition number is about 2x² at x = −z/√2 (1400 at z = −37): rounding z/√2 costs that much.
    np.testing.assert_allclose(A, exact, rtol=1e-12)
    assert naive[-1] == 0 and A[-1] != 0
    dZ = layer.backward(np.ones((1, z.size)))[0]
    np.testing.assert_allclose(dZ, DERIVATIVES[hg.GELU](z), rtol=1e-12)


def test_gelu_matches_its_formula_in_float32():
    z = np.linspace(-6, 6, 121)
    A = hg.GELU().forward(z.astype(np.float32)[None, :])[0]
    assert A.dtype == np.float32
    np.testing.assert_allclose(A, z * gaussian_cdf(z), rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("build, message", [
    (lambda: hg.LeakyReLU(-0.1), "LeakyReLU negative_slope must be a finite number ≥ 0, got -0.1"),
    (lambda: hg.LeakyReLU(float("nan")), "negative_slope must be a finite number"),
    (lambda: hg.LeakyReLU("0.1"), "negative_slope must be a finite number"),
    (lambda: hg.LeakyReLU(True), "negative_slope must be a finite number"),
    (lambda: hg.ELU(-1.0), "ELU alpha must be a finite number ≥ 0, got -1.0"),
    (lambda: hg.ELU(float("inf")), "ELU alpha must be a finite number"),
])
def test_bad_settings_are_refused_in_one_line_with_the_remedy(build, message):
    with pytest.raises(HandgradError, match=message) as info:
        build()
    assert "\n" not in str(info.value) and ";" in str(info.value)


def test_the_rectifier_family_asks_for_he_initialisation():
    assert all(cls.initializer == "he" for cls in NEW)
    model = hg.Sequential(hg.Dense(2000, 50), hg.LeakyReLU(), hg.Dense(50, 50), hg.GELU(), hg.Dense(50, 2), seed=0)
    assert model.layers[0].W.astype(np.float64).std() == pytest.approx(np.sqrt(2 / 2000), rel=0.02)


def test_short_names_and_settings_come_from_the_registry():
    assert {name: hg.activations()[name] for name in ("leaky-relu", "elu", "softplus", "gelu")} == \
        {"leaky-relu": hg.LeakyReLU, "elu": hg.ELU, "softplus": hg.Softplus, "gelu": hg.GELU}
    assert hg.LeakyReLU(0.2).config() == {"type": "LeakyReLU", "negative_slope": 0.2}
    assert hg.ELU(0.5).config() == {"type": "ELU", "alpha": 0.5}
    assert hg.mlp(3, [4], 2, activation="leaky_relu", seed=0).layers[1].negative_slope == 0.01
