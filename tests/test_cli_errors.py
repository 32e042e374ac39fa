"""Bad input to the real CLI: one line naming the problem and the fix, exit code 2, nothing written.

Every case runs ``python -m handgrad.cli`` in a subprocess.  The cases are
independent, so a module fixture starts them a few at a time and each test
then checks one result.  Each case writes into its own folder, which holds a
``precious.npz`` beforehand: after the failed command the folder must hold
exactly that file, unchanged.
"""

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import handgrad as hg
from handgrad.data.preprocessing import Preprocessor
from handgrad.io.modelfile import load_checkpoint, save_model

PRECIOUS = b"a model file that a failed command must not touch"
FAST = ["--threads", "1", "--no-plots", "--no-progress"]


class _Payload:
    """Unpickling this creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, row)) for row in rows]) + "\n")


def _inputs(folder):
    """Data files, good and bad, and model files, good and damaged."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 4))
    labels = np.arange(30) % 3
    header = ["a", "b", "c", "d", "label"]
    rows = [[*x, y] for x, y in zip(X.round(3), labels)]
    _write_csv(folder / "good.csv", header, rows)
    _write_csv(folder / "text.csv", header, rows[:5] + [[1, "high", 3, 4, 0]] + rows[5:])
    _write_csv(folder / "blank.csv", header, rows[:5] + [[1, "", 3, 4, 0]] + rows[5:])
    _write_csv(folder / "inf.csv", header, rows[:5] + [[1, "inf", 3, 4, 0]] + rows[5:])
    _write_csv(folder / "single.csv", header, [[*x, 1] for x in X.round(3)])
    _write_csv(folder / "empty.csv", header, [])
    _write_csv(folder / "wide.csv", ["a", "b", "c", "d", "e", "label"], [[*x, 0, y] for x, y in zip(X, labels)])
    X_nan = X.copy()
    X_nan[3, 2] = np.nan
    np.savez(folder / "nan.npz", X=X_nan, y=labels)
    np.savez(folder / "narrow.npz", X=X[:, :3])
    _write_csv(folder / "narrow.csv", ["a", "b", "c", "label"], [[*x[:3], y] for x, y in zip(X, labels)])
    _write_csv(folder / "words.csv", ["a", "b", "c", "d", "kind"],
               [[*x, ["cat", "dog"][i % 2]] for i, x in enumerate(X.round(3))])
    (folder / "folder.csv").mkdir()
    (folder / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))

    model = hg.mlp(4, [5], 3, seed=0)
    save_model(folder / "model.npz", model, loss=hg.SoftmaxCrossEntropy(), classes=[0, 1, 2],
               preprocessing=Preprocessor.fit(X, "tabular"),
               settings={"dataset": str(folder / "good.csv"), "test_fraction": 0.2},
               extra={"feature_names": header[:4]})
    data = (folder / "model.npz").read_bytes()
    (folder / "truncated.npz").write_bytes(data[:len(data) // 2])
    corrupted = bytearray(data)
    corrupted[len(data) // 2] ^= 0x55
    (folder / "corrupted.npz").write_bytes(bytes(corrupted))
    _edited(folder / "model.npz", folder / "newer.npz", lambda meta, arrays: meta.update(format_version=99))
    regressor = hg.mlp(4, [5], 1, seed=0)
    save_model(folder / "regressor.npz", regressor, loss=hg.SquaredError(), classes=["d"],
               preprocessing=Preprocessor.fit(X, "tabular"),
               settings={"dataset": str(folder / "good.csv"), "target": "d", "test_fraction": 0.2},
               extra={"feature_names": ["a", "b", "c", "label"], "target_scaling": {"mean": [0.0], "scale": 1.0}})
    _edited(folder / "regressor.npz", folder / "bad-scaling.npz",
            lambda meta, arrays: meta["extra"].update(target_scaling={"mean": [0.0], "scale": -1.0}))
    normed = hg.Sequential(hg.Dense(4, 5), hg.BatchNorm(5), hg.ReLU(), hg.Dense(5, 3), seed=0)
    save_model(folder / "normed.npz", normed, loss=hg.SoftmaxCrossEntropy(), classes=[0, 1, 2],
               preprocessing=Preprocessor.fit(X, "tabular"),
               settings={"dataset": str(folder / "good.csv"), "test_fraction": 0.2})
    _edited(folder / "normed.npz", folder / "negative-variance.npz",
            lambda meta, arrays: arrays.update(running_var2=np.array([1, 1, -0.5, 1, 1], dtype=np.float32)))
    payload = np.empty(1, dtype=object)
    payload[0] = _Payload(str(folder / "payload-ran"))
    _edited(folder / "model.npz", folder / "pickled.npz", lambda meta, arrays: arrays.update(b1=payload))


def _edited(source, target, edit):
    with np.load(source, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("metadata").tobytes())
    edit(meta, arrays)
    np.savez(target, metadata=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)


# name -> (arguments, where "{in}" is the inputs folder and "{out}" the case's own folder; pattern in the message)
CASES = {
    "missing file": (["train", "--dataset", "{in}/absent.csv"], r"absent\.csv"),
    "unreadable file": (["train", "--dataset", "{in}/folder.csv"], r"folder\.csv"),
    "non-numeric feature": (["train", "--dataset", "{in}/text.csv"], r"high|numeric|number"),
    "missing feature value": (["train", "--dataset", "{in}/blank.csv"], r"missing|empty|blank"),
    "inf in features": (["train", "--dataset", "{in}/inf.csv"], r"inf"),
    "nan in features": (["train", "--dataset", "{in}/nan.npz"], r"NaN|nan"),
    "target column that does not exist": (["train", "--dataset", "{in}/good.csv", "--target", "colour"], r"colour"),
    "single class": (["train", "--dataset", "{in}/single.csv"], r"single class|one class"),
    "empty dataset": (["train", "--dataset", "{in}/empty.csv"], r"empty|no rows|no samples"),
    "bad flag value": (["train", "--epochs", "many"], r"--epochs"),
    "truncated model": (["evaluate", "{in}/truncated.npz", "--dataset", "{in}/good.csv"], r"truncated"),
    "corrupted model": (["evaluate", "{in}/corrupted.npz", "--dataset", "{in}/good.csv"], r"corrupted|CRC"),
    "newer model format": (["predict", "{in}/newer.npz", "{in}/good.csv", "--out", "{out}/pred.csv"],
                           r"newer handgrad.*upgrade"),
    "pickled objects in model": (["predict", "{in}/pickled.npz", "{in}/good.csv", "--out", "{out}/pred.csv"],
                                 r"pickled"),
    "missing model": (["predict", "{in}/absent.npz", "{in}/good.csv"], r"no such file"),
    "feature count differs (predict)": (["predict", "{in}/model.npz", "{in}/narrow.npz", "--out", "{out}/pred.csv"],
                                        r"3 features but the model expects 4"),
    "a feature column missing (evaluate)": (["evaluate", "{in}/model.npz", "--dataset", "{in}/narrow.csv"],
                                            r"narrow\.csv \(test split\) lacks the feature columns 'd'"),
    "output folder is a file": (["train", "--out", "{in}/good.csv/model.npz"], r"good\.csv is a file"),
    "no hidden layer": (["train", "--hidden", ""], r"--hidden.*at least one hidden layer"),
    "dataset name with a typo": (["train", "--dataset", "mnst"], r"unknown dataset 'mnst' \(did you mean mnist\?\)"),
    "unwritable --out": (["train", "--out", "/proc/forbidden/model.npz"], r"--out /proc/forbidden/model\.npz cannot be written"),
    "unwritable --plots": (["train", "--plots", "/proc/forbidden"], r"--plots /proc/forbidden cannot be written"),
    "unwritable --log": (["train", "--log", "/proc/forbidden.jsonl"], r"--log /proc/forbidden\.jsonl cannot be written"),
    "unwritable --checkpoint": (["train", "--checkpoint", "/proc/forbidden.ckpt.npz"], r"--checkpoint /proc/forbidden"),
    "wrong kind of file (predict)": (["predict", "{in}/model.npz", "{in}/picture.png"],
                                     r"picture\.png is not a file this model reads; it reads \.csv with the columns a, b, c, d"),
    "loss becomes nan": (["train", "--lr", "1e30", "--hidden", "8", "--epochs", "2"], r"nan.*lower the learning rate"),
    # dropout and batch norm
    "dropout of 1.5": (["train", "--dropout", "1.5"], r"--dropout.*must lie in \[0, 1\), got '1\.5'"),
    "negative dropout": (["train", "--dropout", "-0.1"], r"--dropout.*must lie in \[0, 1\), got '-0\.1'"),
    "dropout that is not a number": (["train", "--dropout", "half"], r"--dropout: must be a number"),
    "input dropout of 1": (["train", "--input-dropout", "1"], r"--input-dropout.*must lie in \[0, 1\), got '1'"),
    "shift beyond 4 pixels": (["train", "--shift", "5"], r"--shift.*must lie in 0\.\.4, got '5'"),
    "negative shift": (["train", "--shift", "-1"], r"--shift.*must lie in 0\.\.4, got '-1'"),
    "shift on a table": (["train", "--dataset", "{in}/good.csv", "--shift", "2"],
                         r"--shift moves images, but .*good\.csv is a table; drop --shift"),
    "flip on a table": (["train", "--dataset", "{in}/good.csv", "--flip"],
                        r"--flip mirrors images, but .*good\.csv is a table; drop --flip"),
    "best preset for digits": (["train", "--preset", "best"],
                               r"--preset best is defined for mnist, fashion-mnist, not digits; drop --preset"),
    "unknown preset": (["train", "--preset", "fast"], r"--preset: invalid choice: 'fast'"),
    "batch norm without a hidden layer": (["train", "--batch-norm", "--hidden", ""],
                                          r"--hidden.*at least one hidden layer"),
    "dropout flag with a built model (derive)": (["derive", "--model", "{in}/model.npz", "--dropout", "0.2"],
                                                 r"--dropout describes a network to build.*drop it or --model"),
    "batch norm with a negative running variance": (["evaluate", "{in}/negative-variance.npz"],
                                                    r"'running_var2'.*negative.*re-create it"),
    # regression and multilabel targets
    "regression loss on a text target": (["train", "--dataset", "{in}/words.csv", "--target", "kind",
                                          "--loss", "squared-error"],
                                         r"'cat' is not a number; a regression loss needs numeric targets"),
    "multilabel loss on a text target": (["train", "--dataset", "{in}/words.csv", "--target", "kind",
                                          "--loss", "sigmoid-bce"],
                                         r"'cat' is not a number; a multilabel loss needs 0/1 label columns"),
    "regression target column that does not exist": (["train", "--dataset", "{in}/good.csv", "--target", "colour",
                                                      "--loss", "squared-error"], r"no column 'colour'; choose --target"),
    "one of several targets does not exist": (["train", "--dataset", "{in}/good.csv", "--target", "a,colour"],
                                              r"no column 'colour'"),
    "target named twice": (["train", "--dataset", "{in}/good.csv", "--target", "a,a"],
                           r"--target: names the column 'a' more than once"),
    "empty target name": (["train", "--dataset", "{in}/good.csv", "--target", "a,,b"],
                          r"--target: names an empty column"),
    "multilabel column with values other than 0/1": (["train", "--dataset", "{in}/good.csv", "--target", "label",
                                                      "--loss", "sigmoid-bce"],
                                                     r"'label' holds 2 .*0 \(absent\) or 1 \(present\)"),
    "softmax loss with several targets": (["train", "--dataset", "{in}/good.csv", "--target", "c,d",
                                           "--loss", "cross-entropy"],
                                          r"--loss cross-entropy reads one class label per row.*--loss sigmoid-bce"),
    "regression loss on a built-in dataset": (["train", "--loss", "squared-error"],
                                              r"regression loss, but digits has class labels"),
    "poisson loss on negative targets": (["train", "--dataset", "{in}/good.csv", "--target", "a", "--loss", "poisson"],
                                         r"'a' holds a negative value.*--loss squared-error"),
    "every column a target": (["train", "--dataset", "{in}/good.csv", "--target", "a,b,c,d,label",
                               "--loss", "squared-error"], r"leaving no features"),
    "target column of an npz": (["train", "--dataset", "{in}/nan.npz", "--target", "y", "--loss", "squared-error"],
                                r"not a \.csv file; drop --target"),
    "regressor evaluated on another number of targets": (["evaluate", "{in}/regressor.npz", "--target", "c,d"],
                                                         r"2 target columns \(c, d\) but the model predicts 1 \(d\)"),
    # columns left out of the features
    "drop a column that does not exist": (["train", "--dataset", "{in}/good.csv", "--drop", "colour"],
                                          r"no column 'colour' to drop; choose --drop from: 'a', 'b'"),
    "drop the target column": (["train", "--dataset", "{in}/good.csv", "--drop", "label"],
                               r"--drop names the target column 'label'"),
    "drop every feature": (["train", "--dataset", "{in}/good.csv", "--drop", "a,b,c,d"],
                           r"--target and --drop name every column, leaving no features"),
    "drop a column twice": (["train", "--dataset", "{in}/good.csv", "--drop", "a,a"],
                            r"--drop: names the column 'a' more than once"),
    "drop on a built-in dataset": (["train", "--drop", "a"], r"--drop names CSV columns to leave out, but digits is "
                                                             r"not a \.csv file"),
    "damaged target scaling": (["predict", "{in}/bad-scaling.npz", "{in}/good.csv", "--out", "{out}/pred.csv"],
                               r"target scaling is damaged"),
}


def _run(args):
    return subprocess.run([sys.executable, "-m", "handgrad.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    inputs = tmp_path_factory.mktemp("inputs")
    _inputs(inputs)
    commands = {}
    for name, (args, _) in CASES.items():
        out = tmp_path_factory.mktemp("case")
        (out / "precious.npz").write_bytes(PRECIOUS)
        args = [a.replace("{in}", str(inputs)).replace("{out}", str(out)) for a in args]
        if args[0] == "train":
            if "--out" not in args:
                args += ["--out", str(out / "precious.npz")]
            args += [] if "--log" in args else ["--log", str(out / "log.jsonl")]
            args += [flag for flag in FAST if not (flag == "--no-plots" and "--plots" in args)]
        commands[name] = (args, out)
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = {name: pool.submit(_run, args) for name, (args, _) in commands.items()}
        return {"inputs": inputs, **{name: (done[name].result(), commands[name][1]) for name in CASES}}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_one_line_exit_2_and_nothing_written(results, case):
    if "/proc" in " ".join(CASES[case][0]) and not Path("/proc/self").exists():
        pytest.skip("needs Linux's /proc, where nothing can be created")
    result, out = results[case]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error) == 1 and result.stderr.rstrip().endswith(error[0]), result.stderr
    assert error[0].startswith("handgrad ")
    assert re.search(CASES[case][1], error[0]), error[0]
    assert sorted(p.name for p in out.iterdir()) == ["precious.npz"]
    assert (out / "precious.npz").read_bytes() == PRECIOUS


def test_the_pickle_payload_never_ran(results):
    assert not (results["inputs"] / "payload-ran").exists()


def test_debug_shows_the_traceback(tmp_path):
    result = _run(["train", "--dataset", str(tmp_path / "absent.csv"), "--debug"])
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "absent.csv" in result.stderr.splitlines()[-1]


def test_a_learning_rate_of_a_thousand_stops_with_one_line_and_writes_nothing(tmp_path):
    result = _run(["train", "--lr", "1000", "--optimizer", "sgd", "--epochs", "3", "--hidden", "16",
                   "--out", str(tmp_path / "m.npz"), *FAST])
    assert result.returncode == 2
    message = result.stderr.splitlines()[-1]
    assert "times its starting scale" in message and "lower the learning rate" in message
    assert list(tmp_path.iterdir()) == []


def test_divergence_after_good_epochs_keeps_their_weights_in_the_checkpoint(tmp_path):
    """Resume a checkpoint whose learning rate was raised to 1e30: epoch 3 diverges, epochs 1-2 are kept."""
    common = ["--hidden", "8", "--out", str(tmp_path / "m.npz"), *FAST]
    first = _run(["train", "--epochs", "2", "--checkpoint-every", "2", *common])
    assert first.returncode == 0, first.stderr
    checkpoint = tmp_path / "m.ckpt.npz"
    good = load_checkpoint(checkpoint).model.get_weights()

    def raise_lr(meta, arrays):
        meta["settings"]["lr"] = 1e30
        meta["checkpoint"]["optimizer"]["config"]["lr"] = 1e30

    _edited(checkpoint, checkpoint, raise_lr)
    model_before = (tmp_path / "m.npz").read_bytes()
    result = _run(["train", "--resume", str(checkpoint), "--epochs", "4", "--no-plots"])
    assert result.returncode == 2
    message = result.stderr.splitlines()[-1]
    assert "nan" in message and "end of epoch 2" in message and str(checkpoint) in message
    kept = load_checkpoint(checkpoint)
    assert kept.epoch == 2 and np.array_equal(kept.model.get_weights(), good)
    assert (tmp_path / "m.npz").read_bytes() == model_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt.npz", "m.npz"]
