"""Awkward but legal input: no NaN, no inf, no crash, and not even a RuntimeWarning.

Every test here runs with warnings turned into errors, so an overflow in
``exp``, a ``0/0`` or a ``log(0)`` anywhere on the path fails the test.
"""

import numpy as np
import pytest

import handgrad as hg

pytestmark = pytest.mark.filterwarnings("error")

DTYPES = [np.float32, np.float64]
LOSSES = [hg.SoftmaxCrossEntropy, hg.SoftmaxBinaryCrossEntropy]
N_CLASSES = 4


def targets(kind, labels):
    if kind == "labels":
        return labels
    if kind == "one-hot":
        return np.eye(N_CLASSES)[labels]
    Y = np.full((len(labels), N_CLASSES), 0.1)
    Y[np.arange(len(labels)), labels] = 1 - 0.1 * (N_CLASSES - 1)
    return Y


def assert_all_finite(*arrays):
    for a in arrays:
        assert np.isfinite(a).all()


def model_with_logits(logits_scale, dtype):
    """One Dense layer whose logits for the rows of the identity are ±``logits_scale`` and 0."""
    layer = hg.Dense(N_CLASSES, N_CLASSES, dtype=dtype)
    model = hg.Sequential(layer)
    layer.W = logits_scale * np.array([[1, -1, 0, 0], [-1, 1, 0, 0], [0, 0, 1, -1], [1, 1, 1, 1]])
    return model


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss_cls", LOSSES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("kind", ["labels", "one-hot", "probabilities"])
def test_logits_of_ten_thousand_give_finite_loss_gradients_and_probabilities(dtype, loss_cls, reduction, kind):
    model = model_with_logits(1e4, dtype)
    X = np.eye(N_CLASSES)
    y = targets(kind, np.array([0, 0, 3, 2]))        # right and badly wrong, confidently
    value, grads = hg.loss_and_gradients(model, loss_cls(reduction), X, y, l2=1e-4)
    assert np.isfinite(value) and value > 1e3          # the wrong rows cost about 2e4
    assert_all_finite(*grads)
    proba = model.predict_proba(X)
    assert_all_finite(proba)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(model.predict(X), [0, 1, 2, 0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss_cls", LOSSES)
def test_a_training_step_from_logits_of_ten_thousand_stays_finite(dtype, loss_cls):
    model = model_with_logits(1e4, dtype)
    X, y = np.eye(N_CLASSES), np.array([1, 0, 3, 2])
    history = hg.fit(model, loss_cls(), X, y, optimizer=hg.SGD(0.1), epochs=3, batch_size=2, seed=0)
    assert_all_finite(model.get_weights(), history["train_loss"])


@pytest.mark.parametrize("activation", sorted(hg.activations()))
@pytest.mark.parametrize("dtype", DTYPES)
def test_all_zero_inputs_train_and_predict_without_nan(activation, dtype):
    X, y = np.zeros((12, 6)), np.arange(12) % 3
    model = hg.mlp(6, [5], 3, activation=activation, dtype=dtype, seed=0)
    history = hg.fit(model, hg.SoftmaxBinaryCrossEntropy(), X, y, optimizer=hg.Adam(1e-2), epochs=3, batch_size=5,
                     validation_fraction=0.25, seed=0)
    assert_all_finite(model.get_weights(), history["train_loss"], history["val_loss"])
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba, np.broadcast_to(proba[0], proba.shape), rtol=1e-6)   # no signal to use


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_and_huge_columns_train_without_nan(dtype, digits):
    X, y = digits
    X = X[:200].copy()
    X[:, :8] = 5.0                                    # constant columns
    X[:, 8] = 1e4                                     # constant and large
    model = hg.mlp(64, [16], 10, activation="sigmoid", dtype=dtype, seed=0)
    history = hg.fit(model, hg.SoftmaxCrossEntropy(), X, y[:200], optimizer=hg.Adam(1e-2), epochs=3, seed=0)
    assert_all_finite(model.get_weights(), history["train_loss"], model.predict_proba(X))


@pytest.mark.parametrize("loss_cls", LOSSES)
def test_a_single_sample_trains_predicts_and_has_gradients(loss_cls):
    X, y = np.array([[0.5, -1.0, 2.0]]), np.array([2])
    model = hg.mlp(3, [4], 3, dtype=np.float64, seed=0)
    value, grads = hg.loss_and_gradients(model, loss_cls(), X, y)
    assert np.isfinite(value) and all(np.isfinite(g).all() for g in grads)
    history = hg.fit(model, loss_cls(), X, y, optimizer=hg.SGD(0.5), epochs=20, seed=0)
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert model.predict(X).tolist() == [2]
    assert model.predict_proba(X[0:1]).shape == (1, 3)


def test_a_validation_split_of_one_sample_works():
    X, y = np.random.default_rng(0).standard_normal((4, 3)), np.array([0, 1, 2, 0])
    history = hg.fit(hg.mlp(3, [4], 3, seed=0), hg.SoftmaxCrossEntropy(), X, y, epochs=2, validation_fraction=0.25,
                     seed=0)
    assert all(value in (0.0, 1.0) for value in history["val_accuracy"])
    assert_all_finite(history["val_loss"])


def test_batch_size_larger_than_the_dataset_is_one_full_batch():
    X, y = np.random.default_rng(0).standard_normal((10, 3)), np.arange(10) % 3
    weights = []
    for batch_size in (10, 10_000):
        model = hg.mlp(3, [4], 3, seed=0)
        log = []

        class CountBatches(hg.Callback):
            def on_batch_end(self, ctx, batch, n_batches, loss, log=log):
                log.append(n_batches)

        hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, epochs=2, batch_size=batch_size, callbacks=[CountBatches()],
               seed=0)
        assert log == [1, 1]
        weights.append(model.get_weights())
    np.testing.assert_array_equal(weights[0], weights[1])


