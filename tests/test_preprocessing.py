"""Preprocessor: the image and tabular rules, their stored form, and bad input."""

import json

import numpy as np
import pytest

from handgrad.data.preprocessing import Preprocessor
from handgrad.errors import DataError, ModelFileError


def test_image_rule_divides_by_the_largest_training_pixel(rng):
    X = rng.integers(0, 17, size=(50, 64)).astype(float)
    X[0, 0] = 16
    p = Preprocessor.fit(X, "image")
    assert p.scale == 16
    np.testing.assert_allclose(p.transform(X), X / 16)
    mnist_like = rng.integers(0, 256, size=(20, 784)).astype(float)
    mnist_like[3, 5] = 255
    np.testing.assert_allclose(Preprocessor.fit(mnist_like, "image").transform(mnist_like), mnist_like / 255)


def test_image_rule_on_all_zero_data_keeps_values():
    p = Preprocessor.fit(np.zeros((4, 9)), "image")
    np.testing.assert_array_equal(p.transform(np.full((2, 9), 3.0)), np.full((2, 9), 3.0))


def test_image_scale_is_fitted_on_training_data_only(rng):
    p = Preprocessor.fit(np.full((3, 4), 10.0), "image")
    np.testing.assert_allclose(p.transform(np.full((1, 4), 20.0)), 2.0)


def test_tabular_rule_standardises_each_column(rng):
    X = rng.normal(loc=[5, -3, 100], scale=[2, 0.1, 30], size=(200, 3))
    Z = Preprocessor.fit(X, "tabular").transform(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), 1, rtol=1e-12)


def test_constant_columns_map_to_zero_without_dividing_by_zero():
    X = np.array([[1.0, 0.1, 7.0], [2.0, 0.1, 7.0], [3.0, 0.1, 7.0]])
    p = Preprocessor.fit(X, "tabular")
    Z = p.transform(X)
    assert np.isfinite(Z).all()
    np.testing.assert_allclose(Z[:, 1:], 0, atol=1e-15)
    np.testing.assert_allclose(p.scale[1:], 1.0)


def test_single_sample_is_standardised_to_zero():
    Z = Preprocessor.fit(np.array([[4.0, -2.0]]), "tabular").transform(np.array([[4.0, -2.0], [5.0, -2.0]]))
    np.testing.assert_array_equal(Z, [[0, 0], [1, 0]])


@pytest.mark.parametrize("kind", ["image", "tabular"])
def test_dict_round_trip_through_json_reproduces_the_transform(rng, kind):
    X = rng.normal(size=(30, 5)) * 7 + 2
    p = Preprocessor.fit(X, kind)
    q = Preprocessor.from_dict(json.loads(json.dumps(p.to_dict())))
    assert q.kind == kind and q.n_features == 5
    np.testing.assert_array_equal(q.transform(X), p.transform(X))


def test_transform_output_dtype_and_input_left_alone(rng):
    X = rng.normal(size=(6, 3))
    before = X.copy()
    p = Preprocessor.fit(X, "tabular")
    out = p.transform(X, dtype=np.float32)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(X, before)
    assert p.transform(X).dtype == np.float64


def test_bad_inputs_raise_data_errors(rng):
    with pytest.raises(DataError, match="unknown preprocessing kind"):
        Preprocessor.fit(np.ones((2, 2)), "audio")
    with pytest.raises(DataError, match="NaN or inf"):
        Preprocessor.fit(np.array([[1.0, np.nan]]), "tabular")
    p = Preprocessor.fit(rng.normal(size=(5, 3)), "tabular")
    with pytest.raises(DataError, match="has 4 features but the model expects 3"):
        p.transform(np.ones((2, 4)))
    with pytest.raises(DataError, match="NaN or inf"):
        p.transform(np.array([[0.0, np.inf, 0.0]]))


@pytest.mark.parametrize("state", [
    None,
    {},
    {"kind": "audio"},
    {"kind": "image"},
    {"kind": "image", "n_features": 4, "scale": 0},
    {"kind": "image", "n_features": -1, "scale": 255},
    {"kind": "image", "n_features": "784", "scale": 255},
    {"kind": "image", "n_features": 4, "scale": "lots"},
    {"kind": "tabular", "mean": [0, 1]},
    {"kind": "tabular", "mean": [0, 1], "std": [1]},
    {"kind": "tabular", "mean": [0, 1], "std": [1, 0]},
    {"kind": "tabular", "mean": [0, None], "std": [1, 1]},
    {"kind": "tabular", "mean": [[0, 1]], "std": [[1, 1]]},
    {"kind": "tabular", "mean": [], "std": []},
    {"kind": "tabular", "mean": [float("nan")], "std": [1]},
])
def test_malformed_stored_settings_raise_model_file_errors(state):
    with pytest.raises(ModelFileError, match="preprocessing"):
        Preprocessor.from_dict(state)
