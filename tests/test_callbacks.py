"""Callbacks: the hooks fit calls and their order, stopping a run, and EarlyStopping."""

from types import SimpleNamespace

import numpy as np
import pytest

import handgrad as hg
from handgrad.errors import HandgradError
from support import Recorder


def fresh_model(seed=0, hidden=(16,)):
    return hg.mlp(64, list(hidden), 10, activation="relu", seed=seed)


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
    assert stopper.stopped_epoch == len(history) and stopper.state_dict()["stopped_epoch"] == len(history)
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

def test_a_failing_run_calls_on_train_abort_instead_of_on_train_end(small_digits):
    X, y = small_digits
    log = []

    class Aborts(Recorder):
        def on_train_abort(self, ctx, error):
            self.log.append((self.name, "abort", type(error).__name__, ctx.epoch))

    class Fails(hg.Callback):
        def on_epoch_end(self, ctx, record):
            if record["epoch"] == 2:
                raise RuntimeError("a failing callback")

    with pytest.raises(RuntimeError, match="a failing callback"):
        hg.fit(fresh_model(), hg.SoftmaxCrossEntropy(), X, y, epochs=5, batch_size=150,
               callbacks=[Aborts("a", log), Fails(), Recorder("plain", [])], seed=0)
    assert log[-1] == ("a", "abort", "RuntimeError", 1)
    assert ("a", "end") not in log and [entry for entry in log if entry[1] == "epoch"] == [("a", "epoch", 1),
                                                                                        ("a", "epoch", 2)]


# -- EarlyStopping on its own ------------------------------------------------------

def _feed(stopper, values, key="val_loss"):
    """Give ``stopper`` one record per value; return the epoch after which it stopped (None if it did not)."""
    model = hg.mlp(2, [], 2, seed=0)
    ctx = SimpleNamespace(model=model, stop=False)
    for epoch, value in enumerate(values):
        model.flat_parameters[...] = epoch                   # the weights of epoch k are all k
        stopper.on_epoch_end(ctx, {"epoch": epoch, key: value})
        if ctx.stop:
            return epoch
    return None


def test_early_stopping_counts_epochs_without_an_improvement_of_min_delta():
    stopper = hg.EarlyStopping(patience=2, min_delta=0.1)
    # 0.95 and 0.91 improve on 1.0 by less than min_delta: they are not improvements.
    assert _feed(stopper, [1.0, 0.95, 0.91, 0.5]) == 2
    assert (stopper.best, stopper.best_epoch, stopper.wait) == (1.0, 0, 2)
    np.testing.assert_array_equal(stopper.best_weights, 0)


def test_early_stopping_in_max_mode_follows_rising_values():
    stopper = hg.EarlyStopping(monitor="val_accuracy", mode="max", patience=2)
    assert _feed(stopper, [0.5, 0.7, 0.9, 0.9, 0.8, 0.95], key="val_accuracy") == 4
    assert (stopper.best, stopper.best_epoch) == (0.9, 2)
    np.testing.assert_array_equal(stopper.best_weights, 2)


def test_early_stopping_state_round_trips_and_continues_where_it_was():
    first = hg.EarlyStopping(patience=3)
    assert _feed(first, [1.0, 0.8, 0.9]) is None
    second = hg.EarlyStopping(patience=3)
    second.load_state_dict(first.state_dict())
    assert (second.best, second.best_epoch, second.wait) == (0.8, 1, 1)
    np.testing.assert_array_equal(second.best_weights, first.best_weights)
    assert second.best_weights is not first.best_weights
    assert _feed(second, [0.85, 0.95]) == 1                 # two more epochs without progress: three in a row


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="lowest"), "mode must be 'min' or 'max'"),
    (dict(patience=0), "patience must be at least 1"),
])
def test_early_stopping_refuses_bad_settings(kwargs, message):
    with pytest.raises(HandgradError, match=message):
        hg.EarlyStopping(**kwargs)
