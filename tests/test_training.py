"""fit: determinism, resumption, early stopping, schedules, callbacks, divergence, and real learning."""

import copy

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

import handgrad as hg
from handgrad.errors import HandgradError
from handgrad.optim.optimizers import optimizer_from_config
from handgrad.training.loop import evaluate


@pytest.fixture
def small_digits(digits):
    X, y = digits
    return X[:300], y[:300]


def fresh_model(seed=0, dtype=np.float32, hidden=(16,)):
    return hg.mlp(64, list(hidden), 10, activation="relu", dtype=dtype, seed=seed)


class Recorder(hg.Callback):
    """Logs every hook it sees, and the weights at the end of each epoch."""

    def __init__(self, name, log):
        self.name, self.log, self.weights = name, log, []

    def on_train_begin(self, ctx):
        self.log.append((self.name, "begin"))

    def on_batch_end(self, ctx, batch, n_batches, loss):
        self.log.append((self.name, "batch", ctx.epoch, batch, n_batches))

    def on_epoch_end(self, ctx, record):
        self.log.append((self.name, "epoch", record["epoch"]))
        self.weights.append(ctx.model.get_weights())

    def on_train_end(self, ctx):
        self.log.append((self.name, "end"))


def test_same_seed_gives_bit_identical_weights(small_digits):
    X, y = small_digits
    runs = []
    for _ in range(2):
        model = fresh_model()
        hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=hg.Adam(1e-2), epochs=3, batch_size=32,
               l2=1e-3, validation_fraction=0.2, seed=7)
        runs.append(model.get_weights())
    np.testing.assert_array_equal(runs[0], runs[1])


def test_different_seed_gives_different_weights(small_digits):
    X, y = small_digits
    weights = []
    for seed in (7, 8):
        model = fresh_model()
        hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=hg.Adam(1e-2), epochs=2, batch_size=32, seed=seed)
        weights.append(model.get_weights())
    assert not np.array_equal(weights[0], weights[1])


def test_without_shuffling_the_seed_does_not_matter(small_digits):
    X, y = small_digits
    weights = []
    for seed in (1, 2):
        model = fresh_model()
        hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=hg.SGD(0.1), epochs=2, batch_size=50,
               shuffle=False, seed=seed)
        weights.append(model.get_weights())
    np.testing.assert_array_equal(weights[0], weights[1])


@pytest.mark.parametrize("round_trip", [False, True], ids=["same-optimizer", "state-dict-round-trip"])
@pytest.mark.parametrize("make_optimizer", [lambda: hg.Adam(1e-2), lambda: hg.SGD(0.05, momentum=0.9)],
                         ids=["adam", "momentum"])
def test_resuming_after_three_epochs_reproduces_six_epochs_exactly(small_digits, make_optimizer, round_trip):
    X, y = small_digits
    settings = dict(batch_size=32, l2=1e-3, validation_fraction=0.2, seed=3)
    loss = hg.SoftmaxCrossEntropy()

    straight = fresh_model()
    straight_history = hg.fit(straight, loss, X, y, optimizer=make_optimizer(), epochs=6, **settings)

    resumed = fresh_model()
    optimizer = make_optimizer()
    history = hg.fit(resumed, loss, X, y, optimizer=optimizer, epochs=3, **settings)
    if round_trip:
        saved = copy.deepcopy(optimizer.state_dict())
        optimizer = optimizer_from_config(saved["config"])
        optimizer.load_state_dict(saved)
    history = hg.fit(resumed, loss, X, y, optimizer=optimizer, epochs=6, initial_epoch=3, history=history, **settings)

    np.testing.assert_array_equal(resumed.get_weights(), straight.get_weights())
    assert history["epoch"] == list(range(1, 7))
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
        assert history[key] == straight_history[key]


def test_early_stopping_stops_and_restores_the_best_weights(small_digits):
    X, y = small_digits
    # Validation labels drawn at random: the better the model fits the training
    # labels, the worse its validation loss, so the best epoch comes early.
    y_noise = np.random.default_rng(0).integers(0, 10, size=len(y))
    log = []
    recorder = Recorder("r", log)
    model = fresh_model(hidden=(32,))
    stopper = hg.EarlyStopping(monitor="val_loss", patience=2)
    history = hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=hg.Adam(1e-2), epochs=40, batch_size=32,
                     validation_data=(X, y_noise), early_stopping=stopper, callbacks=[recorder], seed=0)
    val_losses = history["val_loss"]
    best = int(np.argmin(val_losses))
    assert len(history) < 40
    assert len(history) == best + 1 + 2                            # stopped after `patience` epochs without progress
    assert stopper.best_epoch == best + 1 and stopper.best == val_losses[best]
    np.testing.assert_array_equal(model.get_weights(), recorder.weights[best])
    assert not np.array_equal(model.get_weights(), recorder.weights[-1])


