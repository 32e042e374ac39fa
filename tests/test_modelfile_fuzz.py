"""Hostile model files: every mutation of a valid file loads cleanly or raises ModelFileError.

Four layers of mutation: raw bytes (truncation, flips, insertions: the zip
and ``.npy`` parsers), metadata (any JSON in any field, with huge finite
numbers and text holding lone surrogates and control characters: the
validation), arrays (wrong dtypes, shapes, object arrays), and the fields of
an estimator file that declare sizes (string widths, label counts, layer
widths, parameters).  Nothing else may escape, what loads gives finite
answers and text that prints as UTF-8, and no claim in a file may make the
reader allocate memory beyond a small multiple of the file's size.
"""

import io
import json
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import handgrad as hg
from handgrad.data.preprocessing import Preprocessor
from handgrad.errors import DataError, ModelFileError
from handgrad.io.modelfile import load_checkpoint, load_model, save_checkpoint, save_model
from handgrad.io.text import printable
from support import count

# Finite numbers at the edges of every range, and text a terminal or a UTF-8 stream cannot take as it is.
_EDGE_NUMBERS = [1e308, -1e308, 3e38, 1e-300, -1e-300, 5e-324, 10**12, 10**18, 2**63, 2.5, -1, 0]
_HOSTILE_TEXT = ["\ud800", "\udcff", "\x1b[2J", "\x1b]0;title\x07", "\u202eevil", "a\x00b", "\r\n", "\x9b31m"]


def _fuzz(examples):
    """Hypothesis settings for ``examples`` examples in CI, a twenty-fifth of them in a quick run."""
    return settings(max_examples=count(ci=examples, dev=max(20, examples // 25)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """Bytes of a valid model file and of a valid checkpoint (with early-stopping state)."""
    folder = tmp_path_factory.mktemp("valid")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, 5)), rng.integers(0, 3, 60)
    model, optimizer = hg.mlp(5, [4], 3, seed=0), hg.Adam(1e-2)
    stopping = hg.EarlyStopping(monitor="train_loss", patience=5)
    history = hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=optimizer, epochs=2, batch_size=20, seed=0,
                     early_stopping=stopping)
    parts = dict(loss=hg.SoftmaxCrossEntropy(), classes=["a", "b", "c"], history=history.records,
                 preprocessing=Preprocessor.fit(X, "tabular"), settings={"epochs": 2})
    save_model(folder / "model.npz", model, **parts)
    save_checkpoint(folder / "ckpt.npz", model, optimizer_state=optimizer.state_dict(), epoch=2,
                    early_stopping=stopping.state_dict(), **parts)
    return {"model": (folder / "model.npz").read_bytes(), "checkpoint": (folder / "ckpt.npz").read_bytes()}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "candidate.npz"


def _load_or_refuse(path, kind):
    """The property: a clean load of a usable model, or a one-line ModelFileError."""
    load = load_checkpoint if kind == "checkpoint" else load_model
    try:
        loaded = load(path)
    except ModelFileError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return None
    weights = loaded.model.get_weights()
    assert np.isfinite(weights).all()
    assert len(loaded.classes) == loaded.model.n_outputs
    X = np.zeros((2, loaded.model.n_features))
    if loaded.preprocessor is not None:
        try:
            X = loaded.preprocessor.transform(X, dtype=loaded.model.dtype)
        except DataError as exc:              # a stored mean beyond what the scale keeps in range: named at use
            assert "\n" not in str(exc) and "beyond" in str(exc)
            X = np.zeros((2, loaded.model.n_features))
    proba = loaded.model.predict_proba(X)
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    for label in loaded.classes:
        printable(label).encode("utf-8")        # what the command line prints and writes
    return loaded


# -- raw bytes -----------------------------------------------------------------

_edits = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
    st.tuples(st.just("overwrite"), st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.floats(0, 1, exclude_max=True), st.integers(1, 64)),
)


def _apply(data, edit):
    data = bytearray(data)
    where = int(edit[1] * len(data))
    if not data:
        return b""
    if edit[0] == "truncate":
        del data[where:]
    elif edit[0] == "flip":
        data[where] ^= edit[2]
    elif edit[0] == "overwrite":
        data[where:where + len(edit[2])] = edit[2]
    elif edit[0] == "insert":
        data[where:where] = edit[2]
    else:
        del data[where:where + edit[2]]
    return bytes(data)


