"""Journeys: every command the way users run it, end to end, on tiny data.

A journey trains a model with one family of flags (a preset of each dataset
kind, each task, dropout, batch norm, each activation and loss, shifts,
schedules, resume), then runs ``evaluate``, ``predict``, ``check --model``
and ``derive --model`` on it, and checks what a user would see: exit code 0,
the figures printed before the plots are drawn, every file written, no
error on stderr.  The data are tiny and made here: gzip IDX files of a few
hundred 28x28 images laid out as ``mnist/`` and ``fashion-mnist/`` under a
``--data-dir``, digits, and small CSV tables; the runs are one or two epochs
of small networks.  Commands run in-process (``handgrad.cli.main``), except
where exit codes and pipes are the point: those run the real command.

The quick test profile runs the journeys marked ``QUICK`` (a few per family);
``HANDGRAD_TEST_PROFILE=ci`` runs all of them.
"""

import csv
import gzip
import os
import re
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

import handgrad as hg
from handgrad.cli import main
from handgrad.data.datasets import DATASETS
from handgrad.data.loaders import digits_arrays
from handgrad.io.modelfile import load_model
from handgrad.training.loop import validation_split
from support import PROFILE

TINY = ["--threads", "1", "--no-progress"]
N_TRAIN, N_TEST = 240, 60           # images per split of the tiny MNIST-style sets


# -- the tiny world ------------------------------------------------------------------

def _write_idx(path, array):
    """``array`` (unsigned bytes) as a gzip IDX file: magic 00 00 08 <ndim>, the sizes, the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _images(rng, n):
    """``n`` 28x28 images whose class is where a bright 7x7 block sits, over faint noise; and their labels."""
    labels = np.arange(n) % 10
    images = rng.integers(0, 40, size=(n, 28, 28))
    for image, label in zip(images, labels):
        row, col = 2 + 8 * (label // 4), 2 + 6 * (label % 4)
        image[row:row + 7, col:col + 7] = rng.integers(180, 256, size=(7, 7))
    return images.astype(np.uint8), labels.astype(np.uint8)


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The data folder (mnist/, fashion-mnist/), the CSV tables, and a folder of digits rows to predict on."""
    root = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(0)
    for dataset in DATASETS.values():
        folder = root / "data" / dataset.folder
        folder.mkdir(parents=True)
        for part, n in (("train", N_TRAIN), ("test", N_TEST)):
            images, labels = _images(rng, n)
            _write_idx(folder / dataset.files[f"{part}_images"][0], images)
            _write_idx(folder / dataset.files[f"{part}_labels"][0], labels)

    n = 150
    X = rng.standard_normal((n, 4))
    species = np.array(["setosa", "versicolor", "virginica"])[(X[:, 0] > 0.4).astype(int) + (X[:, 1] > 0)]
    _write_csv(root / "flowers.csv", ["id", "x1", "x2", "x3", "x4", "species"],
               [[f"f{i:03d}", *x.round(4), s] for i, (x, s) in enumerate(zip(X, species))])
    # Two targets on scales 1,600 times apart, as the diabetes table's age and disease score.
    dose = 0.05 * (X[:, 0] - 0.5 * X[:, 2]) + 0.005 * rng.standard_normal(n)
    score = 150 + 80 * (X[:, 1] + 0.5 * np.sin(X[:, 3])) + 8 * rng.standard_normal(n)
    _write_csv(root / "health.csv", ["x1", "x2", "x3", "x4", "dose", "score"],
               [[*x.round(4), round(d, 6), round(s, 3)] for x, d, s in zip(X, dose, score)])
    counts = rng.poisson(np.exp(1 + 0.6 * X[:, 0]))
    _write_csv(root / "visits.csv", ["x1", "x2", "x3", "x4", "visits"], [[*x.round(4), c] for x, c in zip(X, counts)])
    tags = np.stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 3] < -0.3], axis=1).astype(int)
    _write_csv(root / "tags.csv", ["x1", "x2", "x3", "x4", "a", "b", "c"], [[*x.round(4), *t] for x, t in zip(X, tags)])
    np.savez(root / "digit-rows.npz", X=digits_arrays()[0][:7])
    return root


