"""ONNX export (``hg.to_onnx``, skl2onnx, ``handgrad export``): ONNX Runtime computes what handgrad predicts.

Every graph passes ``onnx.checker`` (full check, with shape inference) and
its outputs equal handgrad's to 1e-5 in float32 (relative to values above 1,
absolute below), 1e-9 in float64.  The quick profile pairs each activation
with one loss; the CI profile runs every pair.
"""

import csv
import itertools
import subprocess
import sys
import warnings

import numpy as np
import pytest

import handgrad as hg
from handgrad.cli import main
from handgrad.data.preprocessing import Preprocessor
from handgrad.io.modelfile import load_model, save_model
from support import PROFILE, ci_only

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOLERANCE = {np.float32: 1e-5, np.float64: 1e-9}
BUILT_IN = "handgrad."
ACTIVATIONS = [cls for cls in hg.activations().values() if cls.__module__.startswith(BUILT_IN)]
LOSSES = [cls for cls in hg.losses().values() if cls.__module__.startswith(BUILT_IN)]
# ONNX Runtime's CPU kernels of LeakyRelu, Elu, Softplus and Gelu (Erf) are float32 only.
DOUBLE_KERNELS = {"identity", "sigmoid", "tanh", "relu"}
PAIRS = (list(itertools.product(ACTIVATIONS, LOSSES)) if PROFILE == "ci"
         else [(act, LOSSES[i % len(LOSSES)]) for i, act in enumerate(ACTIVATIONS)])
CASES = [(act, loss, dtype) for act, loss in PAIRS for dtype in (np.float32, np.float64)
         if dtype == np.float32 or act.name in DOUBLE_KERNELS]


def run(model, X):
    """``{output name: array}`` of ONNX Runtime on ``X``, after the full ONNX check."""
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, {session.get_inputs()[0].name: X})))


def assert_close(actual, expected, dtype=np.float32):
    tolerance = TOLERANCE[np.dtype(dtype).type]
    np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance)


def network(activation, n_in=5, n_out=3, dtype=np.float32, seed=0):
    """Dense → BatchNorm → activation → Dropout → Dense, the batch norm holding statistics as training leaves them."""
    rng = np.random.default_rng(seed)
    model = hg.Sequential(hg.Dense(n_in, 7, dtype=dtype), hg.BatchNorm(7, dtype=dtype), activation(),
                          hg.Dropout(0.3), hg.Dense(7, n_out, dtype=dtype), seed=seed)
    norm = model.layers[1]
    norm.gamma[...] = rng.uniform(0.5, 2, 7)
    norm.beta[...] = rng.normal(size=7)
    norm.running_mean[...] = rng.normal(size=7)
    norm.running_var[...] = rng.uniform(0.2, 3, 7)
    return model


def assert_predicts_as_handgrad(outputs, model, loss, X, dtype):
    task = hg.tasks.of(loss)
    if task == "regression":
        assert set(outputs) == {"variable"}
        assert_close(outputs["variable"], model.predict(X, loss=loss), dtype)
        return
    assert set(outputs) == {"label", "probabilities"}
    np.testing.assert_array_equal(outputs["label"], model.predict(X, loss=loss))
    assert_close(outputs["probabilities"], model.predict_proba(X, loss=loss), dtype)


# -- every piece --------------------------------------------------------------------------

@pytest.mark.parametrize("activation, loss, dtype", CASES,
                         ids=[f"{a.name}-{b.name}-{np.dtype(d).name}" for a, b, d in CASES])
def test_every_layer_and_loss_predicts_as_handgrad(activation, loss, dtype):
    model = network(activation, dtype=dtype).train()      # exported in inference form whatever the mode
    X = np.random.default_rng(1).normal(size=(64, 5)).astype(dtype)
    outputs = run(hg.to_onnx(model, X[:1], loss=loss()), X)
    for name, value in outputs.items():
        assert value.dtype == (np.int64 if name == "label" else dtype)
    assert_predicts_as_handgrad(outputs, model, loss(), X, dtype)


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=[a.name for a in ACTIVATIONS])
def test_activations_agree_far_into_their_tails(activation):
    """Pre-activations up to ±100: ONNX Runtime's Softplus and Sigmoid stay finite and close, as handgrad's."""
    model = hg.Sequential(hg.Dense(1, 9), activation(), hg.Dense(9, 2))
    model.layers[0].W[...] = np.linspace(-100, 100, 9)
    model.layers[2].W[...] = np.random.default_rng(0).normal(size=(9, 2)) / 50
    X = np.linspace(-1, 1, 21, dtype=np.float32)[:, None]
    outputs = run(hg.to_onnx(model, X[:1], loss=hg.SquaredError()), X)
    assert_close(outputs["variable"], model.predict(X, loss=hg.SquaredError()))


