"""The Sequential contract: parameters, logits, gradients, dtypes, configuration."""

import numpy as np
import pytest

import handgrad as hg
from handgrad.errors import HandgradError


def small_model(dtype=np.float32, seed=0):
    return hg.Sequential(hg.Dense(5, 4, dtype=dtype), hg.Tanh(), hg.Dense(4, 3, dtype=dtype), hg.ReLU(),
                         hg.Dense(3, 2, dtype=dtype), seed=seed)


def dense_layers(model):
    return [layer for layer in model.layers if isinstance(layer, hg.Dense)]


def test_parameters_are_w_then_b_for_each_dense_layer_in_order():
    model = small_model()
    expected = [array for layer in dense_layers(model) for array in (layer.W, layer.b)]
    params = model.parameters()
    assert [p.shape for p in params] == [(5, 4), (4,), (4, 3), (3,), (3, 2), (2,)]
    assert all(p is q for p, q in zip(params, expected))


def test_updating_parameters_in_place_changes_the_model(rng):
    model = small_model(np.float64)
    X = rng.standard_normal((3, 5))
    before = model(X)
    for p in model.parameters():
        p += 0.5
    after = model(X)
    assert not np.allclose(before, after)
    first = dense_layers(model)[0]
    np.testing.assert_allclose(after, reference_logits(model, X), rtol=1e-12)
    model.parameters()[0][...] = 0
    np.testing.assert_array_equal(first.W, 0)


def test_parameters_are_views_of_the_flat_buffer_in_both_directions():
    model = small_model(np.float64)
    model.flat_parameters[:] = np.arange(model.flat_parameters.size)
    seen = np.concatenate([p.ravel() for p in model.parameters()])
    np.testing.assert_array_equal(np.sort(seen), np.arange(model.flat_parameters.size))
    model.parameters()[2][1, 1] = -7.0
    assert (model.flat_parameters == -7.0).sum() == 1
    assert model.n_decayed == 5 * 4 + 4 * 3 + 3 * 2
    weights = np.concatenate([layer.W.ravel() for layer in dense_layers(model)])
    np.testing.assert_array_equal(np.sort(model.flat_parameters[:model.n_decayed]), np.sort(weights))


def test_assigning_a_layer_weight_copies_into_the_model():
    model = small_model(np.float64)
    layer = dense_layers(model)[1]
    layer.W = np.full((4, 3), 2.5)
    np.testing.assert_array_equal(model.parameters()[2], 2.5)
    assert (model.flat_parameters == 2.5).sum() == 12


def test_set_weights_and_get_weights_round_trip_and_get_weights_is_a_copy(rng):
    model = small_model(np.float64)
    flat = rng.standard_normal(model.flat_parameters.size)
    model.set_weights(flat)
    snapshot = model.get_weights()
    np.testing.assert_array_equal(snapshot, flat)
    snapshot[:] = 0
    np.testing.assert_array_equal(model.get_weights(), flat)
    with pytest.raises(HandgradError, match="weights vector has shape"):
        model.set_weights(flat[:-1])


def reference_logits(model, X):
    """The forward pass written from the layer formulas, independently of ``Sequential``."""
    A = X
    for layer in model.layers:
        if isinstance(layer, hg.Dense):
            A = A @ layer.W + layer.b
        elif isinstance(layer, hg.Tanh):
            A = np.tanh(A)
        elif isinstance(layer, hg.ReLU):
            A = np.maximum(A, 0)
        elif isinstance(layer, hg.Sigmoid):
            A = 1 / (1 + np.exp(-A))
    return A


def test_calling_the_model_returns_logits_as_a_fresh_array(rng):
    model = small_model(np.float64)
    X = rng.standard_normal((6, 5))
    logits = model(X)
    np.testing.assert_allclose(logits, reference_logits(model, X), rtol=1e-12)
    again = model(rng.standard_normal((6, 5)))
    assert not np.shares_memory(logits, again)
    np.testing.assert_allclose(logits, reference_logits(model, X), rtol=1e-12)


def test_predict_proba_is_softmax_of_logits_and_predict_is_their_argmax(rng):
    model = small_model(np.float64)
    X = rng.standard_normal((11, 5))
    logits = reference_logits(model, X)
    proba = model.predict_proba(X, batch_size=4)                  # several chunks and a ragged last one
    np.testing.assert_allclose(proba, hg.softmax(logits), rtol=1e-12)
    np.testing.assert_array_equal(model.predict(X, batch_size=4), logits.argmax(axis=1))