def _run(capsys, *argv):
    """``handgrad ARGV`` in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _value(text, prefix):
    line = next(line for line in text.splitlines() if line.startswith(prefix))
    return float(line[len(prefix):].split()[0])


# -- the journeys --------------------------------------------------------------------

@dataclass
class Journey:
    """``handgrad train DATASET FLAGS``, then evaluate, predict, check --model and derive --model."""

    dataset: str                  # "digits", "mnist", "fashion-mnist", or a table of the world
    flags: tuple = ()
    predict_on: str = None        # default: the dataset's own file (a table), its test images (IDX), digit rows
    plots: bool = False
    quick: bool = False

    def dataset_arg(self, world):
        return str(world / self.dataset) if self.dataset.endswith(".csv") else self.dataset


SMALL = ("--hidden", "12", "--epochs", "2")
JOURNEYS = {
    # presets: standard, best, file
    "digits preset": Journey("digits", SMALL, plots=True),
    "mnist preset (shifts, sgd, cosine)": Journey("mnist", ("--hidden", "16", "--epochs", "1")),
    "mnist best preset (shifts, L2, sgd)": Journey("mnist", ("--preset", "best", "--hidden", "16,16", "--epochs", "1"),
                                                   plots=True, quick=True),
    "fashion-mnist best preset (batch norm, dropout, flips)": Journey("fashion-mnist", ("--preset", "best", "--hidden",
                                                                                         "16,16", "--epochs", "1")),
    "softmax regression (--hidden none)": Journey("digits", ("--hidden", "none", "--epochs", "2"), quick=True),
    "fashion-mnist preset (class names)": Journey("fashion-mnist", ("--hidden", "16", "--epochs", "1"), plots=True),
    "file preset on a csv, text labels, an id dropped": Journey("flowers.csv", ("--target", "species", "--drop", "id",
                                                                                 "--epochs", "3"), quick=True),
    "file preset on a csv, plotted": Journey("flowers.csv", ("--target", "species", "--drop", "id", "--epochs", "3"),
                                             plots=True),
    # tasks
    "regression, one target": Journey("health.csv", ("--target", "score", "--loss", "squared-error",
                                                      "--epochs", "30"), plots=True),
    "regression, two targets on different scales": Journey("health.csv", ("--target", "dose,score", "--loss",
                                                                          "squared-error", "--epochs", "60"),
                                                           quick=True),
    "poisson regression": Journey("visits.csv", ("--target", "visits", "--loss", "poisson", "--epochs", "5"),
                                  plots=True),
    "multilabel": Journey("tags.csv", ("--target", "a,b,c", "--epochs", "5"), quick=True),
    "multilabel, plotted, batch norm": Journey("tags.csv", ("--target", "a,b,c", "--batch-norm", "--epochs", "5"),
                                               plots=True),
    # flag families
    "dropout and batch norm": Journey("digits", ("--dropout", "0.2", "--batch-norm", *SMALL), quick=True),
    "input dropout and shifts on digits": Journey("digits", ("--input-dropout", "0.1", "--shift", "1", *SMALL)),
    "cosine schedule with warm-up": Journey("digits", ("--schedule", "cosine", "--warmup", "1", *SMALL)),
    "sgd with momentum, constant schedule": Journey("mnist", ("--optimizer", "sgd", "--momentum", "0.5",
                                                              "--schedule", "constant", "--shift", "0",
                                                              "--hidden", "8", "--epochs", "1")),
    "early stopping": Journey("digits", ("--early-stopping", "2", "--hidden", "12", "--epochs", "6")),
    "float64 and softmax-bce": Journey("digits", ("--dtype", "float64", "--loss", "softmax-bce", *SMALL)),
    **{f"activation {name}": Journey("digits", ("--activation", name, *SMALL), quick=name == "gelu")
       for name in hg.activations()},
}


def _selected(journeys):
    return {name: journey for name, journey in journeys.items() if journey.quick or PROFILE == "ci"}


@pytest.mark.parametrize("name", list(_selected(JOURNEYS)))
def test_journey(tmp_path, world, capsys, name):
    j = JOURNEYS[name]
    model, plots = tmp_path / "run" / "model.npz", tmp_path / "run" / "plots"
    output = ["--plots", plots] if j.plots else ["--no-plots"]
    code, out, err = _run(capsys, "train", "--dataset", j.dataset_arg(world), "--data-dir", world / "data",
                          *j.flags, "--out", model, *output, *TINY)
    assert code == 0, err
    assert "error" not in err and "Traceback" not in err, err
    lines = out.splitlines()
    written = next(i for i, line in enumerate(lines) if line.startswith("model written to"))
    assert any(line.startswith("test ") for line in lines[:written])       # the figures come first
    assert any(line.startswith("train ") and "(the saved model, in inference mode)" in line for line in lines)
    assert model.is_file()
    if j.plots:
        assert lines[-1].startswith(f"plots written to {plots}: learning_curves.png")
        drawn = sorted(p.name for p in plots.iterdir())
        assert "learning_curves.png" in drawn and all(p.stat().st_size > 1000 for p in plots.iterdir())
        if j.dataset in ("mnist", "fashion-mnist"):
            assert "first_layer_weights.png" in drawn
    else:
        assert not plots.exists()

    report = tmp_path / "report"
    code, out, err = _run(capsys, "evaluate", model, *(["--plots", report] if j.plots else []))
    assert code == 0 and "error" not in err, err
    assert out.startswith(f"model {model}")
    if j.plots:
        assert report.is_dir() and any(report.iterdir())

    source = j.predict_on or (str(world / j.dataset) if j.dataset.endswith(".csv") else
                              world / "digit-rows.npz" if j.dataset == "digits" else
                              world / "data" / j.dataset / DATASETS[j.dataset].files["test_images"][0])
    predictions = tmp_path / "predictions.csv"
    code, out, err = _run(capsys, "predict", model, source, "--out", predictions)
    assert code == 0, err
    rows = list(csv.reader(predictions.read_text().splitlines()))
    expected = {"digit-rows.npz": 7, "t10k-images-idx3-ubyte.gz": N_TEST}.get(os.path.basename(str(source)), 150)
    assert len(rows) == 1 + expected

    code, out, err = _run(capsys, "check", "--model", model, "--entries", "20")
    assert code == 0, out + err
    code, out, err = _run(capsys, "derive", "--model", model)
    assert code == 0 and "layer 1:" in out, err
    _journey_specifics(name, world, model, capsys)


def _journey_specifics(name, world, model, capsys):
    """What one journey shows beyond the common path."""
    loaded = load_model(model)
    if name.startswith("mnist best preset"):
        assert loaded.settings["shift"] == 1 and loaded.settings["optimizer"] == "sgd" and loaded.settings["l2"] > 0
    elif name.startswith("fashion-mnist best preset"):
        assert [type(layer).__name__ for layer in loaded.model.layers][:4] == ["Dense", "BatchNorm", "ReLU", "Dropout"]
        assert loaded.settings["flip"] is True
    elif name.startswith("file preset"):
        assert loaded.settings["drop"] == "id" and "id" not in loaded.metadata["extra"]["feature_names"]
        # evaluate and predict leave the dropped column out too, on the training file and on another one
        code, out, err = _run(capsys, "evaluate", model, "--dataset", world / "flowers.csv", "--split", "all")
        assert code == 0 and "150 samples" in out, err
    elif name == "regression, two targets on different scales":
        code, out, err = _run(capsys, "evaluate", model)
        per_target = {line.split()[0]: float(line.split()[1]) for line in out.splitlines()[-2:]}
        # each target learnt in its own units: one scale for both left the small one at an R² far below 0
        assert per_target["dose"] > 0.5 and per_target["score"] > 0.5, out
        assert loaded.metadata["extra"]["target_scaling"]["scale"][0] < 0.1 < 10 < \
            loaded.metadata["extra"]["target_scaling"]["scale"][1]
    elif name == "fashion-mnist preset (class names)":
        code, out, _ = _run(capsys, "evaluate", model)
        assert "Ankle boot" in out


# -- resume -------------------------------------------------------------------------

@pytest.mark.parametrize("dataset", ["digits", "mnist"] if PROFILE == "ci" else ["digits"])
def test_a_resumed_journey_ends_where_an_uninterrupted_one_does(tmp_path, world, capsys, dataset):
    # A constant schedule: a cosine one depends on --epochs, so a run extended from 2 to 3 epochs ends elsewhere.
    common = ["--dataset", dataset, "--data-dir", world / "data", "--hidden", "8", "--schedule", "constant",
              "--no-plots", *TINY]
    assert _run(capsys, "train", *common, "--epochs", "3", "--out", tmp_path / "whole.npz")[0] == 0
    assert _run(capsys, "train", *common, "--epochs", "2", "--checkpoint-every", "1",
                "--out", tmp_path / "part.npz")[0] == 0
    code, out, err = _run(capsys, "train", "--resume", tmp_path / "part.ckpt.npz", "--epochs", "3", "--no-progress")
    assert code == 0 and "resumed after epoch 2" in err, err
    whole, resumed = load_model(tmp_path / "whole.npz"), load_model(tmp_path / "part.npz")
    assert np.array_equal(whole.model.get_weights(), resumed.model.get_weights())
    for command in (["evaluate", tmp_path / "part.npz"], ["check", "--model", tmp_path / "part.ckpt.npz"],
                    ["derive", "--model", tmp_path / "part.npz"]):
        code, _, err = _run(capsys, *command)
        assert code == 0, err


# -- what the console says ----------------------------------------------------------------

def _no_drawing(monkeypatch, **replacements):
    """Plot functions that draw nothing (the journeys draw real ones), or the ``replacements`` given."""
    from handgrad.report import plots

    for name in ("plot_learning_curves", "plot_held_out", "plot_first_layer_weights"):
        monkeypatch.setattr(plots, name, replacements.get(name, lambda *args, **kwargs: None))


def test_early_stopping_says_when_and_why_it_stopped_and_which_weights_it_kept(tmp_path, capsys, monkeypatch):
    drawn = {}
    _no_drawing(monkeypatch, plot_learning_curves=lambda records, path, **kwargs: drawn.update(kwargs))
    model = tmp_path / "m.npz"
    code, out, err = _run(capsys, "train", "--hidden", "16", "--epochs", "40", "--early-stopping", "2",
                          "--out", model, *TINY)
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("early stopping:"))
    stopped, kept = map(int, re.search(r"stopped after epoch (\d+) of 40.*weights of epoch (\d+)", line).groups())
    assert stopped == kept + 2 and "had not improved for 2 epochs" in line
    loaded = load_model(model)
    assert len(loaded.history) == stopped
    best = min(range(stopped), key=lambda i: loaded.history[i]["val_loss"])
    assert kept == best + 1
    assert drawn["kept_epoch"] == kept and f"after epoch {stopped}" in drawn["note"]


def test_the_train_figures_are_the_saved_models_on_its_training_rows(tmp_path, capsys):
    """Not the running mean over the last epoch's shifted minibatches: the model as written, in inference mode."""
    model = tmp_path / "m.npz"
    code, out, err = _run(capsys, "train", "--hidden", "16", "--epochs", "3", "--shift", "1", "--dropout", "0.3",
                          "--out", model, "--no-plots", *TINY)
    assert code == 0, err
    printed = _value(out, "train accuracy")
    loaded = load_model(model)
    from handgrad.data.loaders import load_dataset

    data = load_dataset("digits")
    rows = validation_split(len(data.X_train), loaded.settings["validation_fraction"], loaded.settings["seed"])[0]
    X = loaded.preprocessor.transform(data.X_train[rows], dtype=loaded.model.dtype)
    assert printed == pytest.approx(np.mean(loaded.model.predict(X) == data.y_train[rows]), abs=5e-5)
    assert printed != pytest.approx(loaded.history[-1]["train_accuracy"], abs=1e-6)
    assert f"on the {len(rows):,} training rows" in out