def test_labels_are_the_classes_as_int64_or_strings():
    model = network(hg.ReLU)
    X = np.random.default_rng(2).normal(size=(40, 5)).astype(np.float32)
    index = model.predict(X)
    for classes in ([3, 7, 11], ["cat", "dog", "émeu"]):
        outputs = run(hg.to_onnx(model, X[:1], classes=classes), X)
        np.testing.assert_array_equal(outputs["label"], np.array(classes)[index])


def test_the_input_takes_the_samples_dtype_and_float64_input_gives_float64_outputs():
    model = network(hg.Tanh)
    X = np.random.default_rng(3).normal(size=(30, 5))
    outputs = run(hg.to_onnx(model, X[:1]), X)
    assert outputs["probabilities"].dtype == np.float64
    assert_close(outputs["probabilities"], model.predict_proba(X))
    pixels = np.random.default_rng(3).integers(0, 3, size=(30, 5))
    outputs = run(hg.to_onnx(model, pixels[:1]), pixels)
    assert outputs["probabilities"].dtype == np.float32
    assert_close(outputs["probabilities"], model.predict_proba(pixels.astype(np.float32)))


# -- model files: preprocessing and target scaling -------------------------------------------

@pytest.mark.parametrize("scale", [2.5, [2.5, 40.0]], ids=["one-scale", "a-scale-per-column"])
def test_a_model_files_preprocessing_and_target_scaling_are_in_the_graph(tmp_path, scale):
    rng = np.random.default_rng(4)
    X = rng.normal(loc=[1000, -3, 0.5, 20, 0], scale=[100, 2, 0.1, 5, 1], size=(50, 5))
    preprocessor = Preprocessor.fit(X, "tabular")
    model, mean = network(hg.GELU, n_out=2), np.array([300.0, -7.0])
    path = tmp_path / "model.npz"
    save_model(path, model, loss=hg.SquaredError(), classes=["price", "rent"], preprocessing=preprocessor,
               extra={"target_scaling": {"mean": mean.tolist(), "scale": scale}})
    expected = model.predict(preprocessor.transform(X, np.float32), loss=hg.SquaredError()) * np.asarray(scale) + mean
    outputs = run(hg.to_onnx(path), X.astype(np.float32))
    assert_close(outputs["variable"], expected)
    assert_close(run(hg.to_onnx(load_model(path), X[:1]), X)["variable"], expected)


def test_a_damaged_target_scaling_is_refused(tmp_path):
    path = tmp_path / "model.npz"
    save_model(path, network(hg.ReLU, n_out=2), loss=hg.SquaredError(), classes=["a", "b"],
               extra={"target_scaling": {"mean": [0.0], "scale": -1}})
    with pytest.raises(hg.ModelFileError, match="target scaling is damaged"):
        hg.to_onnx(path)


# -- what cannot be exported, and bad arguments ----------------------------------------------

def test_a_layer_without_an_exporter_is_refused_in_one_line_naming_it():
    class LowRank(hg.Layer):
        def forward(self, X, out=None):
            return X

    model = hg.Sequential(hg.Dense(4, 4), hg.ReLU(), LowRank(), hg.Dense(4, 2))
    with pytest.raises(hg.HandgradError) as error:
        hg.to_onnx(model)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("layer 3 of 4: LowRank has no ONNX exporter; define LowRank.export(self, graph, x)")


def test_a_layer_that_declares_its_exporter_is_exported():
    class Double(hg.Layer):
        in_place = True

        def forward(self, X, out=None):
            return np.multiply(X, 2, out=out)

        def export(self, graph, x):
            return graph.op("Mul", x, graph.constant(2.0))

    model = hg.Sequential(hg.Dense(4, 3), Double(), hg.Sigmoid(), hg.Dense(3, 2))
    X = np.random.default_rng(5).normal(size=(10, 4)).astype(np.float32)
    assert_close(run(hg.to_onnx(model, X[:1]), X)["probabilities"], model.predict_proba(X))


def test_a_loss_that_reads_its_logits_its_own_way_needs_its_own_exporter():
    class Shifted(hg.SoftmaxCrossEntropy):
        def predict(self, Z):
            return (Z + 1).argmax(axis=1)

    with pytest.raises(hg.HandgradError, match="Shifted reads its logits its own way and has no ONNX exporter"):
        hg.to_onnx(network(hg.ReLU), loss=Shifted())


@pytest.mark.parametrize("X, target_opset, message", [
    (np.zeros((1, 4), np.float32), None, "X has 4 columns but the model takes 5 features"),
    (np.zeros(5, np.float32), None, r"shape \(n, 5\)"),
    (np.array([["a"] * 5]), None, "X has dtype <U1"),
    (None, 18, "target_opset must be an integer from 20"),
])
def test_a_sample_or_opset_that_does_not_fit_is_refused(X, target_opset, message):
    with pytest.raises(hg.HandgradError, match=message):
        hg.to_onnx(network(hg.ReLU), X, target_opset=target_opset)