@pytest.mark.parametrize("l2", [0.0, 0.3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_and_gradients_returns_a_float_and_grads_matching_parameters(l2, dtype, rng):
    model = small_model(dtype)
    X, y = rng.standard_normal((7, 5)), rng.integers(0, 2, size=7)
    value, grads = hg.loss_and_gradients(model, hg.SoftmaxCrossEntropy(), X, y, l2=l2)
    assert type(value) is float
    params = model.parameters()
    assert len(grads) == len(params)
    for g, p in zip(grads, params):
        assert g.shape == p.shape and g.dtype == p.dtype == dtype
        assert not np.shares_memory(g, model.flat_gradients)
    logits = reference_logits(model.astype(np.float64), X.astype(dtype).astype(np.float64))
    expected = hg.SoftmaxCrossEntropy().forward(logits, y)
    expected += 0.5 * l2 * sum(float((layer.W.astype(np.float64) ** 2).sum()) for layer in dense_layers(model))
    assert value == pytest.approx(expected, rel=1e-5 if dtype == np.float32 else 1e-12)


def test_l2_adds_lambda_w_to_weight_gradients_and_leaves_biases_alone(rng):
    model = small_model(np.float64)
    X, y = rng.standard_normal((7, 5)), rng.integers(0, 2, size=7)
    loss = hg.SoftmaxCrossEntropy()
    _, plain = hg.loss_and_gradients(model, loss, X, y)
    _, decayed = hg.loss_and_gradients(model, loss, X, y, l2=0.25)
    for name, p, g0, g1 in zip("WbWbWb", model.parameters(), plain, decayed):
        expected = g0 + 0.25 * p if name == "W" else g0
        np.testing.assert_allclose(g1, expected, rtol=1e-13, atol=1e-16)


def test_float32_model_keeps_parameters_gradients_and_activations_float32(rng):
    model = hg.Sequential(hg.Dense(5, 4), hg.Sigmoid(), hg.Dense(4, 4), hg.Tanh(), hg.Dense(4, 3), hg.ReLU(),
                          hg.Dense(3, 3), hg.Identity(), hg.Dense(3, 2), seed=0)
    assert model.dtype == np.float32
    seen = []
    for layer in model.layers:
        original = layer.forward

        def recording_forward(X, out=None, _original=original):
            result = _original(X, out=out)
            seen.append((X.dtype, result.dtype))
            return result
        layer.forward = recording_forward
    X, y = rng.standard_normal((6, 5)), rng.integers(0, 2, size=6)   # float64 input is converted once
    for loss in (hg.SoftmaxCrossEntropy(), hg.SoftmaxBinaryCrossEntropy()):
        value, grads = hg.loss_and_gradients(model, loss, X, y, l2=0.1)
        assert all(g.dtype == np.float32 for g in grads)
    assert seen and all(pair == (np.float32, np.float32) for pair in seen)
    assert model.flat_parameters.dtype == np.float32 and model.flat_gradients.dtype == np.float32
    assert all(p.dtype == np.float32 for p in model.parameters())
    assert model(X).dtype == np.float32 and model.predict_proba(X).dtype == np.float32


def test_float64_on_request_through_mlp_and_astype(rng):
    model = hg.mlp(5, [4, 3], 2, activation="tanh", dtype=np.float64, seed=0)
    assert model.dtype == np.float64
    assert all(p.dtype == np.float64 for p in model.parameters())
    X = rng.standard_normal((4, 5))
    assert model(X).dtype == np.float64
    single = model.astype("float32")
    assert single.dtype == np.float32 and all(p.dtype == np.float32 for p in single.parameters())
    np.testing.assert_allclose(single(X), model(X), rtol=1e-5, atol=1e-6)


def test_same_seed_gives_identical_models_and_different_seeds_differ():
    a, b, c = (hg.mlp(6, [5, 4], 3, seed=s).get_weights() for s in (1, 1, 2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(small_model(seed=1).get_weights(), small_model(seed=2).get_weights())


def test_mlp_builds_dense_and_activation_layers_alternately():
    model = hg.mlp(8, [6, 5], 3, activation="sigmoid")
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Sigmoid", "Dense", "Sigmoid", "Dense"]
    assert (model.n_features, model.n_outputs) == (8, 3)
    with pytest.raises(HandgradError, match="unknown activation"):
        hg.mlp(8, [6], 3, activation="swish")


def test_config_round_trip_rebuilds_the_same_architecture():
    model = small_model()
    rebuilt = hg.Sequential.from_config(model.config(), np.float64)
    assert rebuilt.config() == model.config() and rebuilt.dtype == np.float64
    assert repr(rebuilt) == "Sequential(Dense(5, 4), Tanh(), Dense(4, 3), ReLU(), Dense(3, 2))"


@pytest.mark.parametrize("build, message", [
    (lambda: hg.Sequential(), "at least one layer"),
    (lambda: hg.Sequential(hg.ReLU()), "at least one Dense"),
    (lambda: hg.Sequential(hg.Dense(3, 4), hg.Dense(5, 2)), "outputs 4 features"),
    (lambda: hg.Sequential(hg.Dense(3, 4), hg.Dense(4, 2, dtype=np.float64)), "share one dtype"),
    (lambda: hg.Sequential(hg.Dense(3, 4), "relu"), "not a handgrad layer"),
])
def test_invalid_architectures_are_refused_with_a_reason(build, message):
    with pytest.raises(HandgradError, match=message):
        build()


def test_model_with_a_user_layer_trains_its_parameters(rng):
    class Scale(hg.Layer):
        """``A = Z ⊙ a`` per column; ``∂L/∂a = Σ_rows G ⊙ Z``."""

        parameter_names = ("a",)

        def __init__(self, width):
            self.width = width   # kept under its argument's name, so config() can rebuild it
            self.a = np.ones(width)
            self.da = np.zeros(width)

        def forward(self, Z, out=None):
            self._Z = Z
            return Z * self.a

        def backward(self, G, out=None):
            self.da[...] = (G * self._Z).sum(axis=0)
            return G * self.a

    scale = Scale(4)
    model = hg.Sequential(hg.Dense(5, 4, dtype=np.float64), scale, hg.Tanh(), hg.Dense(4, 2, dtype=np.float64),
                          seed=0)
    assert len(model.parameters()) == 5 and model.parameters()[2] is scale.a
    report = hg.gradcheck(model, hg.SoftmaxCrossEntropy(), rng.standard_normal((6, 5)), rng.integers(0, 2, 6))
    assert report.passed, str(report)
    assert [row.name for row in report.rows] == ["W1", "b1", "a2", "W3", "b3"]
