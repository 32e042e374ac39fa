"""Learning-rate schedules: each formula checked directly, at chosen and at many points."""

import math

import numpy as np
import pytest

import handgrad as hg
from handgrad.errors import HandgradError
from handgrad.optim import schedules

TIMES = np.linspace(0, 12, 97)          # whole and fractional epochs, past the end as well


def test_constant_is_its_rate_at_every_time():
    schedule = schedules.Constant(0.03)
    assert {schedule(t) for t in TIMES} == {0.03}


@pytest.mark.parametrize("lr0, lr_min, epochs", [(0.1, 0.0, 10), (3e-3, 1e-4, 7.5), (1.0, 0.5, 1)])
def test_cosine_without_warmup_is_half_a_cosine_from_lr0_to_lr_min(lr0, lr_min, epochs):
    schedule = schedules.Cosine(lr0, epochs, final_lr=lr_min)
    for t in TIMES:
        expected = lr_min + 0.5 * (lr0 - lr_min) * (1 + math.cos(math.pi * min(t, epochs) / epochs))
        assert schedule(t) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert schedule(0) == lr0
    assert schedule(epochs / 2) == pytest.approx((lr0 + lr_min) / 2, rel=1e-12)
    assert schedule(epochs) == pytest.approx(lr_min, abs=1e-15)
    assert schedule(epochs + 5) == schedule(epochs)          # it stays at lr_min after the last epoch


def test_cosine_with_warmup_rises_linearly_then_follows_the_cosine_over_the_remaining_epochs():
    lr0, lr_min, epochs, warmup = 0.2, 0.01, 10, 2.5
    schedule = schedules.Cosine(lr0, epochs, warmup=warmup, final_lr=lr_min)
    for t in TIMES:
        if t < warmup:
            expected = lr0 * t / warmup
        else:
            T = epochs - warmup
            expected = lr_min + 0.5 * (lr0 - lr_min) * (1 + math.cos(math.pi * min(t - warmup, T) / T))
        assert schedule(t) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert schedule(0) == 0 and schedule(1.25) == pytest.approx(0.1) and schedule(warmup) == lr0


@pytest.mark.parametrize("epochs, warmup", [(2, 2), (1, 3.5)])
def test_cosine_needs_more_epochs_than_warmup(epochs, warmup):
    with pytest.raises(HandgradError, match="needs epochs > warmup"):
        schedules.Cosine(0.1, epochs, warmup=warmup)


def test_step_decay_multiplies_by_factor_every_so_many_epochs():
    schedule = schedules.StepDecay(0.1, every=3, factor=0.5)
    for t in TIMES:
        assert schedule(t) == pytest.approx(0.1 * 0.5 ** math.floor(t / 3), rel=1e-15)
    assert [schedule(t) for t in (0, 2.99, 3, 5.5, 6)] == [0.1, 0.1, 0.05, 0.05, 0.025]
    assert schedules.StepDecay(1.0, every=1)(2) == pytest.approx(0.01)      # factor 0.1 by default


def test_a_schedule_steers_fit_between_batches(small_digits):
    # fit asks the schedule before every batch (t = epoch + batch / batches), so a
    # step schedule switches the rate exactly at the epoch boundaries.
    X, y = small_digits
    rates = []

    class Rates(hg.Callback):
        def on_batch_end(self, ctx, batch, n_batches, loss):
            rates.append(ctx.optimizer.lr)

    hg.fit(hg.mlp(64, [8], 10, seed=0), hg.SoftmaxCrossEntropy(), X, y, optimizer=hg.SGD(1.0), epochs=4,
           batch_size=100, lr_schedule=schedules.StepDecay(0.1, every=2, factor=0.5), callbacks=[Rates()], seed=0)
    assert rates == [0.1] * 6 + [0.05] * 6
