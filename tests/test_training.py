"""fit: determinism, resumption, validation, schedules as fit applies them, divergence, evaluate, real learning.

Early stopping and the callback hooks are in test_callbacks.py; the schedule
functions themselves in test_schedules.py.
"""

import copy

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

import handgrad as hg
from handgrad.errors import DataError, HandgradError
from handgrad.optim.optimizers import optimizer_from_config
from handgrad.training.loop import DIVERGENCE_FACTOR
from support import Recorder


def fresh_model(seed=0, dtype=np.float32, hidden=(16,)):
    return hg.mlp(64, list(hidden), 10, activation="relu", dtype=dtype, seed=seed)


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
    for kwargs in (dict(optimizer=hg.SGD(0.05)), dict(optimizer=hg.SGD(0.9), lr_schedule=hg.schedules.Constant(0.05)),
                   dict(optimizer=hg.SGD(0.05), lr_schedule=hg.schedules.Cosine(0.05, 2))):
        model = fresh_model()
        hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, epochs=2, batch_size=50, seed=0, **kwargs)
        weights.append(model.get_weights())
    np.testing.assert_array_equal(weights[0], weights[1])
    assert not np.array_equal(weights[0], weights[2])


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


def test_history_is_a_sequence_of_epoch_records(small_digits):
    X, y = small_digits
    history = hg.fit(fresh_model(), hg.SoftmaxCrossEntropy(), X, y, epochs=3, validation_fraction=0.2, seed=0)
    assert len(history) == 3 and list(history) == history.records       # iterating ends, and gives the records
    assert [record["epoch"] for record in history] == [1, 2, 3]
    assert history[-1] is history.records[2] and history[0]["epoch"] == 1 and history[np.int64(1)]["epoch"] == 2
    assert isinstance(history[1:], hg.History) and history[1:]["epoch"] == [2, 3] and len(history[:0]) == 0
    for position in (3, -4):
        with pytest.raises(IndexError, match=f"epoch position {position} is out of range: the history holds 3"):
            history[position]
    with pytest.raises(TypeError, match="epoch position .* or a column name"):
        history[1.5]


def test_history_is_a_table_of_columns(small_digits):
    X, y = small_digits
    history = hg.fit(fresh_model(), hg.SoftmaxCrossEntropy(), X, y, epochs=2, validation_fraction=0.2, seed=0)
    assert history.keys() == ["epoch", "train_loss", "train_accuracy", "lr", "seconds", "val_loss", "val_accuracy"]
    assert "val_accuracy" in history and "val_acc" not in history and 0 not in history
    assert history["val_accuracy"] == [r["val_accuracy"] for r in history.records]
    with pytest.raises(KeyError, match=r"no column 'val_acc' \(did you mean 'val_accuracy'\?\); the columns are "
                                       r"epoch, train_loss, .*val_accuracy"):
        history["val_acc"]
    with pytest.raises(KeyError, match="no column 'val_loss': the history is empty"):
        hg.History()["val_loss"]
    # a column some epochs lack (a run resumed with validation added, say) reads None there
    mixed = hg.History([{"epoch": 1}, {"epoch": 2, "val_loss": 0.5}])
    assert mixed["val_loss"] == [None, 0.5] and repr(mixed) == "History(2 epochs; columns epoch, val_loss)"
    assert repr(hg.History()) == "History(0 epochs)"


