"""Model and checkpoint files: round trips, exact resumption, refusals, atomic writes.

atomic_write and the .npy member reader themselves are tested in test_files.py.
"""

import json
import os
import pickle
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

import handgrad as hg
from handgrad.data.preprocessing import Preprocessor
from handgrad.errors import ModelFileError
from handgrad.io.modelfile import FORMAT_VERSION, load_checkpoint, load_model, save_checkpoint, save_model


def _trained(digits, epochs=2, optimizer=None, early_stopping=False, dtype=np.float32):
    X, y = digits
    model = hg.mlp(64, [16], 10, activation="tanh", dtype=dtype, seed=3)
    optimizer = optimizer or hg.Adam(1e-2)
    history = hg.fit(model, hg.SoftmaxCrossEntropy(), X[:400], y[:400], optimizer=optimizer, epochs=epochs,
                     batch_size=50, seed=1, early_stopping=early_stopping, validation_fraction=0.2)
    return model, optimizer, history


@pytest.fixture
def model_file(tmp_path, digits):
    model, _, history = _trained(digits)
    path = tmp_path / "model.npz"
    pre = Preprocessor.fit(np.arange(192.0).reshape(3, 64), "tabular")
    save_model(path, model, loss=hg.SoftmaxBinaryCrossEntropy(reduction="sum"), classes=list("abcdefghij"),
               preprocessing=pre, settings={"lr": 0.01, "hidden": [16]}, history=history.records,
               extra={"dataset": "digits"})
    return path, model


def test_model_round_trip_restores_weights_loss_classes_and_settings(model_file, digits):
    path, model = model_file
    loaded = load_model(path)
    assert loaded.model.config() == model.config() and loaded.model.dtype == np.float32
    for saved, restored in zip(model.parameters(), loaded.model.parameters()):
        assert np.array_equal(saved, restored)
    assert np.array_equal(loaded.model.predict_proba(digits[0]), model.predict_proba(digits[0]))
    assert isinstance(loaded.loss, hg.SoftmaxBinaryCrossEntropy) and loaded.loss.reduction == "sum"
    assert loaded.classes == list("abcdefghij")
    assert loaded.settings == {"lr": 0.01, "hidden": [16]}
    assert len(loaded.history) == 2 and loaded.metadata["extra"] == {"dataset": "digits"}
    assert np.array_equal(loaded.preprocessor.transform(np.ones((1, 64))),
                          Preprocessor.fit(np.arange(192.0).reshape(3, 64), "tabular").transform(np.ones((1, 64))))


def test_model_file_is_a_plain_npz_with_json_metadata(model_file):
    path, model = model_file
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["W1", "W2", "b1", "b2", "metadata"]
        meta = json.loads(npz["metadata"].tobytes().decode("utf-8"))
        assert np.array_equal(npz["W2"], model.layers[2].W)
    assert meta["format"] == "handgrad-model" and meta["format_version"] == FORMAT_VERSION
    assert meta["kind"] == "model" and meta["dtype"] == "float32"
    assert meta["architecture"] == model.config() and meta["library_version"] == hg.__version__


def test_integer_class_labels_from_numpy_are_stored_as_ints(tmp_path):
    model = hg.mlp(3, [], 2, seed=0)
    save_model(tmp_path / "m.npz", model, loss=hg.SoftmaxCrossEntropy(), classes=np.array([4, 7]))
    assert load_model(tmp_path / "m.npz").classes == [4, 7]


def test_classes_that_are_not_ints_or_strings_are_refused_before_writing(tmp_path):
    model = hg.mlp(3, [], 2, seed=0)
    with pytest.raises(hg.HandgradError, match="neither an int nor a string"):
        save_model(tmp_path / "m.npz", model, loss=hg.SoftmaxCrossEntropy(), classes=[1.5, 2.5])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("make_optimizer", [lambda: hg.Adam(1e-2), lambda: hg.SGD(0.05, momentum=0.9, nesterov=True)])