def test_without_onnx_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(hg.HandgradError, match=r'pip install "handgrad\[onnx\]"'):
        hg.to_onnx(network(hg.ReLU))


# -- the estimators, through hg.to_onnx and skl2onnx -------------------------------------------

def _classification(kind, dtype):
    from sklearn.datasets import make_classification, make_multilabel_classification

    if kind == "multilabel":
        X, y = make_multilabel_classification(120, 6, n_classes=3, random_state=0)
    else:
        X, y = make_classification(120, 6, n_informative=4, n_classes=3 if kind == "multiclass" else 2,
                                   random_state=0)
        y = np.array(["no", "yes"])[y] if kind == "binary" else y + 10
    estimator = hg.MLPClassifier((8,), max_iter=15, random_state=0, batch_norm=True, dtype=np.dtype(dtype).name)
    return _fit(estimator, X, y), X.astype(dtype)


def _regression(loss, n_targets, dtype):
    from sklearn.datasets import make_regression

    X, y = make_regression(120, 6, n_targets=n_targets, random_state=0)
    y = np.abs(y) / 50 if loss == "poisson" else y
    estimator = hg.MLPRegressor(loss=loss, hidden_layer_sizes=(8,), activation="tanh", max_iter=15, random_state=0,
                                dtype=np.dtype(dtype).name)
    return _fit(estimator, X, y), X.astype(dtype)


def _fit(estimator, X, y):
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)     # 15 epochs: enough to have weights to export
        return estimator.fit(X, y)


def assert_estimator_outputs(estimator, X, outputs, label="label", probabilities="probabilities"):
    dtype = estimator._net.dtype
    if not hasattr(estimator, "classes_"):
        assert_close(outputs["variable"], estimator.predict(X).reshape(len(X), -1), dtype)
        return
    np.testing.assert_array_equal(outputs[label], estimator.predict(X))
    assert_close(outputs[probabilities], estimator.predict_proba(X), dtype)


ESTIMATORS = [("multiclass", np.float32), ("binary", np.float32), ("multilabel", np.float32),
              ("multiclass", np.float64), ("squared_error", 1), ("squared_error", 3), ("poisson", 2)]


@pytest.fixture(scope="module", params=ESTIMATORS, ids=[f"{a}-{b if isinstance(b, int) else np.dtype(b).name}"
                                                        for a, b in ESTIMATORS])
def fitted(request):
    kind, detail = request.param
    if kind in ("multiclass", "binary", "multilabel"):
        return _classification(kind, detail)
    return _regression(kind, detail, np.float32)


def test_estimators_export_through_hg_to_onnx(fitted):
    estimator, X = fitted
    assert_estimator_outputs(estimator, X, run(hg.to_onnx(estimator, X[:1]), X))


def test_a_saved_estimator_exports_from_its_file(tmp_path):
    estimator, X = _classification("binary", np.float32)
    hg.save(estimator, tmp_path / "estimator.npz")
    assert_estimator_outputs(estimator, X, run(hg.to_onnx(tmp_path / "estimator.npz"), X))


def test_skl2onnx_converts_the_estimators_as_scikit_learns(fitted):
    skl2onnx = pytest.importorskip("skl2onnx")
    estimator, X = fitted
    if not hasattr(estimator, "classes_"):
        assert_estimator_outputs(estimator, X, run(skl2onnx.to_onnx(estimator, X[:1]), X))
        return
    plain = run(skl2onnx.to_onnx(estimator, X[:1], options={"zipmap": False}), X)
    assert_estimator_outputs(estimator, X, plain)
    if X.dtype == np.float32:                            # ZipMap reads float32 probabilities only
        zipped = run(skl2onnx.to_onnx(estimator, X[:1]), X)
        assert set(zipped) == {"output_label", "output_probability"}
        np.testing.assert_array_equal(zipped["output_label"], plain["label"])
        assert zipped["output_probability"][0] == pytest.approx(dict(zip(_keys(estimator), plain["probabilities"][0])))


def _keys(estimator):
    classes = estimator.classes_
    return [int(c) for c in classes] if classes.dtype.kind in "iu" else list(classes)


def test_skl2onnx_refuses_an_opset_before_20_in_one_line():
    skl2onnx = pytest.importorskip("skl2onnx")
    estimator, X = _regression("squared_error", 1, np.float32)
    with pytest.raises(hg.HandgradError, match="handgrad writes ONNX opset 20 or later"):
        skl2onnx.to_onnx(estimator, X[:1], target_opset=17)