@pytest.mark.parametrize("loss_cls", LOSSES)
@pytest.mark.parametrize("kind", ["labels", "one-hot"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_classes_missing_from_minibatches_and_from_the_data(loss_cls, kind, dtype):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 5))
    labels = np.repeat([0, 1], 8)                     # classes 2 and 3 never occur
    model = hg.mlp(5, [6], N_CLASSES, dtype=dtype, seed=0)
    history = hg.fit(model, loss_cls(), X, targets(kind, labels), optimizer=hg.Adam(1e-2), epochs=5, batch_size=4,
                     shuffle=False, seed=0)             # unshuffled: every batch holds one class only
    assert_all_finite(model.get_weights(), history["train_loss"])
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert set(model.predict(X)) <= {0, 1, 2, 3}


@pytest.mark.parametrize("dtype", DTYPES)
def test_saturated_activations_backpropagate_finite_gradients(dtype):
    X = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e-30]])
    model = hg.Sequential(hg.Dense(3, 3, dtype=dtype), hg.Sigmoid(), hg.Dense(3, 3, dtype=dtype), hg.Tanh(),
                          hg.Dense(3, 3, dtype=dtype), hg.ReLU(), hg.Dense(3, 2, dtype=dtype), seed=0)
    for loss_cls in LOSSES:
        value, grads = hg.loss_and_gradients(model, loss_cls(), X, np.array([0, 1]), l2=0.1)
        assert np.isfinite(value)
        assert_all_finite(*grads)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_on_exactly_zero_gradients_moves_nothing(dtype):
    param, grad = np.ones(5, dtype=dtype), np.zeros(5, dtype=dtype)
    adam = hg.Adam()
    for _ in range(3):
        adam.step_flat(param, grad.copy())
    np.testing.assert_array_equal(param, 1)


@pytest.mark.parametrize("loss_cls", LOSSES)
def test_all_equal_logits_give_the_uniform_answer(loss_cls):
    loss = loss_cls("sum")
    Z = np.full((2, N_CLASSES), 1e4)
    value = loss.forward(Z, np.array([0, 3]))
    grad = loss.backward()
    assert_all_finite(value, grad)
    np.testing.assert_allclose(grad.sum(axis=1), 0, atol=1e-12)      # softmax is shift-invariant