def test_resuming_from_a_checkpoint_ends_with_the_weights_of_an_uninterrupted_run(tmp_path, digits, make_optimizer):
    X, y = digits[0][:400], digits[1][:400]

    def run(stopping, callbacks=(), model=None, optimizer=None, **resume):
        model = model or hg.mlp(64, [16], 10, activation="tanh", seed=3)
        hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=optimizer or make_optimizer(), epochs=5,
               batch_size=50, seed=1, early_stopping=stopping, validation_fraction=0.2, callbacks=callbacks,
               **resume)
        return model

    def stopping():
        return hg.EarlyStopping(monitor="val_loss", patience=50)

    full = run(stopping())
    cut = _CutAfter(2, stopping())
    run(cut.stopping, callbacks=[cut])
    save_checkpoint(tmp_path / "c.npz", cut.model, loss=hg.SoftmaxCrossEntropy(), classes=list(range(10)),
                    optimizer_state=cut.optimizer_state, epoch=2, history=cut.records,
                    early_stopping=cut.stopping_state)
    ckpt = load_checkpoint(tmp_path / "c.npz")
    assert ckpt.epoch == 2 and len(ckpt.history) == 2
    assert not np.array_equal(ckpt.model.get_weights(), full.get_weights())
    resumed_stopping = stopping()
    resumed_stopping.load_state_dict(ckpt.early_stopping)
    resumed = run(resumed_stopping, model=ckpt.model, optimizer=ckpt.optimizer, initial_epoch=ckpt.epoch,
                  history=hg.History(ckpt.history))
    assert np.array_equal(resumed.get_weights(), full.get_weights())


def test_a_resumed_batch_norm_run_ends_with_the_best_epochs_running_statistics(tmp_path, digits):
    """Early stopping keeps the best epoch's weights and buffers; a checkpoint carries both across a resume."""
    X, y = digits[0][:300], digits[1][:300]
    noise = np.random.default_rng(0).integers(0, 10, size=300)     # validation labels that overfitting hurts

    def run(stopping, callbacks=(), model=None, optimizer=None, **resume):
        model = model or hg.Sequential(hg.Dense(64, 32), hg.BatchNorm(32), hg.ReLU(), hg.Dense(32, 10), seed=0)
        hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=optimizer or hg.Adam(1e-2), epochs=8, batch_size=32,
               seed=0, early_stopping=stopping, validation_data=(X, noise), callbacks=callbacks, **resume)
        return model

    def stopping():
        return hg.EarlyStopping(monitor="val_loss", patience=50)

    full_stopping = stopping()
    full = run(full_stopping)
    assert full_stopping.best_epoch <= 3                           # the best epoch comes before the cut
    cut = _CutAfter(4, stopping())
    run(cut.stopping, callbacks=[cut])
    save_checkpoint(tmp_path / "c.npz", cut.model, loss=hg.SoftmaxCrossEntropy(), classes=list(range(10)),
                    optimizer_state=cut.optimizer_state, epoch=4, history=cut.records,
                    early_stopping=cut.stopping_state)
    ckpt = load_checkpoint(tmp_path / "c.npz")
    assert set(ckpt.early_stopping["best_buffers"]) == {"running_mean2", "running_var2"}
    resumed_stopping = stopping()
    resumed_stopping.load_state_dict(ckpt.early_stopping)
    resumed = run(resumed_stopping, model=ckpt.model, optimizer=ckpt.optimizer, initial_epoch=ckpt.epoch,
                  history=hg.History(ckpt.history))
    np.testing.assert_array_equal(resumed.get_weights(), full.get_weights())
    for name, value in full.get_buffers().items():
        np.testing.assert_array_equal(resumed.get_buffers()[name], value)


class _CutAfter(hg.Callback):
    """Keep the state at the end of epoch ``n`` (as the CLI does), then stop the run."""

    def __init__(self, n, stopping):
        self.n, self.stopping = n, stopping

    def on_epoch_end(self, ctx, record):
        if len(ctx.history) == self.n:
            self.model = ctx.model.astype(ctx.model.dtype)
            self.optimizer_state, self.records = ctx.optimizer.state_dict(), list(ctx.history.records)
            self.stopping_state = dict(self.stopping.state_dict())
            ctx.stop = True


