"""Layers: backward passes against central differences, forward formulas, initialisation."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import handgrad as hg
from handgrad.errors import HandgradError

GRAD_TOLERANCE = 1e-6
SMALL = st.integers(min_value=1, max_value=5)
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
# Every test below that covers activations loops over the registry: a new
# activation is tested the moment it is defined in handgrad.
ACTIVATIONS = list(hg.activations().values())
EVERY_LAYER = [lambda: hg.Dense(3, 2, dtype=np.float64, seed=1), *ACTIVATIONS,
               lambda: hg.Dropout(0.4).train(), lambda: hg.BatchNorm(3, dtype=np.float64).train(),
               lambda: hg.BatchNorm(3, dtype=np.float64).eval()]


def random_array(seed, shape, scale=1.0):
    return scale * np.random.default_rng(seed).standard_normal(shape)


@settings(max_examples=25, deadline=None)
@given(n=SMALL, n_in=SMALL, n_out=SMALL, seed=SEEDS)
def test_dense_backward_matches_central_differences(n, n_in, n_out, seed):
    layer = hg.Dense(n_in, n_out, seed=seed, dtype=np.float64)
    layer.b = random_array(seed + 1, n_out)          # a non-zero bias exercises db too
    report = hg.gradcheck(layer, random_array(seed, (n, n_in)), seed=seed)
    assert [row.name for row in report.rows] == ["input", "W", "b"]
    assert report.max_error < GRAD_TOLERANCE, str(report)


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda cls: cls.__name__)
@settings(max_examples=15, deadline=None)
@given(n=SMALL, width=SMALL, seed=SEEDS, scale=st.sampled_from([0.1, 1.0, 4.0]))
def test_activation_backward_matches_central_differences(activation, n, width, seed, scale):
    X = random_array(seed, (n, width), scale)
    # The ReLU family has no derivative at 0: a central difference with step
    # 1e-6 across the kink averages the two one-sided slopes and disagrees with
    # either choice of subgradient, so inputs within 1e-4 of 0 are excluded.
    assume(np.abs(X).min() > 1e-4)
    report = hg.gradcheck(activation(), X, seed=seed)
    assert report.max_error < GRAD_TOLERANCE, str(report)


def test_relu_uses_zero_derivative_at_exactly_zero():
    relu = hg.ReLU()
    relu.forward(np.array([[-1.0, 0.0, 2.0]]))
    np.testing.assert_array_equal(relu.backward(np.array([[5.0, 5.0, 5.0]])), [[0.0, 0.0, 5.0]])


def test_dense_forward_is_x_at_w_plus_b_with_samples_as_rows(rng):
    layer = hg.Dense(4, 3, dtype=np.float64, seed=0)
    assert layer.W.shape == (4, 3) and layer.b.shape == (3,)
    layer.b = rng.standard_normal(3)
    X = rng.standard_normal((5, 4))
    np.testing.assert_allclose(layer.forward(X), X @ layer.W + layer.b, rtol=1e-14)


def test_dense_backward_returns_the_documented_products(rng):
    layer = hg.Dense(4, 3, dtype=np.float64, seed=0)
    X, G = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    layer.forward(X)
    dX = layer.backward(G)
    np.testing.assert_allclose(layer.dW, X.T @ G, rtol=1e-13)
    np.testing.assert_allclose(layer.db, G.sum(axis=0), rtol=1e-13)
    np.testing.assert_allclose(dX, G @ layer.W.T, rtol=1e-13)
    assert layer.backward(G, input_grad=False) is None


# Each activation's forward formula, written independently of the library.
FORMULAS = {
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "identity": lambda z: z,
    "leaky-relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "elu": lambda z: np.where(z > 0, z, np.exp(z) - 1),
    "softplus": lambda z: np.log(1 + np.exp(z)),
    "gelu": lambda z: z * 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2))),
}


def test_every_activation_has_a_reference_formula():
    assert set(FORMULAS) == set(hg.activations())


@pytest.mark.parametrize("formula", [(hg.activations()[name], f) for name, f in FORMULAS.items()],
                         ids=list(FORMULAS))
def test_activation_forward_matches_its_formula(formula, rng):
    cls, reference = formula
    Z = rng.standard_normal((6, 5)) * 3
    np.testing.assert_allclose(cls().forward(Z), reference(Z), rtol=1e-13, atol=1e-15)


def test_sigmoid_saturates_without_overflow_warnings():
    Z = np.array([[-1000.0, -40.0, 0.0, 40.0, 1000.0]])
    with np.errstate(all="raise"):
        A = hg.Sigmoid().forward(Z)
    np.testing.assert_allclose(A, [[0.0, 1 / (1 + np.exp(40.0)), 0.5, 1 / (1 + np.exp(-40.0)), 1.0]], atol=1e-17)


@pytest.mark.parametrize("make", EVERY_LAYER)
def test_layers_write_into_out_and_leave_their_inputs_untouched(make, rng):
    layer = make()
    X = rng.standard_normal((4, 3))
    X_before = X.copy()
    width = 2 if isinstance(layer, hg.Dense) else 3
    out = np.empty((4, width))
    assert layer.forward(X, out=out) is out
    G = rng.standard_normal((4, width))
    G_before = G.copy()
    grad_out = np.empty((4, 3))
    assert layer.backward(G, out=grad_out) is grad_out
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(G, G_before)


@pytest.mark.parametrize("make", [lambda: hg.Dense(3, 2, seed=1), *ACTIVATIONS, lambda: hg.Dropout(0.4).train(),
                                  lambda: hg.BatchNorm(3).train(), lambda: hg.BatchNorm(3).eval()])
def test_float32_layers_keep_float32_through_forward_and_backward(make, rng):
    layer = make()
    X = rng.standard_normal((4, 3)).astype(np.float32)
    A = layer.forward(X)
    dX = layer.backward(np.ones_like(A))
    assert A.dtype == np.float32 and dX.dtype == np.float32
    for param, grad in zip(layer.parameters(), layer.gradients()):
        assert param.dtype == np.float32 and grad.dtype == np.float32


def test_assigning_dense_weights_copies_into_the_existing_arrays(rng):
    layer = hg.Dense(3, 2, dtype=np.float64, seed=0)
    W_array, b_array = layer.W, layer.b
    new_W, new_b = rng.standard_normal((3, 2)), rng.standard_normal(2)
    layer.W, layer.b = new_W, new_b
    assert layer.W is W_array and layer.b is b_array
    np.testing.assert_array_equal(layer.W, new_W)
    new_W[0, 0] = 99.0                               # the caller's array stays the caller's
    assert layer.W[0, 0] != 99.0


def test_assigning_dense_weights_of_the_wrong_shape_raises():
    layer = hg.Dense(3, 2)
    with pytest.raises(HandgradError, match=r"W must have shape \(3, 2\)"):
        layer.W = np.zeros((2, 3))
    with pytest.raises(HandgradError, match=r"b must have shape \(2,\)"):
        layer.b = np.zeros(3)


@pytest.mark.parametrize("kwargs", [dict(n_in=0, n_out=2), dict(n_in=3, n_out=-1), dict(n_in=2.5, n_out=2),
                                    dict(n_in=True, n_out=2), dict(n_in=3, n_out=2, init="xavier")])
def test_dense_rejects_bad_arguments(kwargs):
    with pytest.raises(HandgradError):
        hg.Dense(**kwargs)


# Initialisation.  With 400 x 300 = 120 000 draws the sample standard deviation
# is within 0.4% of the true one with overwhelming probability (its relative
# standard error is 1/sqrt(2N) = 0.2%), so a 2% tolerance fails for any scheme
# whose scale is off by more than that, e.g. Glorot's 0.0535 against He's 0.0707.

def test_he_initialisation_is_normal_with_variance_two_over_fan_in():
    W = hg.Dense(400, 300, init="he", seed=3, dtype=np.float64).W
    assert W.std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert abs(W.mean()) < 3 * np.sqrt(2 / 400) / np.sqrt(W.size)
    assert np.abs(W).max() > 4 * np.sqrt(2 / 400)            # normal tails, not a bounded uniform


def test_glorot_initialisation_is_uniform_within_the_glorot_limit():
    limit = np.sqrt(6 / (400 + 300))
    W = hg.Dense(400, 300, init="glorot", seed=3, dtype=np.float64).W
    assert W.std() == pytest.approx(limit / np.sqrt(3), rel=0.02)
    assert np.abs(W).max() <= limit
    assert np.abs(W).max() > 0.999 * limit
    assert abs(W.mean()) < 3 * limit / np.sqrt(3 * W.size)


def test_biases_start_at_zero():
    for init in ("auto", "he", "glorot"):
        np.testing.assert_array_equal(hg.Dense(5, 4, init=init, seed=0).b, np.zeros(4))


def test_same_seed_gives_identical_initialisation_and_different_seeds_do_not():
    a = hg.Dense(20, 10, init="he", seed=7).W
    b = hg.Dense(20, 10, init="he", seed=7).W
    c = hg.Dense(20, 10, init="he", seed=8).W
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sequential_picks_he_before_relu_and_glorot_before_tanh_and_sigmoid():
    model = hg.Sequential(hg.Dense(400, 300), hg.ReLU(), hg.Dense(300, 200), hg.Tanh(),
                          hg.Dense(200, 100), hg.Sigmoid(), hg.Dense(100, 10), seed=0)
    W1, W2, W3, W4 = (layer.W.astype(np.float64) for layer in model.layers if isinstance(layer, hg.Dense))
    assert W1.std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert W2.std() == pytest.approx(np.sqrt(2 / (300 + 200)), rel=0.02)
    assert W3.std() == pytest.approx(np.sqrt(2 / (200 + 100)), rel=0.03)
    assert np.abs(W2).max() <= np.sqrt(6 / 500) * (1 + 1e-6)
    assert W4.std() == pytest.approx(np.sqrt(2 / 110), rel=0.05)


def test_every_builtin_layer_is_registered_and_rebuilds_from_its_configuration():
    from handgrad.nn.layers import layer_from_config

    assert {"Dense", "Sigmoid", "Tanh", "ReLU", "Identity", "LeakyReLU", "ELU", "Softplus", "GELU", "Dropout",
            "BatchNorm"} <= {cls.__name__ for cls in hg.registry.LAYERS}
    assert {"relu": hg.ReLU, "tanh": hg.Tanh, "sigmoid": hg.Sigmoid, "identity": hg.Identity,
            "leaky-relu": hg.LeakyReLU, "elu": hg.ELU, "softplus": hg.Softplus, "gelu": hg.GELU}.items() \
        <= hg.activations().items()
    rebuilt = layer_from_config(hg.Dense(3, 2).config(), np.float64)
    assert (rebuilt.n_in, rebuilt.n_out, rebuilt.dtype) == (3, 2, np.float64)
    with pytest.raises(HandgradError, match="unknown layer type 'Conv2d'.*define \\(or import\\) the class"):
        layer_from_config({"type": "Conv2d"})
