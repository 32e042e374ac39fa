"""The ``handgrad`` command end to end: the real CLI in a subprocess on small data."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import handgrad as hg
from handgrad.cli import main
from handgrad.io.modelfile import load_model, save_model

FAST = ["--threads", "1", "--no-plots", "--no-progress"]


def handgrad(*args, cwd=None, env=None):
    """Run ``python -m handgrad.cli ARGS``; return the CompletedProcess (text output)."""
    return subprocess.run([sys.executable, "-m", "handgrad.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _value(stdout, prefix):
    line = next(line for line in stdout.splitlines() if line.startswith(prefix))
    return float(line.split()[len(prefix.split())])


def test_train_without_arguments_learns_digits_and_writes_the_model_and_plots(tmp_path):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    result = handgrad("train", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert _value(result.stdout, "test accuracy") >= 0.95
    loaded = load_model(tmp_path / "handgrad-out" / "model.npz")
    assert loaded.classes == list(range(10)) and loaded.model.n_features == 64
    assert loaded.settings["dataset"] == "digits" and len(loaded.history) == loaded.settings["epochs"]
    plots = sorted(p.name for p in (tmp_path / "handgrad-out" / "plots").iterdir())
    assert plots == ["confusion_matrix.png", "first_layer_weights.png", "learning_curves.png"]

    labels = _digits_as_idx(tmp_path / "digits-idx3-ubyte", count=50)
    result = handgrad("predict", tmp_path / "handgrad-out" / "model.npz", tmp_path / "digits-idx3-ubyte", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    predicted = [int(line.split(",")[0]) for line in result.stdout.splitlines()[1:]]
    assert len(predicted) == 50 and np.mean(np.array(predicted) == labels) >= 0.9


def _digits_as_idx(path, count):
    """Write the last ``count`` digits images as an IDX file (magic 0x0803: unsigned bytes, 3 dimensions).

    Returns their labels.
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    images = X[-count:].astype(np.uint8).reshape(count, 8, 8)
    header = np.array([0x0803, count, 8, 8], dtype=">u4").tobytes()
    path.write_bytes(header + images.tobytes())
    return y[-count:]


@pytest.mark.parametrize("command", [None, "train", "evaluate", "predict", "check"])
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main(([command] if command else []) + ["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "handgrad" in out


@pytest.fixture(scope="module")
def flowers(tmp_path_factory):
    """A CSV with string labels in the middle column, and one without the label to predict on."""
    folder = tmp_path_factory.mktemp("flowers")
    rng = np.random.default_rng(0)
    names = ["setosa", "versicolor", "virginica"]
    centres = np.array([[0, 0, 0, 0], [3, 3, 0, 1], [0, 3, 3, -2]], dtype=float)
    labels = np.repeat(np.arange(3), 40)
    X = centres[labels] + 0.5 * rng.standard_normal((120, 4))
    with open(folder / "flowers.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sepal", "petal", "species", "stem", "leaf"])
        for row, label in zip(X, labels):
            writer.writerow([*row[:2], names[label], *row[2:]])
    with open(folder / "unlabelled.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["leaf", "stem", "petal", "sepal"])          # other column order: matched by name
        for row in X[::10]:
            writer.writerow([row[3], row[2], row[1], row[0]])
    return folder, [names[i] for i in labels[::10]]


def test_csv_with_string_labels_trains_evaluates_and_predicts(tmp_path, flowers):
    folder, truth = flowers
    model, log = tmp_path / "flowers.npz", tmp_path / "metrics.jsonl"
    result = handgrad("train", "--dataset", folder / "flowers.csv", "--target", "species", "--hidden", "8",
                      "--epochs", "25", "--early-stopping", "0", "--lr", "0.01", "--out", model, "--log", log, *FAST)
    assert result.returncode == 0, result.stderr
    assert _value(result.stdout, "test accuracy") >= 0.9
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(25)) and "val_loss" in records[0]

    result = handgrad("evaluate", model, "--plots", tmp_path / "report")
    assert result.returncode == 0, result.stderr
    assert _value(result.stdout, "accuracy") >= 0.9 and "virginica" in result.stdout
    assert (tmp_path / "report" / "confusion_matrix.png").stat().st_size > 0

    result = handgrad("predict", model, folder / "unlabelled.csv", "--out", tmp_path / "pred.csv")
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "pred.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["label", "prob_setosa", "prob_versicolor", "prob_virginica"]
    assert [row["label"] for row in rows] == truth
    sums = [sum(float(row[k]) for k in row if k != "label") for row in rows]
    assert np.allclose(sums, 1, atol=1e-4)

    stdout = handgrad("predict", model, folder / "unlabelled.csv").stdout
    assert stdout == (tmp_path / "pred.csv").read_text()


def test_check_passes_for_every_built_in_piece_and_for_a_saved_model(tmp_path):
    result = handgrad("check")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.endswith(" yes")]
    # one row per layer (Dense, each activation, Dropout, BatchNorm), per loss x reduction x target form,
    # and per activation x loss model
    forms = {"classification": 2, "regression": 1, "multilabel": 2}
    n_losses = len(hg.losses())
    expected = (3 + len(hg.activations()) + 2 * sum(forms[cls.task] for cls in hg.losses().values())
                + len(hg.activations()) * n_losses)
    assert len(rows) == expected and any("softmax-bce" in row and "sigmoid" in row for row in rows)
    model = hg.mlp(7, [6, 5], 4, activation="tanh", seed=0)
    save_model(tmp_path / "m.npz", model, loss=hg.SoftmaxBinaryCrossEntropy(), classes=list("wxyz"),
               settings={"l2": 1e-3})
    result = handgrad("check", "--model", tmp_path / "m.npz")
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(name in result.stdout for name in ("W1", "b1", "W2", "b2", "W3", "b3", "passed"))
