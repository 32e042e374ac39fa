"""The command line beyond classification: regression, multilabel targets, dropout and batch norm.

Each command runs in-process through ``handgrad.cli.main`` on small
synthetic tables, so the whole module takes seconds.
"""

import csv
import json

import numpy as np
import pytest

import handgrad as hg
from handgrad.cli import main
from handgrad.io.modelfile import load_checkpoint, load_model

FAST = ["--threads", "1", "--no-progress"]


def _run(capsys, *argv):
    """``handgrad ARGV`` in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _value(stdout, prefix):
    """The number after ``prefix`` on the line that starts with it."""
    line = next(line for line in stdout.splitlines() if line.startswith(prefix))
    return float(line[len(prefix):].split()[0])


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _read_csv(path_or_text):
    text = path_or_text.read_text() if hasattr(path_or_text, "read_text") else path_or_text
    rows = list(csv.reader(text.splitlines()))
    return rows[0], rows[1:]


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """A regression table (price, in the thousands), a multilabel one (labels a, b, c) and counts as NPZ."""
    folder = tmp_path_factory.mktemp("tables")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 3))
    price = 1000 + 300 * (2 * X[:, 0] - X[:, 1] + 0.5 * np.sin(2 * X[:, 2])) + 30 * rng.standard_normal(300)
    _write_csv(folder / "houses.csv", ["x1", "x2", "price", "x3"],
               [[*x[:2].round(4), round(p, 3), x[2].round(4)] for x, p in zip(X, price)])
    labels = np.stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 0] - X[:, 2] > 0.5], axis=1).astype(int)
    _write_csv(folder / "tags.csv", ["x1", "a", "x2", "b", "x3", "c"],
               [[x[0], t[0], x[1], t[1], x[2], t[2]] for x, t in zip(X.round(4), labels)])
    _write_csv(folder / "unlabelled.csv", ["x3", "x2", "x1"], [x[::-1] for x in X[:10].round(4)])
    counts = rng.poisson(np.exp(1 + 0.8 * X[:, 0] - 0.5 * X[:, 1]))
    np.savez(folder / "counts.npz", X=X, y=counts)
    two = np.stack([X[:, 0] - X[:, 1], 10 * X[:, 2] + 5], axis=1)
    np.savez(folder / "two.npz", X=X, y=two)
    return folder, X, price, labels


# -- regression ---------------------------------------------------------------------

def test_regression_on_a_csv_reports_r2_and_rmse_and_evaluate_and_predict_follow(tmp_path, tables, capsys):
    folder, X, price, _ = tables
    model, log, plots = tmp_path / "m.npz", tmp_path / "log.jsonl", tmp_path / "plots"
    code, out, err = _run(capsys, "train", "--dataset", folder / "houses.csv", "--target", "price",
                          "--loss", "squared-error", "--out", model, "--log", log, *FAST)
    assert code == 0, err
    assert "target price" in err and "accuracy" not in out
    r2, rmse = _value(out, "test R²"), float(out.split("test R²")[1].split("RMSE")[1].split()[0])
    assert r2 > 0.8 and 0 < rmse < 300            # in the price's own units (its spread is about 700)

    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert {"train_r2", "train_rmse", "val_r2", "val_rmse"} <= set(records[-1])
    assert not any("accuracy" in key for key in records[-1])
    assert 10 < records[-1]["train_rmse"] < 300    # converted from the standardised targets training sees

    loaded = load_model(model)
    assert type(loaded.loss) is hg.SquaredError and loaded.classes == ["price"]
    assert loaded.model.n_outputs == 1 and loaded.settings["loss"] == "squared-error"
    extra = loaded.metadata["extra"]
    assert extra["task"] == "regression" and extra["test_r2"] == pytest.approx(r2, abs=1e-4)
    assert extra["target_scaling"]["mean"][0] == pytest.approx(1000, abs=100) and extra["target_scaling"]["scale"][0] > 100
    # Only plots that mean something for a regressor: no confusion matrix.
    assert sorted(p.name for p in plots.iterdir()) == ["learning_curves.png", "predicted_vs_true.png"]

    code, out, err = _run(capsys, "evaluate", model, "--plots", tmp_path / "report")
    assert code == 0, err
    assert _value(out, "R²") == pytest.approx(r2, abs=1e-4) and "MAE" in out and "accuracy" not in out
    assert [p.name for p in (tmp_path / "report").iterdir()] == ["predicted_vs_true.png"]

    code, out, err = _run(capsys, "predict", model, folder / "houses.csv", "--out", tmp_path / "pred.csv")
    assert code == 0, err
    header, rows = _read_csv(tmp_path / "pred.csv")
    assert header == ["price"] and len(rows) == len(price)
    predicted = np.array([float(row[0]) for row in rows])
    assert 1 - np.sum((predicted - price) ** 2) / np.sum((price - price.mean()) ** 2) > 0.8
    code, out, _ = _run(capsys, "predict", model, folder / "unlabelled.csv")     # columns matched by name
    assert code == 0 and np.allclose([float(r[0]) for r in _read_csv(out)[1]], predicted[:10], rtol=1e-5)


def test_regression_on_an_npz_with_two_targets(tmp_path, tables, capsys):
    folder, *_ = tables
    model = tmp_path / "m.npz"
    code, out, err = _run(capsys, "train", "--dataset", folder / "two.npz", "--loss", "squared-error",
                          "--out", model, "--no-plots", *FAST)
    assert code == 0, err
    assert "targets y0, y1" in err and _value(out, "test R²") > 0.9
    assert load_model(model).classes == ["y0", "y1"]
    code, out, err = _run(capsys, "evaluate", model)
    assert code == 0, err
    assert [line.split()[0] for line in out.splitlines()[-2:]] == ["y0", "y1"]
    code, out, err = _run(capsys, "predict", model, folder / "two.npz")
    header, rows = _read_csv(out)
    assert header == ["y0", "y1"] and len(rows) == 300
    # the second target's mean (5) comes back from the stored scaling
    assert np.mean([float(r[1]) for r in rows]) == pytest.approx(5, abs=1)


def _with_target_scaling(source, target, entry):
    """A copy of the model file ``source`` whose stored target scaling is ``entry``."""
    with np.load(source, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("metadata").tobytes())
    meta["extra"]["target_scaling"] = entry
    np.savez(target, metadata=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)


def test_each_target_column_has_its_own_scale_and_files_with_one_shared_scale_still_predict(tmp_path, tables,
                                                                                             capsys):
    folder, *_ = tables
    model = tmp_path / "m.npz"
    assert _run(capsys, "train", "--dataset", folder / "two.npz", "--loss", "squared-error", "--epochs", "2",
                "--out", model, "--no-plots", *FAST)[0] == 0
    Y = np.load(folder / "two.npz")["y"]
    stored = load_model(model).metadata["extra"]["target_scaling"]
    # the training rows' own standard deviations, one per column (the second is ten times the first's)
    assert len(stored["scale"]) == 2 and 5 < stored["scale"][1] / stored["scale"][0] < 15
    assert stored["scale"][1] == pytest.approx(Y[:, 1].std(), rel=0.2)
    # an RMSE over targets in different units has none: per epoch, R² alone
    assert all(r["train_rmse"] is None and r["train_r2"] is not None for r in load_model(model).history)

    # A file written before per-column scales: one number that every output shares.
    old = tmp_path / "old.npz"
    _with_target_scaling(model, old, {"mean": stored["mean"], "scale": 3.0})
    _, shared, err = _run(capsys, "predict", old, folder / "two.npz")
    assert err == ""
    raw = load_model(model)
    X = raw.preprocessor.transform(np.load(folder / "two.npz")["X"], dtype=raw.model.dtype)
    expected = raw.model.predict(X, loss=raw.loss) * 3.0 + np.asarray(stored["mean"])
    np.testing.assert_allclose(np.array(_read_csv(shared)[1], dtype=float), expected, rtol=1e-6)
    # one target: the old entry and the new one are the same scaling, and predict the same
    one = tmp_path / "one.npz"
    assert _run(capsys, "train", "--dataset", folder / "houses.csv", "--target", "price", "--loss", "squared-error",
                "--epochs", "2", "--out", one, "--no-plots", *FAST)[0] == 0
    entry = load_model(one).metadata["extra"]["target_scaling"]
    _with_target_scaling(one, tmp_path / "one-old.npz", {"mean": entry["mean"], "scale": entry["scale"][0]})
    before = _run(capsys, "predict", one, folder / "unlabelled.csv")[1]
    assert _run(capsys, "predict", tmp_path / "one-old.npz", folder / "unlabelled.csv")[1] == before


def test_poisson_regression_on_counts_predicts_non_negative_means(tmp_path, tables, capsys):
    folder, *_ = tables
    model = tmp_path / "m.npz"
    code, out, err = _run(capsys, "train", "--dataset", folder / "counts.npz", "--loss", "poisson",
                          "--out", model, "--no-plots", *FAST)
    assert code == 0, err
    assert "target_scaling" in load_model(model).metadata["extra"]
    assert load_model(model).metadata["extra"]["target_scaling"] is None        # counts are never rescaled
    code, out, err = _run(capsys, "evaluate", model)
    assert code == 0 and _value(out, "R²") > 0.5, out + err
    code, out, _ = _run(capsys, "predict", model, folder / "counts.npz")
    values = np.array([float(r[0]) for r in _read_csv(out)[1]])
    assert (values >= 0).all() and values.mean() == pytest.approx(np.exp(1.4), rel=0.3)


# -- multilabel --------------------------------------------------------------------

def test_several_targets_train_a_multilabel_model_with_sigmoid_bce_by_default(tmp_path, tables, capsys):
    folder, X, _, labels = tables
    model, plots = tmp_path / "m.npz", tmp_path / "plots"
    code, out, err = _run(capsys, "train", "--dataset", folder / "tags.csv", "--target", "a, b,c",
                          "--out", model, "--log", tmp_path / "log.jsonl", *FAST)
    assert code == 0, err
    assert "3 labels (a, b, c)" in err
    assert _value(out, "test label accuracy") > 0.85 and "subset accuracy" in out
    loaded = load_model(model)
    assert type(loaded.loss) is hg.SigmoidBinaryCrossEntropy and loaded.classes == ["a", "b", "c"]
    assert loaded.settings["loss"] == "sigmoid-bce" and loaded.settings["target"] == "a,b,c"
    record = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])
    assert {"train_label_accuracy", "train_subset_accuracy", "val_label_accuracy", "val_subset_accuracy"} <= set(record)
    assert sorted(p.name for p in plots.iterdir()) == ["label_scores.png", "learning_curves.png"]

    code, out, err = _run(capsys, "evaluate", model, "--plots", tmp_path / "report")
    assert code == 0, err
    assert _value(out, "label accuracy") > 0.85
    assert [line.split()[0] for line in out.splitlines()[-4:-1]] == ["a", "b", "c"]
    assert [p.name for p in (tmp_path / "report").iterdir()] == ["label_scores.png"]

    code, out, err = _run(capsys, "predict", model, folder / "tags.csv")
    assert code == 0, err
    header, rows = _read_csv(out)
    assert header == ["a", "b", "c", "prob_a", "prob_b", "prob_c"]
    predicted = np.array([[int(v) for v in row[:3]] for row in rows])
    proba = np.array([[float(v) for v in row[3:]] for row in rows])
    assert set(np.unique(predicted)) <= {0, 1} and ((proba >= 0) & (proba <= 1)).all()
    assert np.array_equal(predicted, (proba > 0.5).astype(int))
    assert (predicted == labels).mean() > 0.85


# -- dropout, batch norm, activations ------------------------------------------------

def test_dropout_and_batch_norm_build_the_network_and_the_model_loads_and_evaluates(tmp_path, capsys):
    model = tmp_path / "m.npz"
    code, out, err = _run(capsys, "train", "--dropout", "0.2", "--batch-norm", "--hidden", "64,32", "--epochs", "8",
                          "--out", model, "--no-plots", *FAST)
    assert code == 0, err
    assert "64-64-32-10 relu, batch norm, dropout 0.2" in err and _value(out, "test accuracy") > 0.9
    loaded = load_model(model)
    assert [type(layer).__name__ for layer in loaded.model.layers] == [
        "Dense", "BatchNorm", "ReLU", "Dropout", "Dense", "BatchNorm", "ReLU", "Dropout", "Dense"]
    assert loaded.settings["dropout"] == 0.2 and loaded.settings["batch_norm"] is True
    # the running statistics were learnt and saved
    assert not np.allclose(loaded.model.layers[1].running_mean, 0)
    assert not np.allclose(loaded.model.layers[1].running_var, 1)
    code, out, err = _run(capsys, "evaluate", model)
    assert code == 0 and _value(out, "accuracy") > 0.9, err

    # derive with the same flags describes exactly the network train built
    code, out, err = _run(capsys, "derive", "--dropout", "0.2", "--batch-norm", "--hidden", "64,32", "--check")
    assert code == 0, err
    assert "BatchNorm(n_features=64" in out and "Dropout(p=0.2)" in out and "passed" in out
    code, out, _ = _run(capsys, "derive", "--model", model)
    assert code == 0 and out.count("BatchNorm(") == 2


def test_input_dropout_and_shifts_train_digits_and_are_stored(tmp_path, capsys):
    common = ["--hidden", "32", "--epochs", "10", "--no-plots", *FAST]
    code, out, err = _run(capsys, "train", "--input-dropout", "0.1", "--shift", "1", "--out", tmp_path / "a.npz", *common)
    assert code == 0, err
    shifted = load_model(tmp_path / "a.npz")
    assert [type(layer).__name__ for layer in shifted.model.layers] == ["Dropout", "Dense", "ReLU", "Dense"]
    assert shifted.model.layers[0].p == 0.1 and shifted.settings["shift"] == 1
    assert _value(out, "test accuracy") > 0.75              # 1-pixel shifts of 8x8 digits: a strong distortion
    code, _, err = _run(capsys, "train", "--input-dropout", "0.1", "--out", tmp_path / "b.npz", *common)
    assert code == 0, err
    unshifted = load_model(tmp_path / "b.npz")            # the same run but for the shifts
    assert not np.array_equal(unshifted.model.get_weights(), shifted.model.get_weights())
    code, _, err = _run(capsys, "train", "--input-dropout", "0.1", "--shift", "1", "--flip", "--out",
                        tmp_path / "c.npz", *common)
    assert code == 0, err
    flipped = load_model(tmp_path / "c.npz")                # mirror images too: stored, and a different run
    assert flipped.settings["flip"] is True and shifted.settings["flip"] is False
    assert not np.array_equal(flipped.model.get_weights(), shifted.model.get_weights())


def test_the_best_preset_fills_the_recipe_and_flags_still_win(capsys, shared_data):
    code, out, err = _run(capsys, "derive", "--dataset", "mnist", "--data-dir", shared_data, "--preset", "best",
                          "--hidden", "64", "--dropout", "0.3")
    assert code == 0, err
    assert "784-64-10 relu" in out and "L2 λ = 5e-05" in out           # the recipe's L2, the flag's width
    assert "layer 1: Dense(784, 64)" in out and "Dropout(p=0.3)" in out and "Dropout(p=0.1)" not in out


def test_fashion_mnists_best_preset_is_its_own_recipe():
    from handgrad.cli.presets import preset_for

    best, standard = preset_for("fashion-mnist", "best"), preset_for("fashion-mnist")
    assert best["hidden"] == [1024, 1024] and best["batch_norm"] and best["dropout"] == 0.3
    assert best["flip"] and standard["flip"] and standard["batch_norm"] and not best["shift"]
    assert not preset_for("mnist", "best")["flip"]            # digits are not mirror-symmetric


def test_without_the_new_flags_the_network_is_the_plain_mlp(tmp_path, capsys):
    model = tmp_path / "m.npz"
    assert _run(capsys, "train", "--hidden", "16", "--epochs", "1", "--out", model, "--no-plots", *FAST)[0] == 0
    loaded = load_model(model)
    assert loaded.settings["dropout"] == 0 and loaded.settings["batch_norm"] is False
    assert loaded.model.config() == hg.mlp(64, [16], 10).config()


@pytest.mark.parametrize("activation", ["leaky-relu", "elu", "softplus", "gelu"])
def test_each_new_activation_trains_saves_and_evaluates(tmp_path, capsys, activation):
    model = tmp_path / "m.npz"
    code, out, err = _run(capsys, "train", "--activation", activation, "--hidden", "32", "--epochs", "5",
                          "--out", model, "--no-plots", *FAST)
    assert code == 0, err
    assert _value(out, "test accuracy") > 0.85
    assert load_model(model).model.layers[1].name == activation
    code, out, err = _run(capsys, "evaluate", model)
    assert code == 0 and f"{activation}" in out, err


def test_checkpoints_hold_the_batch_norm_statistics_and_resuming_is_exact(tmp_path, capsys):
    common = ["--dropout", "0.3", "--batch-norm", "--hidden", "16", "--no-plots", *FAST]
    assert _run(capsys, "train", "--epochs", "4", "--out", tmp_path / "a.npz", *common)[0] == 0
    assert _run(capsys, "train", "--epochs", "2", "--checkpoint-every", "1", "--out", tmp_path / "b.npz",
                *common)[0] == 0
    # the checkpoint of the last epoch has that epoch's running statistics, as the model does
    checkpoint, finished = load_checkpoint(tmp_path / "b.ckpt.npz"), load_model(tmp_path / "b.npz")
    assert checkpoint.epoch == 2
    for name, array in finished.model.state_arrays().items():
        assert np.array_equal(checkpoint.model.state_arrays()[name], array), name
    code, _, err = _run(capsys, "train", "--resume", tmp_path / "b.ckpt.npz", "--epochs", "4",
                        "--no-plots", "--no-progress")
    assert code == 0, err
    uninterrupted, resumed = load_model(tmp_path / "a.npz").model, load_model(tmp_path / "b.npz").model
    for name, array in uninterrupted.state_arrays().items():
        assert np.array_equal(resumed.state_arrays()[name], array), name


def test_resume_refuses_a_new_dropout_or_batch_norm(tmp_path, capsys):
    assert _run(capsys, "train", "--epochs", "1", "--hidden", "8", "--checkpoint-every", "1",
                "--out", tmp_path / "m.npz", "--no-plots", *FAST)[0] == 0
    for flags in (["--batch-norm"], ["--dropout", "0.1"]):
        code, _, err = _run(capsys, "train", "--resume", tmp_path / "m.ckpt.npz", *flags)
        assert code == 2 and f"{flags[0]} cannot change when resuming" in err


def test_a_checkpoint_from_before_dropout_and_batch_norm_resumes(tmp_path, capsys):
    """Checkpoints written before the two settings existed lack them: their networks had neither."""
    assert _run(capsys, "train", "--epochs", "1", "--hidden", "8", "--checkpoint-every", "1",
                "--out", tmp_path / "m.npz", "--no-plots", *FAST)[0] == 0
    checkpoint = tmp_path / "m.ckpt.npz"
    with np.load(checkpoint, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("metadata").tobytes())
    del meta["settings"]["dropout"], meta["settings"]["batch_norm"]
    np.savez(checkpoint, metadata=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    code, _, err = _run(capsys, "train", "--resume", checkpoint, "--epochs", "2", "--no-plots", "--no-progress")
    assert code == 0, err
    assert load_model(tmp_path / "m.npz").settings["dropout"] == 0


def test_derive_checks_a_regressor_and_a_multilabel_model_on_their_own_rows(tmp_path, tables, capsys):
    folder, *_ = tables
    for name, flags in (("houses.csv", ["--target", "price", "--loss", "squared-error"]),
                        ("tags.csv", ["--target", "a,b,c"])):
        model = tmp_path / f"{name}.npz"
        code, _, err = _run(capsys, "train", "--dataset", folder / name, *flags, "--hidden", "8", "--epochs", "2",
                            "--batch-norm", "--out", model, "--no-plots", *FAST)
        assert code == 0, err
        code, out, err = _run(capsys, "derive", "--model", model, "--check")
        assert code == 0, out + err
        assert f"training rows of {name[:-4]}" in out and "passed" in out
        code, out, err = _run(capsys, "derive", "--dataset", folder / name, *flags, "--hidden", "8",
                              "--batch-norm", "--check")
        assert code == 0 and "passed" in out, out + err


def test_evaluate_reads_a_regressors_targets_from_another_file_by_their_names(tmp_path, tables, capsys):
    folder, X, price, _ = tables
    model = tmp_path / "m.npz"
    assert _run(capsys, "train", "--dataset", folder / "houses.csv", "--target", "price", "--loss",
                "squared-error", "--out", model, "--no-plots", *FAST)[0] == 0
    other = tmp_path / "later.csv"               # the same columns in another order: price is not the last one
    _write_csv(other, ["x1", "x2", "x3", "price"], [[*x.round(4), round(p, 3)] for x, p in zip(X[:50], price[:50])])
    code, out, err = _run(capsys, "evaluate", model, "--dataset", other, "--split", "all")
    assert code == 0, err
    assert "50 samples" in out and _value(out, "R²") > 0.8
