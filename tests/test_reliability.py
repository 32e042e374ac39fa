"""Nothing lost at the edges: the regression tests of a reliability probe's findings, case by case.

Each numbered case of the probe (hostile model files, text from files, runs
thrown away at the end, running out of memory, hostile finite settings,
stale temporaries, estimator files that misdescribe their network, odd
estimator inputs) ends here with a one-line handgrad error and exit code 2,
or with a correct result; nothing is lost and no memory use is unbounded.
The command line runs in process (``handgrad.cli.main``) except where the
process itself is the subject (an address-space limit, SIGKILL).
"""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import handgrad as hg
from handgrad.cli import main
from handgrad.data.loaders import stratified_split
from handgrad.data.preprocessing import Preprocessor
from handgrad.errors import DataError, HandgradError, ModelFileError, TrainingDiverged
from handgrad.io import files
from handgrad.io.files import atomic_write, os_error_message, remove_stale_temporaries
from handgrad.io.modelfile import check_model_metadata, load_model, save_model
from handgrad.io.text import printable

FAST = ["--threads", "1", "--no-plots", "--no-progress", "--epochs", "2", "--test-fraction", "0.2"]


def _run(capsys, *argv):
    """``handgrad ARGV`` in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code, err, command, started=False):
    """The promise for a failure: exit 2, one line, no traceback; returns that line.

    ``started``: the run announced itself first (train's "training ..." line), so the error is the second line.
    """
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 + started and lines[-1].startswith(f"handgrad {command}: error: "), err
    assert not started or lines[0].startswith("training "), err
    assert "Traceback" not in err
    return lines[-1]


def _edited(source, target, edit):
    """``source`` rewritten to ``target`` with ``edit(meta, arrays)`` applied, bypassing handgrad's writer."""
    with np.load(source, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("metadata").tobytes())
    edit(meta, arrays)
    np.savez(target, metadata=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return target


def _peak(function):
    """``(result or exception, peak bytes traced)`` of ``function()``."""
    tracemalloc.start()
    try:
        try:
            result = function()
        except Exception as exc:        # the caller checks which
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, row)) for row in rows]) + "\n")
    return path


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A small labelled CSV, a model trained on it, and the rows the CLI's split holds out for testing."""
    folder = tmp_path_factory.mktemp("table")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3)).round(3)
    y = np.arange(60) % 3
    rows = [[*x, label] for x, label in zip(X, y)]
    _write_csv(folder / "good.csv", ["a", "b", "c", "label"], rows)
    _, test = stratified_split(y, 0.2, 0)          # the split handgrad train makes (seed 0)
    model = hg.mlp(3, [5], 3, seed=0)
    save_model(folder / "model.npz", model, loss=hg.SoftmaxCrossEntropy(), classes=[0, 1, 2],
               preprocessing=Preprocessor.fit(X, "tabular"),
               settings={"dataset": str(folder / "good.csv"), "test_fraction": 0.2},
               extra={"feature_names": ["a", "b", "c"]})
    return {"folder": folder, "rows": rows, "test": set(test.tolist()), "X": X}