def test_a_plot_that_cannot_be_drawn_is_a_warning_and_hides_no_result(tmp_path, world, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the figure is broken")

    def drawn(*args, **kwargs):
        path = next(arg for arg in args if hasattr(arg, "write_bytes"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"png")

    _no_drawing(monkeypatch, plot_first_layer_weights=broken, plot_learning_curves=drawn, plot_held_out=drawn)
    model, folder = tmp_path / "m.npz", tmp_path / "plots"
    code, out, err = _run(capsys, "train", "--dataset", "mnist", "--data-dir", world / "data", "--hidden", "8",
                          "--epochs", "1", "--out", model, "--plots", folder, *TINY)
    assert code == 0 and model.is_file()
    assert "test accuracy" in out and "model written to" in out
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert warnings == ["handgrad train: warning: first_layer_weights.png was not drawn (RuntimeError: the figure "
                        "is broken); the results above are complete and the files written"]
    assert sorted(p.name for p in folder.iterdir()) == ["confusion_matrix.png", "learning_curves.png"]


def test_a_numeric_target_without_a_loss_gets_a_hint_naming_squared_error(tmp_path, world, capsys):
    common = ["--dataset", world / "health.csv", "--target", "score", "--epochs", "1", "--hidden", "4",
              "--no-plots", "--out", tmp_path / "m.npz", *TINY]
    code, _, err = _run(capsys, "train", *common)
    assert code == 0
    hint = [line for line in err.splitlines() if "warning" in line]
    assert len(hint) == 1 and "'score' holds 150 distinct numbers in 150 rows" in hint[0]
    assert "--loss squared-error" in hint[0]
    code, _, err = _run(capsys, "train", *common, "--loss", "cross-entropy")    # classes, on purpose
    assert code == 0 and "warning" not in err
    code, _, err = _run(capsys, "train", "--dataset", world / "flowers.csv", "--target", "species", "--drop", "id",
                        "--epochs", "1", "--hidden", "4", "--no-plots", "--out", tmp_path / "f.npz", *TINY)
    assert code == 0 and "warning" not in err, err          # text labels: classes, no hint


def test_a_model_saved_without_preprocessing_is_named_on_a_built_in_dataset(tmp_path, capsys):
    model = hg.mlp(64, [8], 10, seed=0)
    hg.save(model, tmp_path / "bare.npz", loss=hg.SoftmaxCrossEntropy())
    _write_idx(tmp_path / "digits.idx", digits_arrays()[0][:5].reshape(5, 8, 8).astype(np.uint8))
    for command in (["evaluate", tmp_path / "bare.npz", "--dataset", "digits"],
                    ["predict", tmp_path / "bare.npz", tmp_path / "digits.idx"]):
        code, _, err = _run(capsys, *command)
        assert code == 0, err
        warning, = [line for line in err.splitlines() if "warning" in line]
        assert "stores no preprocessing" in warning and "(0..16)" in warning and "preprocessing=" in warning
    trained = tmp_path / "trained.npz"                  # handgrad train stores it: no warning
    assert _run(capsys, "train", "--hidden", "4", "--epochs", "1", "--out", trained, "--no-plots", *TINY)[0] == 0
    code, _, err = _run(capsys, "evaluate", trained)
    assert code == 0 and "warning" not in err


# -- flags that have no effect ----------------------------------------------------------

# One command line per rule of handgrad.cli.unused_flags.RULES that makes the flag do nothing, and
# one where the same flag does something.
IDLE = {
    "momentum": (["train", "--momentum", "0.5"], ["train", "--momentum", "0.5", "--optimizer", "sgd"]),
    "warmup": (["train", "--warmup", "1"], ["train", "--warmup", "1", "--schedule", "cosine"]),
    "test_fraction": (["train", "--dataset", "mnist", "--test-fraction", "0.3"], ["train", "--test-fraction", "0.3"]),
    "data_dir": (["train", "--data-dir", "somewhere"], ["train", "--dataset", "mnist", "--data-dir", "somewhere"]),
    "plots": (["train", "--plots", "p", "--no-plots"], ["train", "--plots", "p"]),
    "checkpoint_every": (["train", "--checkpoint-every", "50", "--epochs", "40"],
                         ["train", "--checkpoint-every", "5", "--epochs", "40"]),
    "entries": (["check", "--entries", "5"], ["check", "--entries", "5", "--model", "m.npz"]),
    "all": (["check", "--all"], ["check", "--all", "--model", "m.npz"]),
    "check_rows": (["derive", "--check-rows", "2"], ["derive", "--check-rows", "2", "--check"]),
    "check_entries": (["derive", "--check-entries", "2"], ["derive", "--check-entries", "2", "--check"]),
    "activation": (["train", "--hidden", "none", "--activation", "tanh"], ["train", "--activation", "tanh"]),
    "dropout": (["derive", "--hidden", "none", "--dropout", "0.2"], ["derive", "--dropout", "0.2"]),
    "batch_norm": (["train", "--hidden", "none", "--batch-norm"], ["train", "--hidden", "8", "--batch-norm"]),
}


def _idle_flags(argv, capsys):
    from handgrad.cli import build_parser
    from handgrad.cli import settings as S
    from handgrad.cli.unused_flags import warn_unused

    args = build_parser().parse_args(argv)
    settings = S.from_flags(args) if args.command in ("train", "derive") else None
    if args.command == "train":
        settings["checkpoint_every"] = args.checkpoint_every
    idle = warn_unused(args.command, args, settings)
    return idle, capsys.readouterr().err


def test_every_rule_for_flags_without_effect_has_a_case():
    from handgrad.cli.unused_flags import RULES

    assert sorted(rule.flag for rule in RULES) == sorted(IDLE)


@pytest.mark.parametrize("flag", list(IDLE))
def test_a_flag_without_effect_is_a_one_line_warning_and_one_with_effect_none(flag, capsys):
    idle_argv, busy_argv = IDLE[flag]
    idle, err = _idle_flags(idle_argv, capsys)
    assert idle == [flag]
    dashed = "--" + flag.replace("_", "-")
    assert err.startswith(f"handgrad {idle_argv[0]}: warning: {dashed} has no effect ") and err.count("\n") == 1
    assert _idle_flags(busy_argv, capsys)[0] == []


def test_a_whole_run_with_flags_without_effect_warns_and_trains(tmp_path, capsys):
    code, out, err = _run(capsys, "train", "--momentum", "0.5", "--warmup", "1", "--hidden", "4", "--epochs", "1",
                          "--out", tmp_path / "m.npz", "--no-plots", *TINY)
    assert code == 0 and "model written to" in out
    assert [line.split(":")[2].split()[0] for line in err.splitlines() if "warning" in line] == ["--momentum",
                                                                                               "--warmup"]


# -- the real command: exit codes, pipes, progress -------------------------------------------

def _command(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=None):
    return subprocess.Popen([sys.executable, "-m", "handgrad", *map(str, args)], stdout=stdout, stderr=stderr,
                            cwd=cwd, text=True)


def _quiet(err):
    """Whether stderr holds nothing about a pipe or an error."""
    return not re.search(r"(?i)pipe|error|traceback|exception", err)


def _with_stdout_closed(*args):
    """Run the command with its standard output a pipe whose reader has already gone; (exit code, stderr)."""
    process = _command(*args)
    process.stdout.close()              # the reader leaves before the first line, as `| head -0` would
    err = process.stderr.read()
    return process.wait(timeout=300), err


@pytest.fixture(scope="module")
def small_model(tmp_path_factory, world):
    folder = tmp_path_factory.mktemp("small")
    assert main(["train", "--dataset", "mnist", "--data-dir", str(world / "data"), "--hidden", "8", "--epochs", "1",
                 "--out", str(folder / "m.npz"), "--no-plots", *TINY]) == 0
    return folder / "m.npz"


def test_a_reader_that_leaves_early_cuts_nothing_short(tmp_path, small_model):
    code, err = _with_stdout_closed("evaluate", small_model, "--plots", tmp_path / "report")
    assert (code, err) == (0, "")
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["confusion_matrix.png", "misclassified.png"]
    code, err = _with_stdout_closed("check", "--model", small_model, "--entries", "5")
    assert code == 0 and _quiet(err), err           # the progress lines on stderr, and nothing about the pipe


@pytest.mark.skipif(PROFILE != "ci", reason="three more commands of a few seconds each: the CI profile runs them")
def test_a_reader_that_leaves_early_cuts_no_other_command_short(tmp_path, world, small_model):
    code, err = _with_stdout_closed("check")
    assert (code, err) == (0, "")
    code, err = _with_stdout_closed("predict", small_model, world / "data" / "mnist" / "t10k-images-idx3-ubyte.gz")
    assert (code, err) == (0, "")
    code, err = _with_stdout_closed("train", "--dataset", "mnist", "--data-dir", world / "data", "--hidden", "8",
                                    "--epochs", "1", "--out", tmp_path / "m.npz", "--plots", tmp_path / "plots",
                                    "--threads", "1")
    assert code == 0 and "warning" not in err and "error" not in err, err
    assert (tmp_path / "m.npz").is_file() and len(list((tmp_path / "plots").iterdir())) == 3
    process = _command("check", stdout=subprocess.PIPE)           # `handgrad check | head -1`, literally
    first = process.stdout.readline()
    process.stdout.close()
    assert first.startswith("check") and process.wait(timeout=300) == 0 and process.stderr.read() == ""


def test_without_a_terminal_train_prints_a_line_per_epoch(tmp_path, world):
    process = _command("train", "--dataset", "mnist", "--data-dir", world / "data", "--hidden", "8", "--epochs", "3",
                       "--out", tmp_path / "m.npz", "--no-plots", "--threads", "1")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert [line.split()[1] for line in err.splitlines() if line.startswith("epoch ")] == ["1/3", "2/3", "3/3"]