@_fuzz(1500)
@given(kind=st.sampled_from(["model", "checkpoint"]), edits=st.lists(_edits, min_size=1, max_size=3))
def test_byte_mutations_load_cleanly_or_raise_model_file_error(valid, scratch, kind, edits):
    data = valid[kind]
    for edit in edits:
        data = _apply(data, edit)
    scratch.write_bytes(data)
    _load_or_refuse(scratch, kind)


# -- metadata ------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=30)
    | st.sampled_from([0, 1, -1, 10**12, "float32", "float64", "Dense", "ReLU", "Adam", "model", "checkpoint"])
    | st.sampled_from(_EDGE_NUMBERS + _HOSTILE_TEXT),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def _paths(value, prefix=()):
    """Every location in a JSON tree, as a tuple of keys and indices."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, prefix + (i,))


def _rewrite(data, change_meta=None, change_arrays=None):
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("metadata").tobytes())
    if change_meta:
        meta = change_meta(meta)
    if change_arrays:
        change_arrays(arrays)
    raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    buffer = io.BytesIO()
    np.savez(buffer, metadata=np.frombuffer(raw, dtype=np.uint8), **arrays)
    return buffer.getvalue()


@_fuzz(1000)
@given(kind=st.sampled_from(["model", "checkpoint"]), choice=st.integers(0, 10**6), value=_json_values,
       delete=st.booleans())
def test_metadata_mutations_load_cleanly_or_raise_model_file_error(valid, scratch, kind, choice, value, delete):
    def mutate(meta):
        paths = list(_paths(meta))[1:]
        path = paths[choice % len(paths)]
        parent = meta
        for key in path[:-1]:
            parent = parent[key]
        if delete and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
        return meta

    scratch.write_bytes(_rewrite(valid[kind], change_meta=mutate))
    _load_or_refuse(scratch, kind)


@pytest.mark.parametrize("raw", [
    b"", b"{", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000, b'"' + b"x" * 10**6 + b'"', b"1" * 5000,
    b'{"format": "handgrad-model", "format_version": 1e400}',
], ids=["empty", "unclosed", "not-utf8", "deeply-nested", "huge-string", "huge-integer", "infinite-version"])
def test_metadata_that_is_not_usable_json_is_refused(valid, scratch, raw):
    scratch.write_bytes(_rewrite(valid["model"], change_meta=lambda meta: raw))
    with pytest.raises(ModelFileError):
        load_model(scratch)


# -- arrays --------------------------------------------------------------------

_arrays = st.one_of(
    st.sampled_from(["float32", "float64", "float16", "int64", "uint8", "complex64", "bool", ">f4", "U3", "S2"])
    .flatmap(lambda dt: st.lists(st.integers(0, 6), max_size=3).map(lambda shape: np.zeros(shape, dtype=dt))),
    st.just(np.array([{"a": 1}], dtype=object)),
    st.just(np.zeros((), dtype=np.float32)),
    st.just(np.full((5, 4), np.inf, dtype=np.float32)),
)


@_fuzz(500)
@given(kind=st.sampled_from(["model", "checkpoint"]), index=st.integers(0, 100), replacement=_arrays)
def test_replaced_arrays_load_cleanly_or_raise_model_file_error(valid, scratch, kind, index, replacement):
    def replace(arrays):
        names = sorted(arrays)
        arrays[names[index % len(names)]] = replacement

    scratch.write_bytes(_rewrite(valid[kind], change_arrays=replace))
    _load_or_refuse(scratch, kind)


# -- estimator files: the fields that declare sizes ----------------------------

@pytest.fixture(scope="module")
def estimator_bytes(tmp_path_factory):
    """A fitted classifier with three string labels (Adam, early stopping), saved."""
    path = tmp_path_factory.mktemp("estimator") / "est.npz"
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = np.array(["cat", "dog", "emu"])[np.arange(60) % 3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator = hg.MLPClassifier(hidden_layer_sizes=(5,), max_iter=4, early_stopping=True, random_state=0)
        hg.save(estimator.fit(X, y), path)
    return path.read_bytes()


_texts = st.sampled_from(_HOSTILE_TEXT) | st.text(max_size=6)
_numbers = st.sampled_from(_EDGE_NUMBERS) | st.integers(-3, 10) | st.floats(allow_nan=False)
_PARAMS = ["hidden_layer_sizes", "activation", "solver", "alpha", "batch_size", "learning_rate_init", "max_iter",
           "momentum", "beta_1", "epsilon", "n_iter_no_change", "dropout", "batch_norm", "dtype", "loss"]
_FITTED = ["n_features_in_", "n_outputs_", "n_layers_", "n_iter_", "t_", "_mask_seed", "loss_", "best_loss_",
           "_epochs_trained", "_no_improvement_count"]
_estimator_edits = st.one_of(
    # string widths and label counts
    st.tuples(st.just(("fitted", "classes_", "dtype")),
              st.integers(0, 999_999).map(lambda n: f"<U{n}") | st.sampled_from(["int64", "bool", "object",
                                                                                  "float32", "uint8"])),
    st.tuples(st.just(("fitted", "classes_", "values")),
              st.lists(_texts | st.integers(-5, 5) | st.booleans(), max_size=8)
              | st.integers(0, 5000).map(lambda n: [f"label{i}" for i in range(n)])),
    # parameters and fitted attributes: huge finite numbers, text, lists
    st.tuples(st.sampled_from([("params", name) for name in _PARAMS]),
              _numbers | _texts | st.lists(_numbers, max_size=3)),
    st.tuples(st.sampled_from([("fitted", name) for name in _FITTED]), _numbers),
    st.tuples(st.just(("fitted", "_fitted_architecture")),
              st.tuples(st.lists(_numbers, max_size=2), _texts | st.just("relu"), _numbers, st.booleans()).map(list)),
    st.tuples(st.just(("fitted", "feature_names_in_")), st.lists(_texts, min_size=4, max_size=4)),
)


def _set(entry, where, value):
    parent = entry
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = value


@_fuzz(1000)
@given(edits=st.lists(_estimator_edits, min_size=1, max_size=3))
def test_estimator_size_mutations_load_cleanly_or_raise_with_bounded_memory(estimator_bytes, scratch, edits):
    def mutate(meta):
        for where, value in edits:
            _set(meta["estimator"], where, value)
        return meta

    data = _rewrite(estimator_bytes, change_meta=mutate)
    scratch.write_bytes(data)
    tracemalloc.start()
    try:
        try:
            estimator = hg.load(scratch)
        except ModelFileError as exc:
            assert "\n" not in str(exc) and str(scratch) in str(exc)
            estimator = None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * len(data) + 2**21
    if estimator is None:
        return
    widths = [W.shape[1] for W in estimator.coefs_[:-1]]
    assert list(np.atleast_1d(estimator.get_params()["hidden_layer_sizes"])) == widths     # params describe the net
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # feature names, if the file has any
        proba = estimator.predict_proba(np.zeros((3, estimator.n_features_in_)))
        labels = estimator.predict(np.zeros((3, estimator.n_features_in_)))
    assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert set(labels.tolist()) <= set(estimator.classes_.tolist())
    if estimator.classes_.dtype.kind == "U":     # stored and read at the real width
        assert estimator.classes_.dtype.itemsize == 4 * max(len(c) for c in estimator.classes_.tolist())
    for label in estimator.classes_.tolist():
        printable(label).encode("utf-8")


def test_absurd_shape_claims_are_refused_without_allocating_them(valid, scratch):
    """A header and an architecture both claiming 10^6 x 10^6 weights, in a file of a few kB."""
    def claim(meta):
        meta["architecture"][0]["n_out"] = 10**6
        meta["architecture"][2]["n_in"] = 10**6
        return meta

    data = _rewrite(valid["model"], change_meta=claim)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    header = members["W1.npy"]
    members["W1.npy"] = header.replace(b"(5, 4)", b"(5, 1000000)")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    scratch.write_bytes(buffer.getvalue())
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError):
            load_model(scratch)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * len(buffer.getvalue()) + 2**20