# -- 1. memory from a small file ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def estimator_file(tmp_path_factory):
    """A fitted classifier with string labels, saved."""
    path = tmp_path_factory.mktemp("estimator") / "est.npz"
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 4))
    y = np.array(["cat", "dog"])[(X[:, 0] > 0).astype(int)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        hg.save(hg.MLPClassifier(hidden_layer_sizes=(6,), max_iter=5, random_state=0).fit(X, y), path)
    return path


def _estimator_edit(source, target, edit):
    return _edited(source, target, lambda meta, arrays: edit(meta["estimator"]))


def test_1_labels_are_stored_and_read_at_their_real_width_whatever_width_the_file_declares(estimator_file, tmp_path):
    stored = json.loads(np.load(estimator_file)["metadata"].tobytes())["estimator"]["fitted"]["classes_"]
    assert stored == {"dtype": "<U3", "values": ["cat", "dog"]}
    wide = _estimator_edit(estimator_file, tmp_path / "wide.npz",
                           lambda e: e["fitted"]["classes_"].update(dtype="<U999999"))
    estimator, peak = _peak(lambda: hg.load(wide))
    assert isinstance(estimator, hg.MLPClassifier) and estimator.classes_.dtype == np.dtype("<U3")
    assert peak < 50 * wide.stat().st_size + 2**20          # 8 MB per label before
    labels, peak = _peak(lambda: estimator.predict(np.zeros((2000, 4))))
    assert labels.dtype == np.dtype("<U3") and peak < 2**20      # 6.7 GiB before


def test_1_a_thousand_declared_labels_are_refused_before_any_array_is_made_of_them(estimator_file, tmp_path):
    many = _estimator_edit(estimator_file, tmp_path / "many.npz", lambda e: e["fitted"]["classes_"].update(
        dtype="<U999999", values=[f"label{i}" for i in range(1000)]))
    error, peak = _peak(lambda: hg.load(many))
    assert isinstance(error, ModelFileError) and "1000 labels" in str(error)
    assert peak < 50 * many.stat().st_size + 2**20         # 11.9 GB before


def test_1_a_declared_width_shorter_than_a_label_is_refused(estimator_file, tmp_path):
    short = _estimator_edit(estimator_file, tmp_path / "short.npz",
                            lambda e: e["fitted"]["classes_"].update(dtype="<U2"))
    with pytest.raises(ModelFileError, match="<U2 but holds a label of 3 characters"):
        hg.load(short)


def test_1_a_preprocessing_sized_for_other_features_is_refused_at_load_and_never_written(table, tmp_path):
    def wide(meta, arrays):
        meta["preprocessing"] = {"kind": "tabular", "mean": [0.0] * 200_000, "std": [1.0] * 200_000}

    path = _edited(table["folder"] / "model.npz", tmp_path / "wide.npz", wide)
    error, peak = _peak(lambda: load_model(path))
    assert isinstance(error, ModelFileError) and "for 200000 features but the model reads 3" in str(error)
    assert peak < 50 * path.stat().st_size + 2**20
    with pytest.raises(HandgradError, match="for 4 features but the model reads 3"):
        save_model(tmp_path / "m.npz", hg.mlp(3, [2], 2), loss=None, classes=[0, 1],
                   preprocessing=Preprocessor.fit(np.ones((2, 4)), "tabular"))


# -- 2. text from a file ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hostile_names(table):
    """The table's model with class labels holding a lone surrogate, an ANSI escape and a bidi override."""
    folder = table["folder"]
    labels = ["\ud800", "red\x1b[31m", "\u202eevil"]
    return _edited(folder / "model.npz", folder / "names.npz", lambda meta, arrays: meta.update(classes=labels))


def test_2_labels_with_surrogates_and_escapes_reach_standard_output_escaped(capsys, table, hostile_names):
    code, out, err = _run(capsys, "predict", hostile_names, table["folder"] / "good.csv")
    assert code == 0, err
    out.encode("utf-8")                                      # valid UTF-8: no surrogate left
    assert "\x1b" not in out and "\u202e" not in out
    assert "prob_\\ud800" in out and "prob_red\\x1b[31m" in out and "\\u202eevil" in out


def test_2_predictions_written_to_a_file_are_valid_utf8_with_escaped_names(capsys, table, hostile_names, tmp_path):
    code, _, err = _run(capsys, "predict", hostile_names, table["folder"] / "good.csv", "--out", tmp_path / "p.csv")
    assert code == 0, err
    text = (tmp_path / "p.csv").read_bytes().decode("utf-8")            # strict: raises on invalid UTF-8
    assert "\x1b" not in text and "\\x1b" in text


def test_2_class_names_reach_the_terminal_escaped(capsys, table):
    folder = table["folder"]
    named = _edited(folder / "model.npz", folder / "named.npz", lambda meta, arrays: meta["extra"].update(
        class_names=["\ud800", "\x1b[2J", "ok"]))
    code, out, err = _run(capsys, "evaluate", named, "--dataset", folder / "good.csv")
    assert code == 0, err
    out.encode("utf-8")
    assert "\x1b" not in out and "\\x1b[2J" in out and "\\ud800" in out


def test_2_printable_escapes_only_unsafe_characters():
    assert printable("naïve café 猫") == "naïve café 猫"
    assert printable("a\x1b[31mb\x07\x9b\ud800\u202e") == "a\\x1b[31mb\\x07\\x9b\\ud800\\u202e"


# -- 3. a finished run is never lost -----------------------------------------------------------------------

def _huge_table(table, name, in_test):
    """The table with 1e300 in column b of a row the CLI's split puts in the test (or training) rows."""
    rows = [list(r) for r in table["rows"]]
    row = next(i for i in range(len(rows)) if (i in table["test"]) == in_test)
    rows[row][1] = 1e300
    return _write_csv(table["folder"] / name, ["a", "b", "c", "label"], rows)


def test_3_a_huge_finite_value_in_the_training_rows_is_refused_before_training(capsys, table, tmp_path):
    csv = _huge_table(table, "huge-train.csv", in_test=False)
    code, _, err = _run(capsys, "train", "--dataset", csv, *FAST, "--out", tmp_path / "m.npz")
    line = _one_line_error(code, err, "train")
    assert "column 'b'" in line and "1e+300" in line and "float64" in line
    assert list(tmp_path.iterdir()) == []


def test_3_in_float64_the_same_value_trains_and_is_stored_correctly(capsys, table, tmp_path):
    csv = _huge_table(table, "huge-train.csv", in_test=False)
    code, out, err = _run(capsys, "train", "--dataset", csv, *FAST, "--dtype", "float64", "--out", tmp_path / "m.npz")
    assert code == 0, err
    loaded = load_model(tmp_path / "m.npz")
    assert np.isfinite(loaded.preprocessor.scale).all() and loaded.preprocessor.scale[1] > 1e298


def test_3_a_huge_value_in_the_test_rows_is_named_not_blamed_on_nan(capsys, table, tmp_path):
    csv = _huge_table(table, "huge-test.csv", in_test=True)
    code, _, err = _run(capsys, "train", "--dataset", csv, *FAST, "--out", tmp_path / "m.npz")
    line = _one_line_error(code, err, "train")
    assert "test split" in line and "1e+300" in line and "column 1" in line and "NaN" not in line
    assert list(tmp_path.iterdir()) == []


def test_3_metadata_that_json_cannot_hold_is_refused_before_training():
    with pytest.raises(HandgradError, match="cannot be stored as JSON"):
        check_model_metadata(hg.mlp(2, [3], 2), loss=None, classes=[0, 1], settings={"lr": float("nan")})


def _failing_writes(monkeypatch, failing, errno_=errno.ENOSPC):
    """Make atomic_write fail with ``errno_`` for targets in any of the folders ``failing``."""
    real = files.atomic_write

    def write(path, *args, **kwargs):
        if any(str(path).startswith(str(folder)) for folder in failing):
            raise OSError(errno_, os.strerror(errno_), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr("handgrad.io.modelfile.atomic_write", write)


def test_3_a_full_disk_at_the_final_save_leaves_the_model_in_a_fallback_beside_it(capsys, table, tmp_path,
                                                                                 monkeypatch):
    target = tmp_path / "out" / "model.npz"
    _failing_writes(monkeypatch, [target])
    code, _, err = _run(capsys, "train", "--dataset", table["folder"] / "good.csv", *FAST, "--out", target)
    line = _one_line_error(code, err, "train", started=True)
    assert f"{target}: no space left on device; free some space" in line
    rescued = [p for p in target.parent.iterdir() if ".rescued-" in p.name]
    assert len(rescued) == 1 and str(rescued[0]) in line and rescued[0].name.startswith("model.rescued-")
    assert len(load_model(rescued[0]).history) == 2


def test_3_when_the_folder_fails_too_the_model_goes_to_the_temporary_folder(capsys, table, tmp_path, monkeypatch):
    target, temporary = tmp_path / "out" / "model.npz", tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temporary))
    _failing_writes(monkeypatch, [target.parent], errno_=errno.EACCES)
    code, _, err = _run(capsys, "train", "--dataset", table["folder"] / "good.csv", *FAST, "--out", target)
    line = _one_line_error(code, err, "train", started=True)
    assert "permission denied; check its permissions" in line
    rescued = list(temporary.iterdir())
    assert len(rescued) == 1 and str(rescued[0]) in line
    load_model(rescued[0])