def test_checkpoint_restores_optimizer_state_and_counters(tmp_path, digits):
    model, optimizer, history = _trained(digits)
    save_checkpoint(tmp_path / "c.npz", model, loss=hg.SoftmaxCrossEntropy(), classes=list(range(10)),
                    optimizer_state=optimizer.state_dict(), epoch=2, history=history.records, stopped=True)
    ckpt = load_checkpoint(tmp_path / "c.npz")
    assert isinstance(ckpt.optimizer, hg.Adam) and ckpt.optimizer.t == optimizer.t > 0
    for mine, theirs in zip(optimizer.state_dict()["state"], ckpt.optimizer.state_dict()["state"]):
        assert set(mine) == set(theirs) == {"m", "v"}
        for key in mine:
            assert np.array_equal(mine[key], theirs[key])
    assert ckpt.stopped and ckpt.early_stopping is None
    assert isinstance(load_model(tmp_path / "c.npz").model, hg.Sequential)


@pytest.mark.parametrize("optimizer, names", [(hg.SGD(0.1), []), (hg.SGD(0.1, momentum=0.5), [["velocity"]]),
                                               (hg.Adam(), [["m", "v"]])], ids=["sgd", "momentum", "adam"])
def test_a_checkpoint_holds_the_state_arrays_its_optimizer_declares(tmp_path, digits, optimizer, names):
    model, optimizer, history = _trained(digits, optimizer=optimizer)
    save_checkpoint(tmp_path / "c.npz", model, loss=hg.SoftmaxCrossEntropy(), classes=list(range(10)),
                    optimizer_state=optimizer.state_dict(), epoch=2, history=history.records)
    meta = json.loads(np.load(tmp_path / "c.npz")["metadata"].tobytes())
    assert meta["checkpoint"]["optimizer"]["state"] == names
    ckpt = load_checkpoint(tmp_path / "c.npz")
    assert [sorted(group) for group in ckpt.optimizer.state_dict()["state"]] == names
    _rewrite(tmp_path / "c.npz",
             change_metadata=lambda meta: meta["checkpoint"]["optimizer"].update(state=[["velocity", "x"]]))
    with pytest.raises(ModelFileError, match="optimizer state arrays .* are not the"):
        load_checkpoint(tmp_path / "c.npz")


def test_a_model_file_is_not_accepted_as_a_checkpoint(model_file):
    with pytest.raises(ModelFileError, match="not a checkpoint"):
        load_checkpoint(model_file[0])


# -- refusals ------------------------------------------------------------------