@ci_only
@pytest.mark.parametrize("order", ["handgrad first", "skl2onnx first"])
def test_skl2onnx_knows_the_estimators_whichever_is_imported_first(order):
    imports = ["from handgrad import MLPRegressor", "import skl2onnx"]
    program = "\n".join(imports if order == "handgrad first" else imports[::-1]) + (
        "\nimport numpy as np\nX = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)"
        "\nr = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3).fit(X, X[:, 0])"
        "\nprint([o.name for o in skl2onnx.to_onnx(r, X[:1]).graph.output])")
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", program], capture_output=True, text=True,
                            timeout=600)
    assert result.stdout.strip() == "['variable']", result.stderr


# -- the command line -------------------------------------------------------------------------

def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


@pytest.mark.parametrize("network_flags", [[], ["--dropout", "0.2", "--batch-norm", "--activation", "gelu"]],
                         ids=["preset", "dropout-batch-norm-gelu"])
def test_export_of_a_digits_model_predicts_as_handgrad_predict_from_raw_pixels(tmp_path, capsys, network_flags):
    from sklearn.datasets import load_digits

    model = tmp_path / "run" / "model.npz"
    code, _, err = _cli(capsys, "train", "--epochs", "2", "--hidden", "16", *network_flags, "--no-plots",
                        "--no-progress", "--threads", "1", "--out", model)
    assert code == 0, err
    code, _, err = _cli(capsys, "export", model, "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert code == 0, err
    assert "input X float32 (N, 64); outputs label int64 (N,), probabilities float32 (N, 10)" in err
    pixels = load_digits().data[:200]                    # raw 0..16: the graph scales them itself
    np.savez(tmp_path / "rows.npz", X=pixels)
    assert _cli(capsys, "predict", model, tmp_path / "rows.npz", "--out", tmp_path / "pred.csv")[0] == 0
    header, rows = _csv(tmp_path / "pred.csv")
    outputs = run(onnx.load(tmp_path / "m.onnx"), pixels.astype(np.float32))
    np.testing.assert_array_equal(outputs["label"], [int(row[0]) for row in rows])
    np.testing.assert_allclose(outputs["probabilities"], np.array([row[1:] for row in rows], float), atol=1e-5)
    loaded = load_model(model)
    X = loaded.preprocessor.transform(pixels, np.float32)
    assert_close(outputs["probabilities"], loaded.model.predict_proba(X))


def test_export_of_a_regressor_trained_on_a_csv_predicts_values_in_the_targets_units(tmp_path, capsys):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(120, 3)) * [1, 10, 100] + [0, 50, 1000]
    price = 5000 + 300 * X[:, 0] - 20 * X[:, 1] + 0.5 * X[:, 2] + rng.normal(size=120)
    with open(tmp_path / "houses.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["a", "b", "price", "c"])
        writer.writerows([[x[0], x[1], p, x[2]] for x, p in zip(X.round(4), price.round(3))])
    model = tmp_path / "houses.npz"
    code, _, err = _cli(capsys, "train", "--dataset", tmp_path / "houses.csv", "--target", "price", "--loss",
                        "squared-error", "--epochs", "2", "--no-plots", "--no-progress", "--threads", "1",
                        "--out", model)
    assert code == 0, err
    assert load_model(model).metadata["extra"]["target_scaling"]["scale"][0] > 1
    assert _cli(capsys, "export", model)[0] == 0                 # --out defaults to houses.onnx
    assert _cli(capsys, "predict", model, tmp_path / "houses.csv", "--out", tmp_path / "pred.csv")[0] == 0
    header, rows = _csv(tmp_path / "pred.csv")
    outputs = run(onnx.load(tmp_path / "houses.onnx"), X.round(4).astype(np.float32))
    assert header == ["price"]
    assert_close(outputs["variable"][:, 0], [float(row[0]) for row in rows])


def test_export_has_help_with_examples(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["export", "--help"])
    assert stop.value.code == 0 and "examples:" in capsys.readouterr().out


def test_export_refuses_bad_input_in_one_line_with_exit_code_2(tmp_path, capsys):
    code, out, err = _cli(capsys, "export", tmp_path / "missing.npz")
    assert code == 2 and out == "" and err.count("\n") == 1 and "no such file" in err
    (tmp_path / "folder.onnx").mkdir()
    save_model(tmp_path / "m.npz", network(hg.ReLU), loss=hg.SoftmaxCrossEntropy(), classes=[0, 1, 2])
    code, _, err = _cli(capsys, "export", tmp_path / "m.npz", "--out", tmp_path / "folder.onnx")
    assert code == 2 and err.count("\n") == 1 and "is a folder" in err
    with pytest.raises(SystemExit) as usage:
        main(["export", str(tmp_path / "m.npz"), "--format", "tflite"])
    assert usage.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err