@pytest.mark.parametrize("number, words", [
    (errno.ENOSPC, "no space left on device; free some space on that disk or choose another disk"),
    (errno.EDQUOT, "free some space within your quota"),
    (errno.EACCES, "permission denied; check its permissions"),
    (errno.EROFS, "read-only file system; that file system is read-only; choose another path"),
    (errno.ENOENT, "no such file or directory; check the path"),
])
def test_3_os_errors_name_the_path_and_the_remedy(number, words):
    message = os_error_message(OSError(number, os.strerror(number), "/data/model.npz"))
    assert message.startswith("/data/model.npz: ") and words in message
    assert os_error_message(OSError(number, os.strerror(number)), "/else").startswith("/else: ")


def test_3_atomic_write_names_its_target_when_the_disk_fills(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as info:
        atomic_write(tmp_path / "model.npz", lambda f: f.write(b"x"))
    assert info.value.filename == str(tmp_path / "model.npz") and list(tmp_path.iterdir()) == []


def test_3_the_cli_line_for_a_full_disk_names_the_path(capsys, table, tmp_path, monkeypatch):
    _failing_writes(monkeypatch, [tmp_path])
    monkeypatch.setattr("handgrad.cli.train.fallback_paths", lambda path: [])
    code, _, err = _run(capsys, "train", "--dataset", table["folder"] / "good.csv", *FAST, "--out",
                        tmp_path / "m.npz")
    line = _one_line_error(code, err, "train", started=True)
    assert f"{tmp_path / 'm.npz'}: no space left on device" in line and "the trained model is lost" in line


# -- 4. out of memory ------------------------------------------------------------------------------------------

def test_4_a_network_that_cannot_fit_is_refused_with_the_estimate(capsys, tmp_path):
    code, _, err = _run(capsys, "train", "--hidden", "100000,100000", "--no-plots", "--out", tmp_path / "m.npz")
    line = _one_line_error(code, err, "train")
    assert "needs about" in line and "10,007,600,010 weights" in line and "lower --hidden" in line
    assert list(tmp_path.iterdir()) == []


def test_1_and_4_under_an_address_space_limit_hostile_files_and_oversized_runs_end_in_one_line(estimator_file,
                                                                                                 tmp_path):
    """In a process limited to its size after start-up plus 200 MB (``ulimit -v``): the 1,000-label file is
    refused by handgrad, not by a MemoryError, and a run that cannot fit is refused naming the limit."""
    many = _estimator_edit(estimator_file, tmp_path / "many.npz", lambda e: e["fitted"]["classes_"].update(
        dtype="<U999999", values=[f"label{i}" for i in range(1000)]))
    out = tmp_path / "out" / "m.npz"
    script = textwrap.dedent(f"""
        import resource, sys
        import handgrad as hg
        from handgrad.cli import main
        from handgrad.errors import ModelFileError
        import handgrad.cli.train, handgrad.data.loaders, sklearn.datasets, sklearn.model_selection
        hg.MLPClassifier                      # the estimators' imports, before the limit
        size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size + 200 * 2**20, resource.RLIM_INFINITY))
        try:
            hg.load({str(many)!r})
        except ModelFileError as exc:
            print("refused:", exc)
        sys.exit(main(["train", "--hidden", "3000,3000", "--no-plots", "--no-progress", "--out", {str(out)!r}]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.startswith("refused:") and "1000 labels" in result.stdout, result.stderr[-2000:]
    line = _one_line_error(result.returncode, result.stderr, "train")
    assert "RLIMIT_AS" in line and "needs about" in line and "raise the limit" in line
    assert not out.parent.exists()


def test_4_a_memory_error_anywhere_is_one_line_and_nothing_is_written(capsys, table, tmp_path, monkeypatch):
    def exhausted(*args, **kwargs):
        raise MemoryError("Unable to allocate 37.3 GiB for an array with shape (100000, 100000)")

    monkeypatch.setattr(hg, "fit", exhausted)
    code, _, err = _run(capsys, "train", "--dataset", table["folder"] / "good.csv", *FAST, "--out",
                        tmp_path / "m.npz")
    line = _one_line_error(code, err, "train", started=True)
    assert "out of memory (Unable to allocate 37.3 GiB" in line and "nothing was written" in line
    assert list(tmp_path.iterdir()) == []


# -- 5. hostile but finite settings --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def activated(tmp_path_factory):
    """A model of each hidden activation with settings, and one with BatchNorm, saved."""
    folder = tmp_path_factory.mktemp("activated")
    X = np.random.default_rng(0).standard_normal((20, 3))
    for name, middle in (("leaky", [hg.LeakyReLU()]), ("elu", [hg.ELU()]), ("norm", [hg.BatchNorm(4), hg.ReLU()])):
        model = hg.Sequential(hg.Dense(3, 4), *middle, hg.Dense(4, 3), seed=0)
        save_model(folder / f"{name}.npz", model, loss=hg.SoftmaxCrossEntropy(), classes=[0, 1, 2],
                   preprocessing=Preprocessor.fit(X, "tabular"), extra={"feature_names": ["a", "b", "c"]})
    return folder


@pytest.mark.parametrize("name, setting, value, words", [
    ("leaky", "negative_slope", 1e308, "negative_slope .*must be at most 1e\\+06"),
    ("elu", "alpha", 1e308, "alpha .*must be at most 1e\\+06"),
    ("norm", "eps", 1e308, "eps must be at most 1"),
    ("norm", "eps", 1e-300, "eps must be at least 1.17549e-38, the smallest normal float32"),
])
def test_5_hostile_layer_settings_are_refused_at_load(capsys, table, activated, tmp_path, name, setting, value, words):
    path = _edited(activated / f"{name}.npz", tmp_path / "hostile.npz",
                   lambda meta, arrays: meta["architecture"][1].update({setting: value}))
    code, out, err = _run(capsys, "evaluate", path, "--dataset", table["folder"] / "good.csv")
    line = _one_line_error(code, err, "evaluate")
    assert str(path) in line and out == ""
    assert re.search(words, line), line


def test_5_weights_that_overflow_end_in_one_line_naming_the_model_not_in_nan_figures(capsys, table, tmp_path):
    path = _edited(table["folder"] / "model.npz", tmp_path / "overflow.npz",
                   lambda meta, arrays: arrays.update(W1=np.full((3, 5), 3e38, dtype=np.float32)))
    code, out, err = _run(capsys, "evaluate", path, "--dataset", table["folder"] / "good.csv")
    line = _one_line_error(code, err, "evaluate")
    assert str(path) in line and "not finite" in line and "accuracy" not in out
    code, out, err = _run(capsys, "predict", path, table["folder"] / "good.csv", "--out", tmp_path / "p.csv")
    assert str(path) in _one_line_error(code, err, "predict") and out == ""
    assert not (tmp_path / "p.csv").exists()


def test_5_a_preprocessing_scale_that_is_zero_in_the_models_dtype_is_refused_at_load(capsys, table, tmp_path):
    def tiny(meta, arrays):
        meta["preprocessing"]["std"][1] = 1e-300

    path = _edited(table["folder"] / "model.npz", tmp_path / "tiny.npz", tiny)
    code, _, err = _run(capsys, "predict", path, table["folder"] / "good.csv")
    line = _one_line_error(code, err, "predict")
    assert str(path) in line and "preprocessing" in line and "smallest normal float32" in line
    float64 = _edited(path, tmp_path / "tiny64.npz", lambda meta, arrays: (
        meta.update(dtype="float64"), arrays.update({k: v.astype(np.float64) for k, v in arrays.items()})))
    assert load_model(float64).preprocessor.scale[1] == 1e-300         # a normal float64: usable there


def test_5_stored_optimizer_settings_are_checked_in_the_models_dtype(tmp_path):
    model, adam = hg.mlp(2, [3], 2, seed=0), hg.Adam()
    hg.fit(model, hg.SoftmaxCrossEntropy(), np.zeros((4, 2)), np.array([0, 1, 0, 1]), optimizer=adam, epochs=1)
    hg.io.modelfile.save_checkpoint(tmp_path / "c.npz", model, loss=None, classes=[0, 1],
                                    optimizer_state=adam.state_dict(), epoch=1, history=[{"epoch": 1}])
    path = _edited(tmp_path / "c.npz", tmp_path / "eps.npz",
                   lambda meta, arrays: meta["checkpoint"]["optimizer"]["config"].update(eps=1e-300))
    with pytest.raises(ModelFileError, match="eps must be at least 1.17549e-38"):
        hg.io.modelfile.load_checkpoint(path)


# -- 6. stale temporaries --------------------------------------------------------------------------------------------

def test_6_a_successful_write_removes_its_targets_stale_temporaries_but_never_a_fresh_one(tmp_path):
    target = tmp_path / "model.npz"
    stale, fresh = tmp_path / ".model.npz.0badc0de.tmp", tmp_path / ".model.npz.1234abcd.tmp"
    other, lookalike = tmp_path / ".other.npz.0badc0de.tmp", tmp_path / ".model.npz.notahex.tmp"
    for path in (stale, fresh, other, lookalike):
        path.write_bytes(b"left by a killed writer")
    hour_ago = time.time() - files.STALE_SECONDS - 60
    for path in (stale, other, lookalike):
        os.utime(path, (hour_ago, hour_ago))
    atomic_write(target, lambda f: f.write(b"new"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".model.npz.1234abcd.tmp", ".model.npz.notahex.tmp", ".other.npz.0badc0de.tmp", "model.npz"])


def test_6_the_temporary_of_a_writer_killed_by_sigkill_is_removed_once_stale(tmp_path):
    target = tmp_path / "model.npz"
    script = textwrap.dedent(f"""
        import sys, time
        from handgrad.io.files import atomic_write
        def write(f):
            f.write(b"half a model")
            print("writing", flush=True)
            time.sleep(60)
        atomic_write({str(target)!r}, write)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "writing\n"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    left = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1
    hour_ago = time.time() - files.STALE_SECONDS - 1
    os.utime(left[0], (hour_ago, hour_ago))
    assert remove_stale_temporaries(target) == left and list(tmp_path.iterdir()) == []


# -- 7. estimator files that misdescribe their network ----------------------------------------------------------------

@pytest.mark.parametrize("edit, words", [
    (lambda e: e["params"].update(hidden_layer_sizes=[10**12]), "do not match _fitted_architecture"),
    (lambda e: (e["params"].update(hidden_layer_sizes=[10**12]),
                e["fitted"].update(_fitted_architecture=[[10**12], "relu", 0.0, False])), "is not the"),
    (lambda e: e["fitted"].update(_fitted_architecture=[[7], "relu", 0.0, False]), "_fitted_architecture"),
    (lambda e: e["params"].update(solver="lbfgs"), "solver is 'lbfgs' but the file stores the state of a Adam"),
    (lambda e: e["params"].update(dtype="float32"), "dtype is 'float32' but the stored network is float64"),
    (lambda e: (e["params"].update(activation="tanh"),
                e["fitted"].update(_fitted_architecture=[[6], "tanh", 0.0, False])), "Tanh"),
    (lambda e: e["params"].update(batch_norm=True), "do not match"),
], ids=["huge width", "huge width in both", "architecture", "solver", "dtype", "activation", "batch norm"])
def test_7_estimator_parameters_must_describe_the_stored_network(estimator_file, tmp_path, edit, words):
    path = _estimator_edit(estimator_file, tmp_path / "edited.npz", edit)
    error, peak = _peak(lambda: hg.load(path))
    assert isinstance(error, ModelFileError) and words in str(error), error
    assert peak < 50 * path.stat().st_size + 2**20


def test_7_a_file_always_describes_its_network_so_every_saved_estimator_loads(estimator_file, tmp_path):
    estimator = hg.load(estimator_file)
    estimator.set_params(hidden_layer_sizes=(50,))
    with pytest.raises(HandgradError, match="changed since this MLPClassifier was fitted"):
        hg.save(estimator, tmp_path / "changed.npz")
    estimator.set_params(hidden_layer_sizes=(6,), solver="lbfgs")         # a solver change keeps the network
    hg.save(estimator, tmp_path / "lbfgs.npz")
    assert hg.load(tmp_path / "lbfgs.npz").get_params()["solver"] == "lbfgs"


# -- 8. estimator inputs ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sizes", [(2.5,), (True,), [4, 2.0], (np.float64(3),)])
def test_8_non_integer_layer_sizes_raise_like_scikit_learn(sizes):
    X, y = np.zeros((6, 2)), np.array([0, 1] * 3)
    for kind in (TypeError, ValueError):
        with pytest.raises(kind, match="hidden_layer_sizes"):
            hg.MLPClassifier(hidden_layer_sizes=sizes, max_iter=2).fit(X, y)


def _regression(scale=1.0):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    return X, (X @ [1.0, -2.0, 0.5]) * scale


def test_8_a_huge_sample_weight_is_named_as_the_cause_of_divergence():
    X, y = _regression()
    weights = np.ones(60)
    weights[:3] = 1e308
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged, match="sample_weight reaches 1e\\+308") as info:
        hg.MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y, sample_weight=weights)
    assert "learning rate" not in str(info.value)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_8_huge_targets_are_named_as_the_cause_of_divergence(solver):
    X, y = _regression(1e300)
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged, match="y reaches .*e\\+300.*scale the targets"):
        hg.MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0, solver=solver).fit(X, y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_8_huge_features_are_named_and_the_input_may_need_scaling():
    X, y = _regression()
    X[0, 0] = 1e200
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged, match="X reaches 1e\\+200.*may need scaling"):
        hg.MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0, solver="lbfgs").fit(X, y)


