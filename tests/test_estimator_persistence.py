"""hg.save / hg.load for fitted estimators: the model-file format, no pickle, hostile files refused."""

import json
import pickle
import zipfile

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_multilabel_classification
from sklearn.preprocessing import StandardScaler

import handgrad as hg
from handgrad.errors import ModelFileError
from handgrad.estimators import MLPClassifier, MLPRegressor
from handgrad.io.modelfile import load_model

pytestmark = [pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"), pytest.mark.usefixtures("one_blas_thread")]



@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def fitted_estimators(X, y):
    """Every kind of output, each solver, the extras: (name, estimator, X, y)."""
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    X_ml, Y_ml = make_multilabel_classification(n_samples=80, n_features=4, n_classes=3, random_state=0)
    return [
        ("multiclass-strings", MLPClassifier((8,), max_iter=20, random_state=0).fit(X, labels), X, labels),
        ("binary-bool", MLPClassifier((8,), max_iter=20, random_state=0, dtype="float32").fit(X, y == 1), X, y == 1),
        ("multilabel", MLPClassifier((8,), max_iter=20, random_state=0).fit(X_ml, Y_ml), X_ml, Y_ml),
        ("lbfgs-batch-norm", MLPClassifier((8,), solver="lbfgs", batch_norm=True, max_iter=20,
                                           random_state=0).fit(X, y), X, y),
        ("early-stopping-dropout-class-weight", MLPClassifier(
            (8,), early_stopping=True, dropout=0.1, class_weight={0: 2.0}, max_iter=15, random_state=0,
            n_iter_no_change=np.inf).fit(X, y), X, y),
        ("regressor", MLPRegressor(hidden_layer_sizes=(6,), solver="sgd", max_iter=10, random_state=0).fit(
            X[:, :3], X[:, 3]), X[:, :3], X[:, 3]),
        ("poisson-two-outputs", MLPRegressor("poisson", (6,), max_iter=10, random_state=0).fit(
            X, np.column_stack([y, 2 - y])), X, np.column_stack([y, 2 - y])),
    ]


def test_every_kind_of_estimator_round_trips(iris, tmp_path):
    X, y = iris
    for name, estimator, X_i, y_i in fitted_estimators(X, y):
        path = tmp_path / f"{name}.npz"
        hg.save(estimator, path)
        loaded = hg.load(path)
        assert type(loaded) is type(estimator), name
        assert loaded.get_params() == estimator.get_params(), name
        np.testing.assert_array_equal(loaded.predict(X_i), estimator.predict(X_i))
        if hasattr(estimator, "predict_proba"):
            np.testing.assert_array_equal(loaded.predict_proba(X_i), estimator.predict_proba(X_i))
            np.testing.assert_array_equal(loaded.classes_, estimator.classes_)
            assert loaded.classes_.dtype == estimator.classes_.dtype
        for attribute in ("n_iter_", "t_", "n_layers_", "n_outputs_", "out_activation_", "n_features_in_", "loss_",
                          "loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_",
                          "validation_loss_curve_"):
            assert hasattr(loaded, attribute) == hasattr(estimator, attribute), (name, attribute)
            if hasattr(estimator, attribute):
                assert getattr(loaded, attribute) == getattr(estimator, attribute), (name, attribute)
        assert loaded.score(X_i, y_i) == estimator.score(X_i, y_i)


def test_training_continues_after_loading_exactly_as_without_saving(iris, tmp_path):
    X, y = iris
    clf = MLPClassifier((8,), max_iter=5, random_state=0).fit(X, y)
    hg.save(clf, tmp_path / "clf.npz")
    loaded = hg.load(tmp_path / "clf.npz")
    for estimator in (clf, loaded):              # the optimizer's moments and step count came along
        estimator.partial_fit(X, y)
    for a, b in zip(clf.coefs_ + clf.intercepts_, loaded.coefs_ + loaded.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_feature_names_are_kept(iris, tmp_path):
    pd = pytest.importorskip("pandas")
    X, y = iris
    frame = pd.DataFrame(X, columns=["sepal length", "sepal width", "petal length", "petal width"])
    clf = MLPClassifier((4,), max_iter=3, random_state=0).fit(frame, y)
    hg.save(clf, tmp_path / "named.npz")
    np.testing.assert_array_equal(hg.load(tmp_path / "named.npz").feature_names_in_, clf.feature_names_in_)


def test_the_file_is_plain_arrays_and_json(iris, tmp_path):
    X, y = iris
    clf = MLPClassifier((8,), max_iter=3, random_state=0).fit(X, y)
    hg.save(clf, tmp_path / "clf.npz")
    with np.load(tmp_path / "clf.npz", allow_pickle=False) as f:
        meta = json.loads(f["metadata"].tobytes().decode("utf-8"))
        np.testing.assert_array_equal(f["W1"], clf.coefs_[0])
        assert {"optimizer.0.m", "optimizer.0.v"} <= set(f.files)
    assert meta["kind"] == "estimator" and meta["estimator"]["type"] == "MLPClassifier"
    assert meta["estimator"]["params"]["hidden_layer_sizes"] == [8]
    assert meta["estimator"]["fitted"]["classes_"] == {"dtype": "int64", "values": [0, 1, 2]}
    assert [r["epoch"] for r in meta["history"]] == [0, 1, 2]
    with pytest.raises(ModelFileError, match="hg.load"):
        load_model(tmp_path / "clf.npz")


def test_an_unfitted_estimator_or_another_object_is_refused(tmp_path):
    with pytest.raises(hg.HandgradError, match="not fitted"):
        hg.save(MLPClassifier(), tmp_path / "x.npz")
    with pytest.raises(hg.HandgradError, match="hg.save saves"):
        hg.save(StandardScaler(), tmp_path / "x.npz")


def rewrite(source, target, edit_metadata=None, extra_members=()):
    """Copy ``source`` to ``target`` with its metadata edited and members added."""
    with np.load(source, allow_pickle=False) as f:
        arrays = {name: f[name] for name in f.files}
    meta = json.loads(arrays["metadata"].tobytes().decode("utf-8"))
    if edit_metadata:
        edit_metadata(meta)
    arrays["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    arrays.update(dict(extra_members))
    np.savez(target, **arrays)


HOSTILE_EDITS = {
    "unknown estimator type": lambda m: m["estimator"].update(type="os.system"),
    "a parameter out of range": lambda m: m["estimator"]["params"].update(alpha=-1),
    "an unknown parameter": lambda m: m["estimator"]["params"].update(evil=1),
    "a parameter of a strange type": lambda m: m["estimator"]["params"].update(activation={"__class__": "x"}),
    "classes of an odd dtype": lambda m: m["estimator"]["fitted"]["classes_"].update(dtype="V8"),
    "unsorted classes": lambda m: m["estimator"]["fitted"]["classes_"].update(values=[2, 1, 0]),
    "too few outputs for the classes": lambda m: m["estimator"]["fitted"]["classes_"].update(values=[0, 1, 2, 3]),
    "a counter that is not a number": lambda m: m["estimator"]["fitted"].update(n_iter_="many"),
    "a loss curve of strings": lambda m: m["estimator"]["fitted"].update(loss_curve_=["rm -rf"]),
    "a wrong output activation": lambda m: m["estimator"]["fitted"].update(out_activation_="exp"),
    "a network of the wrong width": lambda m: m["estimator"]["fitted"].update(n_features_in_=5),
    "no estimator entry": lambda m: m.pop("estimator"),
    "an unknown y type": lambda m: m["estimator"]["fitted"].update(y_type_="continuous"),
}


@pytest.mark.parametrize("problem", sorted(HOSTILE_EDITS))
def test_a_damaged_or_hostile_estimator_file_raises_model_file_error(iris, tmp_path, problem):
    X, y = iris
    clf = MLPClassifier((8,), max_iter=3, random_state=0).fit(X, y)
    hg.save(clf, tmp_path / "good.npz")
    rewrite(tmp_path / "good.npz", tmp_path / "bad.npz", HOSTILE_EDITS[problem])
    with pytest.raises(ModelFileError):
        hg.load(tmp_path / "bad.npz")


def test_a_planted_pickle_never_runs(iris, tmp_path):
    X, y = iris
    clf = MLPClassifier((8,), max_iter=3, random_state=0).fit(X, y)
    hg.save(clf, tmp_path / "good.npz")
    ran = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(ran), "w"))

    payload = np.array([Payload()], dtype=object)
    rewrite(tmp_path / "good.npz", tmp_path / "bad.npz", extra_members={"W1": payload})
    with pytest.raises(ModelFileError, match="pickled"):
        hg.load(tmp_path / "bad.npz")
    assert not ran.exists()
    truncated = (tmp_path / "good.npz").read_bytes()[:-100]
    (tmp_path / "truncated.npz").write_bytes(truncated)
    with pytest.raises(ModelFileError):
        hg.load(tmp_path / "truncated.npz")


def test_every_byte_flip_in_the_metadata_is_caught_or_harmless(iris, tmp_path):
    """Flip bytes of the stored file: each load either raises ModelFileError or returns a working estimator."""
    X, y = iris
    clf = MLPClassifier((4,), max_iter=2, random_state=0).fit(X, y)
    hg.save(clf, tmp_path / "good.npz")
    data = bytearray((tmp_path / "good.npz").read_bytes())
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(tmp_path / "good.npz") as archive:
        info = archive.getinfo("metadata.npy")
    start = info.header_offset + 30 + len(info.filename) + 128
    for position in rng.integers(start, start + info.file_size - 128, 60):
        damaged = bytearray(data)
        damaged[position] ^= 0xFF
        (tmp_path / "damaged.npz").write_bytes(damaged)
        try:
            loaded = hg.load(tmp_path / "damaged.npz")
        except ModelFileError:
            continue
        loaded.predict(X)


def test_pickle_still_works_and_the_docs_prefer_the_model_file(iris, tmp_path):
    X, y = iris
    clf = MLPClassifier((4,), max_iter=2, random_state=0).fit(X, y)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict(X), clf.predict(X))