def test_early_stopping_true_monitors_validation_loss_and_train_loss_without_it(small_digits):
    X, y = small_digits
    model = fresh_model()
    history = hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, epochs=2, batch_size=64, early_stopping=True,
                     validation_fraction=0.2, seed=0)
    assert len(history) == 2 and "val_loss" in history.records[0]
    stopper = hg.EarlyStopping(monitor="val_accuracy", mode="max")
    with pytest.raises(HandgradError, match="early stopping monitors 'val_accuracy'"):
        hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, epochs=1, early_stopping=stopper, seed=0)


def test_early_stopping_without_restore_keeps_the_last_weights(small_digits):
    X, y = small_digits
    log = []
    recorder = Recorder("r", log)
    model = fresh_model()
    stopper = hg.EarlyStopping(monitor="epoch", mode="min", patience=2, restore_best=False)   # never improves
    history = hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, epochs=10, batch_size=64, early_stopping=stopper,
                     callbacks=[recorder], seed=0)
    assert len(history) == 3
    np.testing.assert_array_equal(model.get_weights(), recorder.weights[-1])


def test_validation_fraction_splits_off_the_rounded_share(small_digits):
    X, y = small_digits
    X, y = X[:100], y[:100]
    log = []
    hg.fit(fresh_model(), hg.SoftmaxCrossEntropy(), X, y, epochs=1, batch_size=10, validation_fraction=0.25,
           callbacks=[Recorder("r", log)], seed=0)
    n_batches = {entry[4] for entry in log if entry[1] == "batch"}
    assert n_batches == {8}                                          # 75 training samples in batches of 10
    history = hg.fit(fresh_model(), hg.SoftmaxCrossEntropy(), X, y, epochs=1, validation_fraction=0.25, seed=0)
    assert (history["val_accuracy"][0] * 25) == pytest.approx(round(history["val_accuracy"][0] * 25))
    with pytest.raises(HandgradError, match="leaves 0 of 100 samples"):
        hg.fit(fresh_model(), hg.SoftmaxCrossEntropy(), X, y, epochs=1, validation_fraction=0.001, seed=0)


def test_lr_schedule_is_called_before_every_batch_and_sets_the_optimizer_rate(small_digits):
    X, y = small_digits
    X, y = X[:100], y[:100]
    calls = []

    def schedule(t):
        calls.append(t)
        return 0.1 / (1 + t)

    optimizer = hg.SGD(0.5)
    history = hg.fit(fresh_model(), hg.SoftmaxCrossEntropy(), X, y, optimizer=optimizer, epochs=2, batch_size=25,
                     lr_schedule=schedule, seed=0)
    assert calls == [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75]
    assert optimizer.lr == 0.1 / 2.75
    assert history["lr"] == [0.1 / 1.75, 0.1 / 2.75]


def test_a_schedule_changes_the_updates_exactly_as_setting_lr_would(small_digits):
    X, y = small_digits
    weights = []
    for kwargs in (dict(optimizer=hg.SGD(0.05)), dict(optimizer=hg.SGD(0.9), lr_schedule=hg.schedules.constant(0.05)),
                   dict(optimizer=hg.SGD(0.05), lr_schedule=hg.schedules.cosine(0.05, 2))):
        model = fresh_model()
        hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, epochs=2, batch_size=50, seed=0, **kwargs)
        weights.append(model.get_weights())
    np.testing.assert_array_equal(weights[0], weights[1])
    assert not np.array_equal(weights[0], weights[2])


def test_callbacks_are_called_in_order_for_every_hook(small_digits):
    X, y = small_digits
    X, y = X[:60], y[:60]
    log = []
    hg.fit(fresh_model(), hg.SoftmaxCrossEntropy(), X, y, epochs=2, batch_size=30,
           callbacks=[Recorder("a", log), Recorder("b", log)], seed=0)
    expected = [("a", "begin"), ("b", "begin")]
    for epoch in range(2):
        for batch in range(2):
            expected += [("a", "batch", epoch, batch, 2), ("b", "batch", epoch, batch, 2)]
        expected += [("a", "epoch", epoch + 1), ("b", "epoch", epoch + 1)]       # records count epochs from 1
    expected += [("a", "end"), ("b", "end")]
    assert log == expected


