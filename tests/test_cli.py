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
    # 8x8 first-layer weights show no strokes, so digits get no weight figure.
    assert plots == ["confusion_matrix.png", "learning_curves.png"]
    assert loaded.settings["validation_fraction"] > 0 and loaded.history[-1]["val_accuracy"] is not None

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


COMMANDS = [None, "train", "evaluate", "predict", "check", "derive", "diagnose", "export"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main(([command] if command else []) + ["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "handgrad" in out


def test_the_command_list_names_every_command(capsys):
    from handgrad.cli import build_parser

    subcommands = next(action for action in build_parser()._actions if action.dest == "command").choices
    assert sorted(subcommands) == sorted(c for c in COMMANDS if c)


@pytest.mark.parametrize("columns", ["60", "100", "250"])
@pytest.mark.parametrize("command", COMMANDS)
def test_no_line_of_any_help_is_wider_than_100_columns(command, columns, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", columns)
    with pytest.raises(SystemExit):
        main(([command] if command else []) + ["--help"])
    widest = max(capsys.readouterr().out.splitlines(), key=len)
    assert len(widest) <= 100, widest


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
    assert [r["epoch"] for r in records] == list(range(1, 26)) and "val_loss" in records[0]

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


def test_train_help_shows_every_preset_as_presets_py_defines_it(capsys):
    from handgrad.cli.presets import PRESETS, text_table

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert text_table() in out
    mnist = next(line for line in out.splitlines() if line.split()[:1] == ["mnist"])
    assert mnist.split()[1:9] == ["hidden", ",".join(map(str, PRESETS["mnist"]["hidden"])) + ";", "optimizer", "sgd,",
                                  "momentum", "0.9;", "lr", f"{PRESETS['mnist']['lr']:g};"]
    assert max(len(line) for line in text_table().splitlines()) <= 100


def _big_model(path):
    """An untrained 784-512-256-10 model: 535,818 parameters."""
    model = hg.mlp(784, [512, 256], 10, seed=0)
    save_model(path, model, loss=hg.SoftmaxCrossEntropy(), classes=list(range(10)), settings={"l2": 5e-5})


def test_check_of_a_preset_sized_model_samples_entries_and_answers_in_seconds(tmp_path, capsys):
    import time

    _big_model(tmp_path / "big.npz")
    start = time.perf_counter()
    code = main(["check", "--model", str(tmp_path / "big.npz")])
    seconds = time.perf_counter() - start
    captured = capsys.readouterr()
    assert code == 0, captured.out
    assert "checking 1,010 of 535,818 parameters" in captured.out and "--all" in captured.out
    # Progress: one line on stderr per parameter array as it finishes.
    assert [line.split(":")[0].strip() for line in captured.err.splitlines()] == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert seconds < 60


def test_check_all_differences_every_entry_and_entries_sets_the_sample(tmp_path, capsys):
    model = hg.mlp(7, [6], 4, activation="tanh", seed=0)
    save_model(tmp_path / "m.npz", model, loss=hg.SoftmaxCrossEntropy(), classes=list("wxyz"))
    assert main(["check", "--model", str(tmp_path / "m.npz"), "--all"]) == 0
    out = capsys.readouterr().out
    assert "checking 76 of 76 parameters (every entry)" in out
    assert main(["check", "--model", str(tmp_path / "m.npz"), "--entries", "5"]) == 0
    assert "checking 19 of 76 parameters" in capsys.readouterr().out      # 5 + 5 + 5 + 4


def _check_in_a_terminal(model, columns):
    """``handgrad check --model MODEL --all`` with stderr on a pseudo-terminal ``columns`` wide (0: no size,
    as a program that opens one often leaves it); what the terminal showed."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    leader, follower = pty.openpty()
    if columns:
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "handgrad", "check", "--model", str(model), "--all"],
                               stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    shown = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:            # the terminal closed with the command
                break
            if not chunk:
                break
            shown += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    assert process.wait(timeout=60) == 0
    return shown.decode()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs a Linux pseudo-terminal")
def test_check_all_shows_its_progress_in_a_terminal_and_as_lines_where_no_bar_can_be_seen(tmp_path):
    save_model(tmp_path / "m.npz", hg.mlp(64, [40], 10, seed=0), loss=hg.SoftmaxCrossEntropy(),
               classes=list(range(10)))
    assert "checking W1:" in _check_in_a_terminal(tmp_path / "m.npz", columns=100)     # a tqdm bar per array
    lines = _check_in_a_terminal(tmp_path / "m.npz", columns=0).splitlines()
    assert lines == ["  W1: 2,560 entries checked", "  b1: 40 entries checked", "  W2: 400 entries checked",
                     "  b2: 10 entries checked"]


def test_without_a_bar_a_long_check_prints_a_line_every_heartbeat(monkeypatch):
    import io

    from handgrad.cli import check

    clock = iter(range(0, 1000, 4))                  # every reading of the clock four seconds later
    monkeypatch.setattr(check.time, "perf_counter", lambda: next(clock))
    stream = io.StringIO()
    with check._Progress(stream) as progress:
        for done in range(1, 11):
            progress("W1", done, 10)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "  W1: 3 of 10 entries checked, 12 s" and lines[-1] == "  W1: 10 entries checked"


@pytest.mark.slow
def test_resuming_a_finished_run_says_there_is_nothing_left_to_train(tmp_path):
    common = ["--hidden", "8", "--epochs", "2", "--checkpoint-every", "1", "--out", tmp_path / "m.npz", *FAST]
    assert handgrad("train", *common).returncode == 0
    result = handgrad("train", "--resume", tmp_path / "m.ckpt.npz", "--no-plots", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "nothing left to train" in result.stderr and "all 2 epochs" in result.stderr
    assert "3..2" not in result.stderr
    assert len(load_model(tmp_path / "m.npz").history) == 2


def test_a_run_replaces_the_plots_of_an_earlier_one_and_keeps_other_files(tmp_path, flowers):
    folder, _ = flowers
    plots = tmp_path / "out" / "plots"
    plots.mkdir(parents=True)
    for stale in ("first_layer_weights.png", "misclassified.png", "learning_curves.png"):
        (plots / stale).write_bytes(b"from an earlier run")
    (plots / "notes.txt").write_text("mine")
    result = handgrad("train", "--dataset", folder / "flowers.csv", "--target", "species", "--epochs", "3",
                      "--out", tmp_path / "out" / "model.npz", "--threads", "1", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in plots.iterdir()) == ["confusion_matrix.png", "learning_curves.png", "notes.txt"]
    assert (plots / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"


def _idx_gz(array):
    """A gzip'd IDX file of unsigned bytes (magic 0x08, then the rank and each dimension)."""
    import gzip
    import struct

    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.tobytes(), mtime=0)


def _fake_fashion(root, n_train=200, n_test=40):
    """A tiny dataset in Fashion-MNIST's layout (28x28 images, labels 0..9) under root/fashion-mnist."""
    folder = root / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, (n, 28, 28)) + (labels * 20)[:, None, None]   # brightness tells the class
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(_idx_gz(images))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(_idx_gz(labels))
    return folder


@pytest.fixture
def offline(tmp_path):
    """Environment with a private cache, no $HANDGRAD_DATA and a mirror that refuses connections."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "HANDGRAD_DATA"}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), HANDGRAD_MIRROR=f"http://127.0.0.1:{port}/",
               OPENBLAS_NUM_THREADS="1")
    return env


def test_relative_data_dir_is_stored_absolute_and_evaluate_reads_only_the_test_files(tmp_path, offline):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    folder = _fake_fashion(work / "data")
    elsewhere.mkdir()
    result = handgrad("train", "--dataset", "fashion-mnist", "--data-dir", "data", "--hidden", "16", "--epochs", "2",
                      "--out", "model.npz", *FAST, cwd=work, env=offline)
    assert result.returncode == 0, result.stderr
    assert load_model(work / "model.npz").settings["data_dir"] == str(work / "data")
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (folder / name).unlink()

    result = handgrad("evaluate", work / "model.npz", cwd=elsewhere, env=offline)
    assert result.returncode == 0, result.stderr
    assert "data fashion-mnist (test split): 40 samples" in result.stdout

    result = handgrad("evaluate", work / "model.npz", "--split", "train", cwd=elsewhere, env=offline)
    assert result.returncode == 2
    assert "train-images-idx3-ubyte.gz" in result.stderr and "t10k" not in result.stderr


@pytest.mark.slow
def test_fashion_mnist_classes_are_shown_by_name(tmp_path, offline):
    _fake_fashion(tmp_path / "data")
    model = tmp_path / "model.npz"
    result = handgrad("train", "--dataset", "fashion-mnist", "--data-dir", tmp_path / "data", "--hidden", "16",
                      "--epochs", "3", "--out", model, "--threads", "1", "--no-progress", env=offline)
    assert result.returncode == 0, result.stderr
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {
        "learning_curves.png", "confusion_matrix.png", "first_layer_weights.png"}

    result = handgrad("evaluate", model, "--plots", tmp_path / "report", env=offline)
    assert result.returncode == 0, result.stderr
    table = result.stdout.split("confusion matrix")[0]
    assert all(name in table for name in ("T-shirt/top", "Trouser", "Sneaker", "Ankle boot"))
    assert {p.name for p in (tmp_path / "report").iterdir()} == {"confusion_matrix.png", "misclassified.png"}

    images = tmp_path / "data" / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
    result = handgrad("predict", model, images, env=offline)
    assert result.returncode == 0, result.stderr
    header, first = result.stdout.splitlines()[:2]
    assert header.split(",")[:3] == ["label", "name", "prob_0"]
    label, name = first.split(",")[:2]
    from handgrad.data.datasets import DATASETS

    assert name == DATASETS["fashion-mnist"].class_names[int(label)]