@pytest.mark.parametrize("loss", [hg.SoftmaxCrossEntropy(), hg.SoftmaxBinaryCrossEntropy()])
def test_train_loss_of_an_epoch_without_updates_is_the_mean_sample_loss(small_digits, loss):
    X, y = small_digits
    model = fresh_model(dtype=np.float64)
    # A learning rate of 1e-300 moves no weight (every step is far below an ulp),
    # so every minibatch sees the initial model and the epoch's mean must equal
    # the loss of that model on the whole training set.
    history = hg.fit(model, loss, X, y, optimizer=hg.SGD(1e-300), epochs=1, batch_size=64, seed=0)
    expected = hg.evaluate(model, loss, X, y)
    assert history["train_loss"][0] == pytest.approx(expected["val_loss"], rel=1e-12)
    assert history["train_accuracy"][0] == expected["val_accuracy"]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_records_say_how_much_of_the_training_loss_is_the_l2_term(small_digits, reduction):
    X, y = small_digits
    model, loss, l2 = fresh_model(dtype=np.float64), hg.SoftmaxCrossEntropy(reduction), 0.5
    # No weight moves (see above): the epoch's L2 term is the initial weights' (λ/2)·Σ‖W‖².
    history = hg.fit(model, loss, X, y, optimizer=hg.SGD(1e-300), epochs=1, batch_size=64, l2=l2, seed=0)
    weights = np.concatenate([layer.W.ravel() for layer in model.layers if isinstance(layer, hg.Dense)])
    # averaged as train_loss is: per sample for a "mean" loss; a "sum" objective has one term per minibatch
    per_sample = 1 if reduction == "mean" else -(-len(X) // 64) / len(X)
    assert history["l2_term"][0] == pytest.approx(0.5 * l2 * weights @ weights * per_sample, rel=1e-12)
    data_loss = hg.evaluate(model, loss, X, y)["val_loss"]
    assert history["train_loss"][0] - history["l2_term"][0] == pytest.approx(data_loss, rel=1e-12)
    assert "l2_term" not in hg.fit(fresh_model(), loss, X, y, epochs=1, seed=0)       # no penalty, no column


def test_train_loss_is_on_the_per_sample_scale_of_val_loss_for_summed_losses(small_digits):
    X, y = small_digits
    model = fresh_model(dtype=np.float64)
    loss = hg.SoftmaxCrossEntropy("sum")
    history = hg.fit(model, loss, X, y, optimizer=hg.SGD(1e-300), epochs=1, batch_size=64, seed=0)
    assert history["train_loss"][0] == pytest.approx(hg.evaluate(model, loss, X, y)["val_loss"], rel=1e-12)


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
    assert history["train_loss"][0] > DIVERGENCE_FACTOR * start_loss
    assert len(history) == 2


def test_the_divergence_reference_is_the_runs_first_minibatch_or_each_epochs(small_digits):
    X, y = small_digits
    targets = 10.0 * np.eye(10)[y]          # squared error starts far above ln C and falls as the model learns
    scales = {}

    class Scale(hg.Callback):
        def __init__(self, reference):
            self.seen = scales.setdefault(reference, [])

        def on_epoch_end(self, ctx, record):
            self.seen.append(ctx.loss_scale)

    for reference in ("run", "epoch"):
        hg.fit(fresh_model(), hg.SquaredError(), X, targets, optimizer=hg.Adam(1e-2), epochs=3, batch_size=50,
               seed=0, divergence_reference=reference, callbacks=[Scale(reference)])
    assert scales["run"] == [scales["run"][0]] * 3
    assert scales["epoch"][0] == scales["run"][0] and scales["epoch"][2] < scales["epoch"][1] < scales["epoch"][0]


@pytest.mark.parametrize("kwargs, message", [
    (dict(epochs=0), "epochs must be a positive integer"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(batch_size=2.5), "batch_size must be a positive integer"),
    (dict(l2=-1.0), "l2 must be a non-negative number"),
    (dict(validation_fraction=1.0), "validation_fraction must lie in"),
    (dict(seed=-1), "seed must be a non-negative integer"),
    (dict(initial_epoch=5, epochs=3), "initial_epoch must lie in"),
    (dict(early_stopping="yes"), "early_stopping must be"),
    (dict(divergence_reference="batch"), "divergence_reference must be 'run'"),
    (dict(compiled="yes"), "compiled must be None"),
])
def test_bad_training_settings_are_refused_before_any_change(small_digits, kwargs, message):
    X, y = small_digits
    model = fresh_model()
    before = model.get_weights()
    with pytest.raises(HandgradError, match=message):
        hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, **kwargs)
    np.testing.assert_array_equal(model.get_weights(), before)