def test_a_callback_can_stop_training(small_digits):
    X, y = small_digits

    class StopAfterTwo(hg.Callback):
        def on_epoch_end(self, ctx, record):
            ctx.stop = record["epoch"] == 2

    history = hg.fit(fresh_model(), hg.SoftmaxCrossEntropy(), X, y, epochs=10, callbacks=[StopAfterTwo()], seed=0)
    assert history["epoch"] == [1, 2]


def test_history_records_the_documented_keys(small_digits):
    X, y = small_digits
    plain = hg.fit(fresh_model(), hg.SoftmaxCrossEntropy(), X, y, epochs=2, seed=0)
    assert set(plain.records[0]) == {"epoch", "train_loss", "train_accuracy", "lr", "seconds"}
    validated = hg.fit(fresh_model(), hg.SoftmaxCrossEntropy(), X, y, epochs=2, validation_fraction=0.2, seed=0)
    assert set(validated.records[0]) == {"epoch", "train_loss", "train_accuracy", "lr", "seconds",
                                         "val_loss", "val_accuracy"}
    assert len(validated) == 2 and validated["epoch"] == [1, 2]
    record = validated.records[1]
    assert 0 <= record["train_accuracy"] <= 1 and 0 <= record["val_accuracy"] <= 1
    assert record["seconds"] >= 0 and np.isfinite(record["train_loss"]) and record["val_loss"] > 0


@pytest.mark.parametrize("loss", [hg.SoftmaxCrossEntropy(), hg.SoftmaxBinaryCrossEntropy()])
def test_train_loss_of_an_epoch_without_updates_is_the_mean_sample_loss(small_digits, loss):
    X, y = small_digits
    model = fresh_model(dtype=np.float64)
    # A learning rate of 1e-300 moves no weight (every step is far below an ulp),
    # so every minibatch sees the initial model and the epoch's mean must equal
    # the loss of that model on the whole training set.
    history = hg.fit(model, loss, X, y, optimizer=hg.SGD(1e-300), epochs=1, batch_size=64, seed=0)
    expected = evaluate(model, loss, X, y)
    assert history["train_loss"][0] == pytest.approx(expected["val_loss"], rel=1e-12)
    assert history["train_accuracy"][0] == expected["val_accuracy"]


def test_train_loss_is_on_the_per_sample_scale_of_val_loss_for_summed_losses(small_digits):
    X, y = small_digits
    model = fresh_model(dtype=np.float64)
    loss = hg.SoftmaxCrossEntropy("sum")
    history = hg.fit(model, loss, X, y, optimizer=hg.SGD(1e-300), epochs=1, batch_size=64, seed=0)
    assert history["train_loss"][0] == pytest.approx(evaluate(model, loss, X, y)["val_loss"], rel=1e-12)


def test_float32_training_keeps_every_array_float32(small_digits):
    X, y = small_digits
    model = hg.Sequential(hg.Dense(64, 16), hg.Tanh(), hg.Dense(16, 16), hg.Sigmoid(), hg.Dense(16, 10), seed=0)
    seen = set()
    for layer in model.layers:
        original_forward, original_backward = layer.forward, layer.backward

        def forward(A, out=None, _f=original_forward):
            result = _f(A, out=out)
            seen.add(("forward", A.dtype.name, result.dtype.name))
            return result

        def backward(G, *args, _b=original_backward, **kwargs):
            result = _b(G, *args, **kwargs)
            seen.add(("backward", G.dtype.name, None if result is None else result.dtype.name))
            return result
        layer.forward, layer.backward = forward, backward
    optimizer = hg.Adam(1e-2)
    hg.fit(model, hg.SoftmaxBinaryCrossEntropy(), X, y.astype(np.float64), optimizer=optimizer, epochs=2,
           batch_size=64, l2=1e-3, validation_fraction=0.2, seed=0)
    # ("backward", float32, None): the first Dense skips the gradient with respect to the data.
    assert seen == {("forward", "float32", "float32"), ("backward", "float32", "float32"),
                    ("backward", "float32", None)}
    assert all(p.dtype == np.float32 for p in model.parameters())
    assert all(g.dtype == np.float32 for g in model.gradients())
    assert all(a.dtype == np.float32 for s in optimizer.state for a in s.values())


def test_float64_training_on_request(small_digits):
    X, y = small_digits
    model = fresh_model(dtype=np.float64)
    optimizer = hg.Adam(1e-2)
    hg.fit(model, hg.SoftmaxCrossEntropy(), X.astype(np.float32), y, optimizer=optimizer, epochs=1, seed=0)
    assert model.flat_parameters.dtype == np.float64 and model.flat_gradients.dtype == np.float64
    assert all(a.dtype == np.float64 for s in optimizer.state for a in s.values())