# -- the regression and multilabel losses, dropout and batch norm ----------------------------

NEW_LOSSES = {hg.SquaredError: lambda labels: np.eye(N_CLASSES)[labels] * 3.0 - 1.0,
              hg.SigmoidBinaryCrossEntropy: lambda labels: np.eye(N_CLASSES)[labels]}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss_cls", list(NEW_LOSSES))
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_new_losses_at_logits_of_ten_thousand_give_finite_values_and_gradients(dtype, loss_cls, reduction):
    model = model_with_logits(1e4, dtype)
    X, y = np.eye(N_CLASSES), NEW_LOSSES[loss_cls](np.array([0, 0, 3, 2]))
    value, grads = hg.loss_and_gradients(model, loss_cls(reduction), X, y, l2=1e-4)
    assert np.isfinite(value) and value > 1e3
    assert_all_finite(*grads)
    assert_all_finite(model.predict(X, loss=loss_cls()))
    history = hg.fit(model, loss_cls(reduction), X, y, optimizer=hg.SGD(1e-6), epochs=2, batch_size=2, seed=0)
    assert_all_finite(model.get_weights(), history["train_loss"])


def network_of_new_pieces(dtype, n_in=3, n_out=2):
    return hg.Sequential(hg.Dense(n_in, 4, dtype=dtype), hg.BatchNorm(4, dtype=dtype), hg.GELU(), hg.Dropout(0.3),
                         hg.Dense(4, 4, dtype=dtype), hg.Softplus(), hg.Dense(4, 4, dtype=dtype), hg.ELU(),
                         hg.Dense(4, 4, dtype=dtype), hg.LeakyReLU(), hg.Dense(4, n_out, dtype=dtype), seed=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
def test_saturated_new_layers_backpropagate_finite_gradients(dtype, training):
    X = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e-30], [3e4, 3e4, -3e4]])
    model = network_of_new_pieces(dtype).train(training)
    for loss, y in ((hg.SoftmaxCrossEntropy(), np.array([0, 1, 1])), (hg.SquaredError(), np.full((3, 2), 1e3)),
                    (hg.SigmoidBinaryCrossEntropy(), np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]))):
        value, grads = hg.loss_and_gradients(model, loss, X, y, l2=0.1)
        assert np.isfinite(value)
        assert_all_finite(*grads)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss_cls, y", [(hg.SoftmaxCrossEntropy, np.array([1])),
                                         (hg.SquaredError, np.array([[0.5, -2.0]])),
                                         (hg.SigmoidBinaryCrossEntropy, np.array([[1.0, 0.0]]))])
def test_a_single_sample_through_dropout_and_batch_norm_trains_and_predicts(dtype, loss_cls, y):
    X = np.array([[0.5, -1.0, 2.0]])
    model = network_of_new_pieces(dtype)
    value, grads = hg.loss_and_gradients(model, loss_cls(), X, y)
    assert np.isfinite(value)
    assert_all_finite(*grads)
    history = hg.fit(model, loss_cls(), X, y, optimizer=hg.Adam(1e-2), epochs=5, seed=0)
    assert_all_finite(model.get_weights(), history["train_loss"], model.predict(X, loss=loss_cls()))
    assert_all_finite(*model.get_buffers().values())


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_columns_through_batch_norm_stay_finite(dtype):
    X = np.zeros((12, 6))
    X[:, 0] = 1e4                                       # a large constant column: zero variance in every batch
    model = hg.Sequential(hg.Dense(6, 5, dtype=dtype), hg.BatchNorm(5, dtype=dtype), hg.ReLU(),
                          hg.Dense(5, 3, dtype=dtype), seed=0)
    history = hg.fit(model, hg.SoftmaxCrossEntropy(), X, np.arange(12) % 3, optimizer=hg.Adam(1e-2), epochs=3,
                     batch_size=5, validation_fraction=0.25, seed=0)
    assert_all_finite(model.get_weights(), history["train_loss"], history["val_loss"], model.predict_proba(X))
