"""On-the-fly augmentation: image shifts, and fit's augment hook (seeded, resumable, training rows only)."""

import numpy as np
import pytest

import handgrad as hg
from handgrad.data.augment import Compose, FlipImages, ShiftImages, flip_images, image_augmentation, shift_images
from handgrad.errors import HandgradError


def test_each_image_moves_by_its_own_shift_within_the_bound():
    aug = shift_images((6, 5), max_shift=2)
    X = np.zeros((400, 30), dtype=np.float32)
    X[:, 2 * 5 + 2] = 1.0                                   # one lit pixel at (2, 2), the centre
    out = aug(X, np.random.default_rng(0))
    assert out.shape == X.shape and out.dtype == X.dtype
    where = np.argwhere(out.reshape(400, 6, 5) == 1)
    assert len(where) == 400                                # the pixel stays inside the frame, once per image
    moves = {(int(i) - 2, int(j) - 2) for _, i, j in where}
    assert moves == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}


def test_a_shifted_image_is_the_original_moved_with_zeros_brought_in():
    rng = np.random.default_rng(1)
    X = rng.random((50, 7 * 9)).astype(np.float64)
    out = shift_images((7, 9), max_shift=3)(X, np.random.default_rng(2))
    dy, dx = np.random.default_rng(2).integers(-3, 4, size=(2, 50))
    for r in range(50):
        expected = np.zeros((7, 9))
        image = X[r].reshape(7, 9)
        for i in range(7):
            for j in range(9):
                if 0 <= i - dy[r] < 7 and 0 <= j - dx[r] < 9:
                    expected[i, j] = image[i - dy[r], j - dx[r]]
        np.testing.assert_array_equal(out[r].reshape(7, 9), expected)


def test_the_input_batch_is_not_changed():
    X = np.arange(2 * 16, dtype=np.float32).reshape(2, 16)
    before = X.copy()
    shift_images((4, 4), 1)(X, np.random.default_rng(0))
    np.testing.assert_array_equal(X, before)


@pytest.mark.parametrize("shape, shift, message", [((0, 4), 1, "image_shape"), ((4, 4), 4, "max_shift"),
                                                    ((4, 4), -1, "max_shift"), ((4, 4), 1.5, "max_shift")])
def test_bad_settings_are_refused(shape, shift, message):
    with pytest.raises(HandgradError, match=message):
        ShiftImages(shape, shift)


def test_rows_of_the_wrong_size_are_refused():
    with pytest.raises(HandgradError, match="4x4 = 16 pixels"):
        shift_images((4, 4), 1)(np.zeros((3, 15)), np.random.default_rng(0))


def test_a_flipped_image_is_the_original_mirrored_left_to_right():
    X = np.random.default_rng(3).random((60, 5 * 7)).astype(np.float32)
    out = flip_images((5, 7))(X, np.random.default_rng(4))
    flipped = np.random.default_rng(4).random(60) < 0.5
    assert 10 < flipped.sum() < 50                          # both outcomes occur
    for r in range(60):
        image, expected = X[r].reshape(5, 7), np.empty((5, 7), dtype=np.float32)
        for i in range(5):
            for j in range(7):
                expected[i, j] = image[i, 6 - j] if flipped[r] else image[i, j]
        np.testing.assert_array_equal(out[r].reshape(5, 7), expected)
    assert out.dtype == X.dtype and not np.shares_memory(out, X)


def test_flips_and_shifts_compose_drawing_from_one_generator():
    X = np.random.default_rng(5).random((40, 36)).astype(np.float32)
    both = image_augmentation((6, 6), shift=1, flip=True)
    assert isinstance(both, Compose)
    rng = np.random.default_rng(6)
    expected = shift_images((6, 6), 1)(flip_images((6, 6))(X, rng), rng)
    np.testing.assert_array_equal(both(X, np.random.default_rng(6)), expected)
    np.testing.assert_array_equal(both(X, np.random.default_rng(6)), expected)          # the same draws: the same
    assert image_augmentation((6, 6)) is None
    assert isinstance(image_augmentation((6, 6), shift=2), ShiftImages)     # shifts alone draw as before
    assert isinstance(image_augmentation((6, 6), flip=True), FlipImages)


@pytest.mark.parametrize("p", [-0.1, 1.5, True, "half"])
def test_a_flip_probability_outside_0_1_is_refused(p):
    with pytest.raises(HandgradError, match="probability"):
        FlipImages((4, 4), p)


def test_flips_refuse_rows_of_the_wrong_size():
    with pytest.raises(HandgradError, match="4x4 = 16 pixels"):
        flip_images((4, 4))(np.zeros((3, 15)), np.random.default_rng(0))


def _problem():
    rng = np.random.default_rng(0)
    X = rng.random((120, 16)).astype(np.float32)
    return X, (X[:, :8].sum(axis=1) > 4).astype(int)


def _fit(epochs, augment, **kwargs):
    X, y = _problem()
    model = hg.mlp(16, [8], 2, seed=0)
    history = hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=hg.Adam(1e-2), epochs=epochs, batch_size=16,
                     seed=3, augment=augment, validation_fraction=0.25, **kwargs)
    return model, history


def test_fit_with_augmentation_is_reproducible_and_resumes_exactly():
    straight, history = _fit(4, shift_images((4, 4), 1))
    again, _ = _fit(4, shift_images((4, 4), 1))
    np.testing.assert_array_equal(straight.get_weights(), again.get_weights())
    plain, _ = _fit(4, None)
    assert not np.array_equal(plain.get_weights(), straight.get_weights())     # the hook did change the batches
    X, y = _problem()
    resumed = hg.mlp(16, [8], 2, seed=0)
    optimizer = hg.Adam(1e-2)
    settings = dict(batch_size=16, seed=3, validation_fraction=0.25)
    partial = hg.fit(resumed, hg.SoftmaxCrossEntropy(), X, y, optimizer=optimizer, epochs=2,
                     augment=shift_images((4, 4), 1), **settings)
    hg.fit(resumed, hg.SoftmaxCrossEntropy(), X, y, optimizer=optimizer, epochs=4, initial_epoch=2, history=partial,
           augment=shift_images((4, 4), 1), **settings)
    np.testing.assert_array_equal(resumed.get_weights(), straight.get_weights())
    assert partial["val_loss"] == history["val_loss"]


def test_the_hook_sees_training_batches_only_and_must_keep_their_shape():
    seen = []

    def spy(Xb, rng):
        seen.append(len(Xb))
        return Xb.copy()

    _fit(1, spy)
    assert sum(seen) == 90                                  # 120 rows less the 30 held out for validation
    with pytest.raises(HandgradError, match="must return an array of Xb's shape"):
        _fit(1, lambda Xb, rng: Xb[:, :4].copy())