@pytest.mark.parametrize("loss", [hg.SoftmaxCrossEntropy(), hg.SoftmaxBinaryCrossEntropy()])
def test_training_on_digits_reaches_95_percent_held_out_accuracy(digits, loss):
    X, y = digits
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    model = hg.mlp(64, [64], 10, activation="tanh", seed=0)
    hg.fit(model, loss, X_train, y_train, optimizer=hg.Adam(1e-2), epochs=20, batch_size=32, l2=1e-4, seed=0)
    accuracy = np.mean(model.predict(X_test) == y_test)
    assert accuracy >= 0.95


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_divergence_raises_and_restores_the_last_finished_epoch(digits, momentum):
    X, y = digits
    # Linear layers only: nothing saturates, so lr = 1e3 drives the logits to
    # inf and the loss to NaN within the first epochs.
    model = hg.mlp(64, [32], 10, activation="identity", seed=0)
    recorder = Recorder("r", [])
    start = model.get_weights()
    with pytest.raises(hg.TrainingDiverged, match="lower the learning rate") as info:
        hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=hg.SGD(1e3, momentum=momentum), epochs=20,
               batch_size=32, callbacks=[recorder], seed=0)
    error = info.value
    assert isinstance(error, HandgradError) and "\n" not in str(error)
    weights = model.get_weights()
    assert np.isfinite(weights).all()
    finished = len(error.history)
    assert error.epoch == finished
    np.testing.assert_array_equal(weights, recorder.weights[-1] if finished else start)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_learning_rate_of_a_thousand_is_reported_as_divergence_for_saturating_networks(digits, activation):
    # The stable log-sum-exp keeps these losses finite (hundreds to millions),
    # so it is the loss-scale rule, not the NaN check, that must catch them.
    X, y = digits
    model = hg.mlp(64, [32], 10, activation=activation, seed=0)
    start = model.get_weights()
    with pytest.raises(hg.TrainingDiverged, match="times its starting scale") as info:
        hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=hg.SGD(1e3), epochs=10, batch_size=32, seed=0)
    assert "\n" not in str(info.value) and "lower the learning rate (now 1000)" in str(info.value)
    assert info.value.epoch == 0 and len(info.value.history) == 0
    np.testing.assert_array_equal(model.get_weights(), start)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_divergence_in_a_later_epoch_keeps_the_last_good_epoch_and_its_history(digits):
    X, y = digits
    model = hg.mlp(64, [32], 10, activation="relu", seed=0)
    recorder = Recorder("r", [])
    with pytest.raises(hg.TrainingDiverged) as info:
        hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=hg.SGD(0.1), epochs=6, batch_size=32, seed=0,
               lr_schedule=lambda t: 0.1 if t < 2 else 1e3, callbacks=[recorder])
    assert info.value.epoch == 2 and len(info.value.history) == 2
    assert info.value.history["train_loss"][-1] < 1.0
    np.testing.assert_array_equal(model.get_weights(), recorder.weights[-1])


def test_a_trained_model_meeting_new_labels_is_judged_against_chance_not_its_own_small_loss(digits):
    # Fine-tuning a well-fitted model on shuffled labels multiplies its loss
    # far beyond 100 times its own starting value, yet it stays near ln 10:
    # that is hard learning, not divergence.
    X, y = digits
    model = hg.mlp(64, [64], 10, activation="tanh", seed=0)
    hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=hg.Adam(1e-2), epochs=30, batch_size=64, seed=0)
    start_loss = hg.evaluate(model, hg.SoftmaxCrossEntropy(), X, y)["val_loss"]
    shuffled = np.random.default_rng(0).permutation(y)
    history = hg.fit(model, hg.SoftmaxCrossEntropy(), X, shuffled, optimizer=hg.Adam(1e-2), epochs=2,
                     batch_size=64, seed=0)
    assert history["train_loss"][0] > hg.training.loop.DIVERGENCE_FACTOR * start_loss
    assert len(history) == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(epochs=0), "epochs must be a positive integer"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(batch_size=2.5), "batch_size must be a positive integer"),
    (dict(l2=-1.0), "l2 must be a non-negative number"),
    (dict(validation_fraction=1.0), "validation_fraction must lie in"),
    (dict(seed=-1), "seed must be a non-negative integer"),
    (dict(initial_epoch=5, epochs=3), "initial_epoch must lie in"),
    (dict(early_stopping="yes"), "early_stopping must be"),
])
def test_bad_training_settings_are_refused_before_any_change(small_digits, kwargs, message):
    X, y = small_digits
    model = fresh_model()
    before = model.get_weights()
    with pytest.raises(HandgradError, match=message):
        hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, **kwargs)
    np.testing.assert_array_equal(model.get_weights(), before)
