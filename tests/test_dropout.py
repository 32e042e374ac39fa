"""Dropout: inverted scaling, the mask shared by forward and backward, modes, gradcheck, seeded masks."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import handgrad as hg
from handgrad.errors import HandgradError

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


def test_the_documented_contract(rng):
    X, G = rng.standard_normal((50, 40)), rng.standard_normal((50, 40))
    d = hg.Dropout(0.3)
    d.train()
    A = d.forward(X)
    GX = d.backward(G)
    kept = d.mask
    assert kept.shape == X.shape and kept.dtype == bool
    np.testing.assert_array_equal(A[kept], X[kept] * (1 / 0.7))          # kept units scaled by 1/(1 − p)
    np.testing.assert_array_equal(A[~kept], 0)
    np.testing.assert_array_equal(GX[kept], G[kept] * (1 / 0.7))         # backward: the same mask
    np.testing.assert_array_equal(GX[~kept], 0)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_each_unit_is_dropped_with_probability_p(p):
    d = hg.Dropout(p).train()
    d.reseed(0)
    d.forward(np.ones((400, 500)))
    # 200 000 Bernoulli draws: the dropped share is within 0.005 of p with overwhelming probability
    # (its standard deviation is at most 0.0011).
    assert (~d.mask).mean() == pytest.approx(p, abs=0.005)


def test_inverted_scaling_keeps_the_mean_of_each_unit():
    d = hg.Dropout(0.25).train()
    d.reseed(1)
    A = d.forward(np.full((100_000, 3), 2.0))
    np.testing.assert_allclose(A.mean(axis=0), 2.0, rtol=0.01)


def test_inference_mode_and_p_zero_are_the_identity(rng):
    X, G = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    for d in (hg.Dropout(0.5).eval(), hg.Dropout(0.0).train()):
        np.testing.assert_array_equal(d.forward(X), X)
        assert d.mask is None
        np.testing.assert_array_equal(d.backward(G), G)


def test_backward_uses_the_mask_of_the_forward_pass_not_the_current_mode(rng):
    X, G = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    d = hg.Dropout(0.5).train()
    A = d.forward(X)
    d.eval()                                    # switching modes between the passes changes nothing
    np.testing.assert_array_equal(d.backward(G), G * (A != 0) * 2.0)


def test_float32_masks_stay_float32(rng):
    d = hg.Dropout(0.2).train()
    A = d.forward(rng.standard_normal((4, 3)).astype(np.float32))
    assert A.dtype == np.float32 and d.backward(np.ones_like(A)).dtype == np.float32


def test_the_same_seed_draws_the_same_mask_and_another_seed_another():
    X = np.ones((20, 30))
    masks = []
    for seed in (5, 5, 6):
        d = hg.Dropout(0.5).train()
        d.reseed(seed)
        d.forward(X)
        masks.append(d.mask)
    np.testing.assert_array_equal(masks[0], masks[1])
    assert not np.array_equal(masks[0], masks[2])


def test_two_dropout_layers_of_one_model_draw_different_masks():
    model = hg.Sequential(hg.Dense(4, 30), hg.Dropout(0.5), hg.Dense(30, 30), hg.Dropout(0.5), hg.Dense(30, 2),
                          seed=0)
    model.reseed(1, 2, 3)
    model.forward(np.ones((10, 4), dtype=np.float32))
    assert not np.array_equal(model.layers[1].mask, model.layers[3].mask)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), width=st.integers(1, 6), seed=SEEDS, p=st.sampled_from([0.1, 0.5, 0.9]))
def test_training_mode_backward_matches_central_differences(n, width, seed, p):
    X = np.random.default_rng(seed).standard_normal((n, width))
    report = hg.gradcheck(hg.Dropout(p).train(), X, seed=seed)
    assert report.max_error < 1e-6, str(report)


def test_gradcheck_holds_the_mask_fixed_while_loss_and_gradients_draws_a_new_one(rng):
    model = hg.Sequential(hg.Dense(5, 8, dtype=np.float64), hg.Tanh(), hg.Dropout(0.5),
                          hg.Dense(8, 3, dtype=np.float64), seed=0)
    X, y = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
    first = hg.loss_and_gradients(model, hg.SoftmaxCrossEntropy(), X, y)[0]
    second = hg.loss_and_gradients(model, hg.SoftmaxCrossEntropy(), X, y)[0]
    assert first != second                      # a new mask per evaluation: no fixed function to differentiate
    report = hg.gradcheck(model, hg.SoftmaxCrossEntropy(), X, y, l2=1e-2)
    assert report.passed, str(report)


def test_dropout_right_after_dense_works_in_place_and_passes_gradcheck(rng):
    model = hg.Sequential(hg.Dense(5, 8, dtype=np.float64), hg.Dropout(0.3), hg.ReLU(),
                          hg.Dense(8, 3, dtype=np.float64), seed=0)
    X, y = rng.standard_normal((7, 5)), rng.integers(0, 3, 7)
    assert hg.Dropout.in_place
    report = hg.gradcheck(model, hg.SoftmaxCrossEntropy(), X, y)
    assert report.passed, str(report)


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, float("nan"), "0.5", True, None])
def test_p_outside_zero_one_is_refused_with_the_remedy(p):
    with pytest.raises(HandgradError, match=r"Dropout p is the probability of dropping a unit and must lie in "
                                            r"\[0, 1\), got .*; use e\.g\. hg\.Dropout\(0\.2\)"):
        hg.Dropout(p)


def test_predict_is_deterministic_and_leaves_the_training_mode_alone(digits):
    X, _ = digits
    model = hg.Sequential(hg.Dense(64, 32), hg.ReLU(), hg.Dropout(0.5), hg.Dense(32, 10), seed=0)
    assert model.training                                     # models start in training mode, as in PyTorch
    first, second = model.predict_proba(X), model.predict_proba(X)
    np.testing.assert_array_equal(first, second)
    assert model.training and model.layers[2].training
    with model.inference():
        np.testing.assert_array_equal(hg.softmax(model(X)), first)
    assert model.training
    assert not np.array_equal(model(X), model(X))             # model(X) follows the current mode


def test_fit_trains_in_training_mode_and_leaves_inference_mode(digits):
    X, y = digits
    model = hg.Sequential(hg.Dense(64, 16), hg.ReLU(), hg.Dropout(0.5), hg.Dense(16, 10), seed=0)
    modes = []

    class Spy(hg.Callback):
        def on_batch_end(self, ctx, batch, n_batches, loss):
            modes.append(ctx.model.layers[2].training)

    hg.fit(model, hg.SoftmaxCrossEntropy(), X[:200], y[:200], epochs=2, batch_size=50, validation_fraction=0.2,
           callbacks=[Spy()], seed=0)
    assert modes == [True] * 8                                # validation in between did not switch it off
    assert not model.training


def test_fit_with_dropout_is_deterministic_per_seed(digits):
    X, y = digits
    weights = {}
    for run, seed in (("a", 3), ("b", 3), ("c", 4)):
        model = hg.Sequential(hg.Dense(64, 16), hg.ReLU(), hg.Dropout(0.3), hg.Dense(16, 10), seed=0)
        hg.fit(model, hg.SoftmaxCrossEntropy(), X[:300], y[:300], optimizer=hg.Adam(1e-2), epochs=3, batch_size=32,
               seed=seed)
        weights[run] = model.get_weights()
    np.testing.assert_array_equal(weights["a"], weights["b"])
    assert not np.array_equal(weights["a"], weights["c"])
