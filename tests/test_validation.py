"""Bad input raises handgrad's own DataError, with a one-line message, before any parameter changes."""

import numpy as np
import pytest

import handgrad as hg
from handgrad.tasks import CLASSIFICATION, one_hot
from handgrad.validation import check_features, resolve_dtype

check_targets = CLASSIFICATION.check_targets

N_FEATURES, N_CLASSES = 4, 3


def good_data(n=6):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, N_FEATURES)), np.arange(n) % N_CLASSES


def with_value(row, col, value):
    X, _ = good_data()
    X[row, col] = value
    return X


BAD_FEATURES = {
    "nan": (with_value(2, 1, np.nan), "NaN or inf .*row 2, column 1"),
    "inf": (with_value(0, 3, np.inf), "NaN or inf .*row 0, column 3"),
    "minus-inf": (with_value(5, 0, -np.inf), "NaN or inf"),
    "one-dimensional": (np.zeros(N_FEATURES), "must be 2-D"),
    "three-dimensional": (np.zeros((6, N_FEATURES, 1)), "must be 2-D"),
    "wrong-width": (np.zeros((6, N_FEATURES + 1)), "has 5 features but the model expects 4"),
    "empty": (np.zeros((0, N_FEATURES)), "empty"),
    "no-columns": (np.zeros((6, 0)), "no features"),
    "strings": (np.full((6, N_FEATURES), "1.0"), "dtype"),
    "objects": (np.array([[1, 2, 3, None]] * 6, dtype=object), "dtype"),
    "ragged": ([[1.0, 2.0], [1.0]], "cannot be read|dtype"),
    "too-large-for-float32": (with_value(3, 2, -1e300), "-1e.300 at row 3, column 2, too large for float32"),
}

BAD_TARGETS = {
    "too-few": (np.arange(5) % N_CLASSES, "X has 6 samples but y has 5"),
    "too-many": (np.arange(7) % N_CLASSES, "X has 6 samples but y has 7"),
    "label-too-large": (np.array([0, 1, 2, 3, 0, 1]), r"labels must lie in 0\.\.2"),
    "negative-label": (np.array([0, 1, -1, 2, 0, 1]), r"labels must lie in 0\.\.2"),
    "huge-float-label": (np.array([0, 1, 1e30, 2, 0, 1]), r"labels must lie in 0\.\.2"),
    "fractional-label": (np.array([0, 1, 0.5, 2, 0, 1]), "non-integer"),
    "nan-label": (np.array([0, 1, np.nan, 2, 0, 1]), "non-integer"),
    "string-labels": (np.array(["a", "b", "c", "a", "b", "c"]), "y has dtype"),
    "scalar": (np.array(1), "shape"),
    "three-dimensional": (np.zeros((6, N_CLASSES, 1)), "shape"),
    "matrix-wrong-columns": (np.eye(N_CLASSES + 1)[[0, 1, 2, 3, 0, 1]], "target matrix has 4 columns"),
    "matrix-negative": (-np.eye(N_CLASSES)[[0, 1, 2, 0, 1, 2]], "finite and non-negative"),
    "matrix-nan": (np.full((6, N_CLASSES), np.nan), "finite and non-negative"),
}


def fresh_model():
    return hg.mlp(N_FEATURES, [5], N_CLASSES, seed=0)


def assert_refused(call, model, message):
    before = model.get_weights()
    with pytest.raises(hg.DataError, match=message) as info:
        call()
    assert isinstance(info.value, hg.HandgradError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)
    np.testing.assert_array_equal(model.get_weights(), before)


@pytest.mark.parametrize("case", BAD_FEATURES)
def test_bad_features_are_refused_by_every_entry_point(case):
    X, message = BAD_FEATURES[case]
    _, y = good_data()
    model, loss = fresh_model(), hg.SoftmaxCrossEntropy()
    assert_refused(lambda: hg.loss_and_gradients(model, loss, X, y), model, message)
    optimizer = hg.Adam()
    assert_refused(lambda: hg.fit(model, loss, X, y, optimizer=optimizer, epochs=1, seed=0), model, message)
    assert optimizer.state == [] and optimizer.t == 0
    assert_refused(lambda: model.predict(X), model, message)
    assert_refused(lambda: model.predict_proba(X), model, message)
    assert_refused(lambda: model(X), model, message)


@pytest.mark.parametrize("case", BAD_TARGETS)
def test_bad_targets_are_refused_by_loss_and_gradients_and_fit(case):
    y, message = BAD_TARGETS[case]
    X, _ = good_data()
    model = fresh_model()
    for loss in (hg.SoftmaxCrossEntropy(), hg.SoftmaxBinaryCrossEntropy()):
        assert_refused(lambda loss=loss: hg.loss_and_gradients(model, loss, X, y), model, message)
        assert_refused(lambda loss=loss: hg.fit(model, loss, X, y, epochs=1, seed=0), model, message)


@pytest.mark.parametrize("case", ["nan", "wrong-width", "empty"])
def test_bad_validation_data_is_refused_before_training(case):
    X_val, message = BAD_FEATURES[case]
    X, y = good_data()
    model = fresh_model()
    y_val = np.zeros(len(X_val) if np.ndim(X_val) else 0, dtype=int)
    assert_refused(lambda: hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, validation_data=(X_val, y_val),
                                  epochs=1, seed=0), model, message)


def test_bad_validation_labels_are_refused_before_training():
    X, y = good_data()
    model = fresh_model()
    assert_refused(lambda: hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, validation_data=(X, y + 5),
                                  epochs=1, seed=0), model, "labels must lie in")


def test_integer_valued_float_labels_and_integer_features_are_accepted():
    X, y = good_data()
    value_int, _ = hg.loss_and_gradients(fresh_model(), hg.SoftmaxCrossEntropy(), X, y)
    value_float, _ = hg.loss_and_gradients(fresh_model(), hg.SoftmaxCrossEntropy(), X, y.astype(float))
    assert value_int == value_float
    features = check_features(np.arange(8).reshape(2, 4), np.float32)
    assert features.dtype == np.float32 and features.flags.c_contiguous


def test_check_features_returns_a_contiguous_array_of_the_requested_dtype():
    X = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    out = check_features(X, np.float32, n_features=4)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, X)
    with pytest.raises(hg.DataError, match="X_val has 4 features"):
        check_features(X, np.float32, n_features=5, name="X_val")


def test_check_targets_returns_intp_labels_or_a_float_matrix():
    labels = check_targets(np.array([2, 0, 1], dtype=np.uint8), 3, 3, np.float32)
    assert labels.dtype == np.intp and labels.tolist() == [2, 0, 1]
    Y = check_targets([[0.2, 0.8], [1, 0]], 2, 2, np.float64)
    assert Y.dtype == np.float64 and Y.shape == (2, 2)


def test_one_hot_and_resolve_dtype():
    np.testing.assert_array_equal(one_hot(np.array([1, 0, 2]), 3, np.float32), np.eye(3)[[1, 0, 2]])
    assert one_hot(np.array([1]), 2, np.float32).dtype == np.float32
    assert resolve_dtype("float64") is np.float64 and resolve_dtype(np.float32) is np.float32
    with pytest.raises(hg.DataError, match="not supported"):
        resolve_dtype("int32")
    with pytest.raises(hg.DataError, match="unknown dtype"):
        resolve_dtype("not-a-dtype")