def test_8_with_early_stopping_a_divergence_warns_and_keeps_the_best_weights():
    X, y = _regression(1e300)
    with np.errstate(all="ignore"), pytest.warns(ConvergenceWarning, match="Training diverged.*best validation"):
        estimator = hg.MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0, early_stopping=True).fit(X, y)
    assert all(np.isfinite(W).all() for W in estimator.coefs_)


def test_8_dtype_accepts_numpy_types_as_well_as_their_names(tmp_path):
    X, y = _regression()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator = hg.MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, dtype=np.float32).fit(X, y)
    assert estimator.coefs_[0].dtype == np.float32
    hg.save(estimator, tmp_path / "r.npz")
    assert hg.load(tmp_path / "r.npz").get_params()["dtype"] == "float32"


def test_8_cli_regression_targets_too_large_to_train_on_are_named(capsys, table, tmp_path):
    rows = [list(r) for r in table["rows"]]
    rows[0][3] = 1e300
    csv = _write_csv(table["folder"] / "huge-target.csv", ["a", "b", "c", "price"], rows)
    code, _, err = _run(capsys, "train", "--dataset", csv, "--target", "price", "--loss", "squared-error", *FAST,
                        "--dtype", "float64", "--out", tmp_path / "m.npz")
    line = _one_line_error(code, err, "train")
    assert "target column 'price' holds 1e+300" in line and "learning rate" not in line


def test_preprocessing_refuses_fitted_numbers_unusable_in_the_dtype():
    with pytest.raises(DataError, match="cannot be scaled by its largest value 1e-300"):
        Preprocessor.fit(np.full((3, 2), 1e-300), "image", np.float32)
    assert Preprocessor.fit(np.full((3, 2), 1e-300), "image", np.float64).scale == 1e-300