# -- what fit needs of an optimizer --------------------------------------------

class StepOnly:
    """The least an optimizer can be: plain SGD with a ``step`` method and nothing else."""

    def step(self, params, grads):
        for p, g in zip(params, grads):
            p -= 0.05 * g


def test_an_object_with_only_step_trains_like_the_same_update_in_sgd(small_digits):
    X, y = small_digits
    ours, theirs = fresh_model(), fresh_model()
    history = hg.fit(ours, hg.SoftmaxCrossEntropy(), X, y, optimizer=StepOnly(), epochs=2, batch_size=50, l2=1e-3,
                     validation_fraction=0.2, seed=0)
    hg.fit(theirs, hg.SoftmaxCrossEntropy(), X, y, optimizer=hg.SGD(0.05), epochs=2, batch_size=50, l2=1e-3,
           validation_fraction=0.2, seed=0)
    np.testing.assert_array_equal(ours.get_weights(), theirs.get_weights())
    assert history["lr"] == [None, None] and len(history["val_loss"]) == 2


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
def test_a_step_only_optimizer_that_diverges_gets_its_weights_restored(digits):
    X, y = digits

    class Huge(StepOnly):
        def step(self, params, grads):
            for p, g in zip(params, grads):
                p -= 1e6 * g

    model = hg.mlp(64, [32], 10, activation="identity", seed=0)
    start = model.get_weights()
    with pytest.raises(hg.TrainingDiverged, match="lower the learning rate$") as info:
        hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=Huge(), epochs=3, batch_size=32, seed=0)
    assert info.value.epoch == 0
    np.testing.assert_array_equal(model.get_weights(), start)


@pytest.mark.parametrize("optimizer, kwargs, message", [
    (object(), {}, r"^the optimizer object has no step\(params, grads\) method; pass hg.Adam\(\)"),
    (StepOnly(), {"lr_schedule": hg.schedules.Constant(0.1)}, "^lr_schedule sets optimizer.lr, but StepOnly has no lr"),
])
def test_an_unusable_optimizer_is_refused_in_one_line_before_any_change(small_digits, optimizer, kwargs, message):
    X, y = small_digits
    model = fresh_model()
    before = model.get_weights()
    with pytest.raises(HandgradError, match=message) as info:
        hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=optimizer, epochs=1, **kwargs)
    assert "\n" not in str(info.value)
    np.testing.assert_array_equal(model.get_weights(), before)


# -- evaluate --------------------------------------------------------------------

def test_evaluate_is_the_mean_loss_and_accuracy_in_any_batch_size(small_digits):
    X, y = small_digits
    model, loss = fresh_model(), hg.SoftmaxCrossEntropy()
    logits = model(X)
    expected_loss = loss.forward(logits, y)
    expected_accuracy = np.mean(logits.argmax(axis=1) == y)
    for batch_size in (1, 7, 300, 4096):
        result = hg.evaluate(model, loss, X, y, batch_size=batch_size)
        assert result["val_loss"] == pytest.approx(expected_loss, rel=1e-5)
        assert result["val_accuracy"] == expected_accuracy
    one_hot = np.eye(10)[y]
    assert hg.evaluate(model, loss, X.tolist(), one_hot)["val_accuracy"] == expected_accuracy


@pytest.mark.parametrize("X, y, error, message", [
    (np.zeros(64), np.zeros(1, int), DataError, "must be 2-D"),
    (np.zeros((0, 64)), np.zeros(0, int), DataError, "empty"),
    (np.zeros((3, 63)), np.zeros(3, int), DataError, "has 63 features but the model expects 64"),
    (np.full((3, 64), np.nan), np.zeros(3, int), DataError, "NaN or inf"),
    (np.zeros((3, 64)), np.zeros(4, int), DataError, "X has 3 samples but y has 4"),
    (np.zeros((3, 64)), np.array([0, 1, 10]), DataError, "labels must lie in 0..9"),
    (np.zeros((3, 64)), np.full((3, 10), np.nan), DataError, "target matrix must be finite"),
    (np.zeros((3, 64)), np.array(["a", "b", "c"]), DataError, "encode class labels as integers"),
])
def test_evaluate_refuses_bad_input_in_one_line(X, y, error, message):
    with pytest.raises(error, match=message) as info:
        hg.evaluate(fresh_model(), hg.SoftmaxCrossEntropy(), X, y)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True, "10"])