def _rewrite(path, change_metadata=None, change_arrays=None):
    """Rewrite a model file with its metadata or arrays edited (bypassing the writer's checks)."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("metadata").tobytes())
    if change_metadata:
        change_metadata(meta)
    if change_arrays:
        change_arrays(arrays)
    text = json.dumps(meta).encode()
    np.savez(path, metadata=np.frombuffer(text, dtype=np.uint8), **arrays)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(format_version=FORMAT_VERSION + 1), "newer handgrad.*upgrade"),
    (lambda m: m.update(format="something-else"), "not a handgrad model file"),
    (lambda m: m.update(dtype="float16"), "dtype"),
    (lambda m: m["architecture"][0].update(n_in=10**6), "shape"),
    (lambda m: m["architecture"][0].update(type="Conv2D"), "Conv2D.*not registered"),
    (lambda m: m.update(classes=[1, 2]), "one label per output"),
    (lambda m: m.update(loss={"type": "Hinge"}), "unknown loss"),
    (lambda m: m.update(preprocessing={"kind": "tabular", "mean": [0.0], "std": [-1.0]}), "preprocessing"),
])
def test_inconsistent_metadata_is_refused_with_a_model_file_error(model_file, edit, message):
    path, _ = model_file
    _rewrite(path, change_metadata=edit)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


@pytest.mark.parametrize("layer, setting, value, message", [
    (1, "eps", -1, r"its layer 1 is invalid \(BatchNorm eps must be a positive number, got -1; "),
    (1, "momentum", float("inf"), r"its layer 1 is invalid \(BatchNorm momentum must lie in \[0, 1\], got inf"),
    (2, "negative_slope", 1e308, r"its layer 2 is invalid \(LeakyReLU negative_slope must be at most 1e\+06, "
                                 r"got 1e\+308"),
    (3, "p", 1.0, r"its layer 3 is invalid \(Dropout p is the probability of dropping a unit and must lie in"),
    (0, "init", "xavier", r"its layer 0 is invalid \(unknown init 'xavier' for Dense"),
    (0, "n_out", 2.5, r"its layer 0 is invalid \(Dense n_out must be a positive integer, got 2\.5"),
    (4, "n_in", True, r"its layer 4 is invalid \(Dense n_in must be a positive integer, got True"),
])
def test_a_stored_setting_out_of_its_declared_range_is_refused_with_the_layer_and_the_rule(
        tmp_path, layer, setting, value, message):
    model = hg.Sequential(hg.Dense(4, 5), hg.BatchNorm(5), hg.LeakyReLU(), hg.Dropout(0.2), hg.Dense(5, 3), seed=0)
    save_model(tmp_path / "m.npz", model, loss=hg.SoftmaxCrossEntropy(), classes=[0, 1, 2])
    _rewrite(tmp_path / "m.npz", change_metadata=lambda meta: meta["architecture"][layer].update({setting: value}))
    with pytest.raises(ModelFileError, match=message) as info:
        load_model(tmp_path / "m.npz")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("edit, message", [
    ({"betas": [0.9, 1.5]}, r"optimizer configuration is invalid \(Adam betas must lie in \[0, 1\), both of them"),
    ({"eps": 0}, r"optimizer configuration is invalid \(Adam eps must be a positive number"),
    ({"lr": -1}, r"optimizer configuration is invalid \(Adam lr must be a positive number"),
    ({"type": "AdamW"}, r"optimizer configuration is invalid \(unknown optimizer type 'AdamW'"),
])
def test_a_checkpoint_whose_optimizer_settings_break_their_rules_is_refused(tmp_path, digits, edit, message):
    model, optimizer, history = _trained(digits)
    save_checkpoint(tmp_path / "c.npz", model, loss=hg.SoftmaxCrossEntropy(), classes=list(range(10)),
                    optimizer_state=optimizer.state_dict(), epoch=2, history=history.records)
    _rewrite(tmp_path / "c.npz", change_metadata=lambda meta: meta["checkpoint"]["optimizer"]["config"].update(edit))
    with pytest.raises(ModelFileError, match=message):
        load_checkpoint(tmp_path / "c.npz")


def test_a_checkpoint_written_before_adam_stored_eps_on_and_with_betas_as_a_list_still_loads(tmp_path, digits):
    model, optimizer, history = _trained(digits)
    save_checkpoint(tmp_path / "c.npz", model, loss=hg.SoftmaxCrossEntropy(), classes=list(range(10)),
                    optimizer_state=optimizer.state_dict(), epoch=2, history=history.records)
    old = {"type": "Adam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-08}       # as files from before eps_on hold it
    _rewrite(tmp_path / "c.npz", change_metadata=lambda meta: meta["checkpoint"]["optimizer"].update(config=old))
    loaded = load_checkpoint(tmp_path / "c.npz").optimizer
    assert loaded.config() == {**old, "betas": (0.9, 0.999), "eps_on": "v_hat"} and loaded.t == optimizer.t


@pytest.mark.parametrize("edit, message", [
    (lambda a: a.pop("b2"), "'b2' is missing"),
    (lambda a: a.update(extra=np.zeros(3)), "unexpected arrays: extra"),
    (lambda a: a.update(W1=a["W1"].astype(np.float64)), "dtype float64"),
    (lambda a: a.update(W1=a["W1"][:, :-1]), "shape"),
    (lambda a: a["b1"].__setitem__(0, np.nan), "NaN"),
])
def test_arrays_that_do_not_match_the_architecture_are_refused(model_file, edit, message):
    path, _ = model_file
    _rewrite(path, change_arrays=edit)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


@pytest.mark.parametrize("entry, message", [
    (-0.5, r"'running_var2' of layer 1 \(BatchNorm\) holds a negative running variance \(-0\.5\).*"
           r"re-create it with handgrad train"),
    (np.nan, r"'running_var2' contains NaN or infinite values; re-create it"),
    (np.inf, r"'running_var2' contains NaN or infinite values; re-create it"),
])
def test_a_batch_norm_whose_running_variance_is_negative_or_not_finite_is_refused(tmp_path, entry, message):
    model = hg.Sequential(hg.Dense(3, 4), hg.BatchNorm(4), hg.ReLU(), hg.Dense(4, 2), seed=0)
    path = tmp_path / "normed.npz"
    save_model(path, model, loss=hg.SoftmaxCrossEntropy(), classes=[0, 1])
    assert np.array_equal(load_model(path).model.layers[1].running_var, np.ones(4))   # a variance of 0 would do too

    def corrupt(arrays):
        arrays["running_var2"] = arrays["running_var2"].copy()
        arrays["running_var2"][2] = entry

    _rewrite(path, change_arrays=corrupt)
    with pytest.raises(ModelFileError, match=message) as error:
        load_model(path)
    assert "\n" not in str(error.value)


class _Payload:
    """Unpickling this creates the marker file: what a malicious model file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_planted_pickle_payload_is_refused_and_never_runs(model_file, tmp_path):
    path, _ = model_file
    marker = tmp_path / "payload-ran"
    payload = np.empty(1, dtype=object)
    payload[0] = _Payload(marker)
    _rewrite(path, change_arrays=lambda a: a.update(W1=payload))
    with pytest.raises(ModelFileError, match="pickled Python objects"):
        load_model(path)
    raw_pickle = tmp_path / "raw.npz"
    raw_pickle.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ModelFileError, match="not a handgrad model file"):
        load_model(raw_pickle)
    assert not marker.exists()
    pickle.loads(raw_pickle.read_bytes())   # the payload is live: loading it the unsafe way would run it
    assert marker.exists()


def test_truncated_and_corrupted_files_are_refused(model_file):
    path, _ = model_file
    data = path.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(ModelFileError):
            load_model(path)
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(ModelFileError):
        load_model(path)


def test_compressed_members_are_refused(model_file, tmp_path):
    path, _ = model_file
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    np.savez_compressed(path, **arrays)
    with pytest.raises(ModelFileError, match="compressed"):
        load_model(path)


def test_missing_files_and_folders_are_model_file_errors(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        load_model(tmp_path / "absent.npz")
    with pytest.raises(ModelFileError, match="folder"):
        load_model(tmp_path)


# -- atomic writes -------------------------------------------------------------

def test_written_files_get_ordinary_permissions(model_file):
    path, _ = model_file
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_concurrent_writers_leave_one_complete_file(tmp_path):
    target = tmp_path / "model.npz"
    models = [hg.mlp(5, [width], 3, seed=width) for width in (4, 7, 9, 12)]

    def write(model):
        for _ in range(5):
            save_model(target, model, loss=hg.SoftmaxCrossEntropy(), classes=[0, 1, 2])

    threads = [threading.Thread(target=write, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loaded = load_model(target)
    match = [m for m in models if m.config() == loaded.model.config()]
    assert len(match) == 1 and np.array_equal(match[0].get_weights(), loaded.model.get_weights())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]
    with zipfile.ZipFile(target) as archive:
        assert archive.testzip() is None


def test_a_history_counted_from_zero_is_read_back_counted_from_one(model_file):
    path, _ = model_file
    assert [r["epoch"] for r in load_model(path).history] == [1, 2]

    def from_zero(meta):
        for i, record in enumerate(meta["history"]):
            record["epoch"] = i

    _rewrite(path, change_metadata=from_zero)
    assert [r["epoch"] for r in load_model(path).history] == [1, 2]