def test_evaluate_refuses_a_bad_batch_size(small_digits, batch_size):
    X, y = small_digits
    with pytest.raises(HandgradError, match="batch_size must be a positive integer"):
        hg.evaluate(fresh_model(), hg.SoftmaxCrossEntropy(), X, y, batch_size=batch_size)


# -- dropout and batch norm in training ---------------------------------------------------------

def dropout_batchnorm_model(seed=0, hidden=16):
    return hg.Sequential(hg.Dense(64, hidden), hg.BatchNorm(hidden), hg.ReLU(), hg.Dropout(0.2),
                         hg.Dense(hidden, 10), seed=seed)


def test_dropout_and_batch_norm_give_bit_identical_runs_for_one_seed(small_digits):
    X, y = small_digits
    runs = []
    for _ in range(2):
        model = dropout_batchnorm_model()
        hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=hg.Adam(1e-2), epochs=3, batch_size=32, l2=1e-3,
               validation_fraction=0.2, seed=7)
        runs.append((model.get_weights(), model.get_buffers()))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    for name in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][name], runs[1][1][name])


def test_resuming_a_dropout_batch_norm_run_reproduces_it_exactly(small_digits):
    X, y = small_digits
    settings = dict(batch_size=32, l2=1e-3, validation_fraction=0.2, seed=3)
    loss = hg.SoftmaxCrossEntropy()
    straight = dropout_batchnorm_model()
    straight_history = hg.fit(straight, loss, X, y, optimizer=hg.Adam(1e-2), epochs=6, **settings)
    resumed = dropout_batchnorm_model()
    optimizer = hg.Adam(1e-2)
    history = hg.fit(resumed, loss, X, y, optimizer=optimizer, epochs=3, **settings)
    resumed.predict(X)                              # use in between changes nothing: inference draws no mask
    history = hg.fit(resumed, loss, X, y, optimizer=optimizer, epochs=6, initial_epoch=3, history=history, **settings)
    np.testing.assert_array_equal(resumed.get_weights(), straight.get_weights())
    for name, value in resumed.get_buffers().items():
        np.testing.assert_array_equal(value, straight.get_buffers()[name])
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        assert history[key] == straight_history[key]


def test_batch_norm_and_dropout_reach_at_least_the_plain_networks_held_out_accuracy(digits):
    """Dense-BatchNorm-ReLU-Dropout(0.2)-Dense against Dense-ReLU-Dense, same budget, mean over three splits.

    The budget (5 epochs of Adam at 1e-2, batches of 32, 128 hidden units) is one both train
    well in; batch norm's faster start shows: measured 0.972 against 0.967 here, and over
    eight splits 0.974 against 0.965.  With 20 epochs the plain network catches up (0.979
    against 0.978 over eight splits, within the split-to-split spread of ±0.005).
    """
    X, y = digits
    accuracy = {"plain": [], "batchnorm-dropout": []}
    for split in range(3):
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=split, stratify=y)
        for kind in accuracy:
            layers = [hg.Dense(64, 128), hg.ReLU(), hg.Dense(128, 10)] if kind == "plain" else \
                [hg.Dense(64, 128), hg.BatchNorm(128), hg.ReLU(), hg.Dropout(0.2), hg.Dense(128, 10)]
            model = hg.Sequential(*layers, seed=split)
            hg.fit(model, hg.SoftmaxCrossEntropy(), X_train, y_train, optimizer=hg.Adam(1e-2), epochs=5,
                   batch_size=32, seed=split)
            accuracy[kind].append(np.mean(model.predict(X_test) == y_test))
    assert np.mean(accuracy["batchnorm-dropout"]) >= np.mean(accuracy["plain"]) >= 0.95, accuracy
