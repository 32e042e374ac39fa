"""Model and checkpoint files: NumPy arrays in a zip, JSON metadata, no pickle.

A file is what ``np.savez`` writes: an uncompressed zip archive of ``.npy``
members.  ``W1, b1, W2, b2, …`` hold the parameters of each layer that has
any (numbered from 1 in layer order); ``metadata`` holds UTF-8 JSON bytes as
a ``uint8`` array.  A checkpoint adds the optimizer's state arrays
(``optimizer.<group>.<name>``) and early stopping's best weights
(``early_stopping.best_weights``).  ``docs/model-format.md`` documents every
field; :mod:`handgrad.io.format` names them and :mod:`handgrad.io.reader`
reads them back without trusting the file.

Writing is atomic (:func:`handgrad.io.files.atomic_write`): a unique temporary
file in the target's folder, flushed and fsynced, then ``os.replace``-d onto
the target.  A crash leaves either the old file or the new one, never a
mixture; concurrent writers to one path leave one complete file.
"""

import json
import math
from datetime import datetime, timezone

import numpy as np

from handgrad.arrays import to_numpy
from handgrad.errors import HandgradError
from handgrad.io.files import atomic_write
from handgrad.io.format import BEST_BUFFERS, BEST_WEIGHTS, FORMAT_NAME, FORMAT_VERSION, METADATA
from handgrad.io.reader import load_checkpoint, load_model, read
from handgrad.nn.model import Sequential
from handgrad.registry import ESTIMATORS

__all__ = ["FORMAT_VERSION", "check_model_metadata", "load", "load_checkpoint", "load_model", "save", "save_checkpoint",
           "save_estimator", "save_model"]


# -- the public pair ------------------------------------------------------------

def save(obj, path, *, loss=None, classes=None, history=()):
    """Save ``obj`` to ``path`` in handgrad's model-file format, atomically; no pickle.

    ``obj`` is a :class:`~handgrad.Sequential` or a fitted handgrad
    estimator (``hg.MLPClassifier``, ``hg.MLPRegressor``).  For a model,
    ``loss`` (the loss it was trained with) is stored when given and
    ``classes`` name the output units (default ``0 … C−1``).  Every layer's
    settings, parameters and buffers are stored; :func:`load` rebuilds the
    same object from the registries.  An estimator brings its own loss,
    classes, parameters, fitted attributes, optimizer state and history.
    See docs/model-format.md.

    Parameters
    ----------
    obj : Sequential, MLPClassifier or MLPRegressor
        The model, or a fitted estimator.
    path : str or PathLike
        The file to write (an ``.npz`` zip); replaced if it exists.
    loss : Loss, optional
        For a model: the loss it was trained with.
    classes : sequence of int or str, optional
        For a model: the label of each output unit; ``0 … C−1`` by default.
    history : History or sequence of dict, default ()
        For a model: the training records to store with it.

    Raises
    ------
    HandgradError
        ``obj`` is neither a Sequential nor a handgrad estimator, the labels
        do not fit the model, or the file cannot be written.

    See Also
    --------
    load : Reads the file back.
    to_onnx : Writes the network for ONNX runtimes instead.

    Examples
    --------
    >>> import os, tempfile
    >>> model = hg.Sequential(hg.Dense(3, 4), hg.ReLU(), hg.BatchNorm(4), hg.Dense(4, 2), seed=0)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "model.npz")
    ...     hg.save(model, path, loss=hg.SoftmaxCrossEntropy(), classes=["no", "yes"])
    ...     again = hg.load(path)
    >>> again, np.array_equal(again.get_weights(), model.get_weights())
    (Sequential(Dense(3, 4), ReLU(), BatchNorm(n_features=4, momentum=0.1, eps=1e-05), Dense(4, 2)), True)
    """
    if getattr(type(obj), "registry", None) is ESTIMATORS:
        save_estimator(path, obj)
        return
    if not isinstance(obj, Sequential):
        raise HandgradError(f"hg.save saves a handgrad Sequential or a fitted handgrad estimator "
                            f"(hg.MLPClassifier, hg.MLPRegressor), got {type(obj).__name__}")
    classes = list(range(obj.n_outputs)) if classes is None else list(classes)
    save_model(path, obj, loss=loss, classes=classes, history=history)


def load(path):
    """Read the model, checkpoint or estimator saved at ``path``.

    A model or checkpoint file gives a :class:`~handgrad.Sequential`, an
    estimator file the fitted estimator.  A model comes back in inference mode (``model.train()`` switches).

    Never runs code from the file: a damaged or hostile file raises
    :class:`~handgrad.ModelFileError`.  :func:`load_model` returns a model
    file's full contents (loss, classes, preprocessing, history).

    Parameters
    ----------
    path : str or PathLike
        A file written by :func:`save`, ``handgrad train`` or a checkpoint.

    Returns
    -------
    Sequential, MLPClassifier or MLPRegressor
        What the file holds, with every layer's settings, parameters and buffers.

    Raises
    ------
    ModelFileError
        The file is missing, damaged, hostile, of an unknown version, or not handgrad's.

    See Also
    --------
    save : Writes the file.

    Examples
    --------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "model.npz")
    ...     hg.save(hg.mlp(4, [3], 2, seed=0), path)
    ...     model = hg.load(path)
    >>> model, model.layers[0].training
    (Sequential(Dense(4, 3), ReLU(), Dense(3, 2)), False)
    """
    return read(path, want="any")


# -- writing -------------------------------------------------------------------

def save_model(path, model, *, loss, classes, preprocessing=None, settings=None, history=(), extra=None):
    """Write ``model`` and what is needed to use it to ``path``, atomically.

    Parameters
    ----------
    model : Sequential
    loss : the loss the model was trained with (its ``config()`` is stored), or None.
    classes : original labels, one per output unit (ints or strings).
    preprocessing : a Preprocessor, its ``to_dict()``, or None.
    settings : JSON-ready dict of training settings.
    history : per-epoch records (dicts of numbers).
    extra : JSON-ready dict stored under ``metadata["extra"]`` (data set
        name, feature names, image shape, ...).
    """
    metadata = _metadata("model", model, loss, classes, preprocessing, settings, history, extra)
    _write(path, metadata, _parameter_arrays(model))


def save_checkpoint(path, model, *, loss, classes, optimizer_state, epoch, preprocessing=None, settings=None,
                    history=(), early_stopping=None, stopped=False, extra=None):
    """Write a checkpoint: a model file plus optimizer state, epoch and early-stopping state.

    ``optimizer_state`` is ``optimizer.state_dict()``; ``early_stopping`` is
    ``EarlyStopping.state_dict()`` or None; ``epoch`` is the next epoch to run.
    """
    metadata = _metadata("checkpoint", model, loss, classes, preprocessing, settings, history, extra)
    arrays = _parameter_arrays(model)
    optimizer = _optimizer_entry(optimizer_state, arrays)
    stopping = None
    if early_stopping is not None:
        stopping = {k: _json_number(early_stopping[k]) for k in ("best", "best_epoch", "wait")}
        stopping["has_best_weights"] = early_stopping.get("best_weights") is not None
        if stopping["has_best_weights"]:
            arrays[BEST_WEIGHTS] = np.asarray(early_stopping["best_weights"])
        best_buffers = early_stopping.get("best_buffers") or {}
        stopping["has_best_buffers"] = bool(best_buffers)
        for name, value in best_buffers.items():
            arrays[BEST_BUFFERS + name] = np.asarray(value)
    metadata["checkpoint"] = {
        "epoch": int(epoch), "stopped": bool(stopped),
        "optimizer": optimizer,
        "early_stopping": stopping,
    }
    _write(path, metadata, arrays)


def save_estimator(path, estimator):
    """Write a fitted estimator: its network as a model file's arrays, the rest as metadata.

    The estimator gives its parts through ``to_state()`` (the protocol of
    :class:`handgrad.io.format.EstimatorState`).  Beside the model file's
    fields the metadata holds ``estimator``: ``{"type": class name,
    "optimizer": ..., **state.entry}``, and the arrays include the
    optimizer's state (``optimizer.<g>.<name>``, as in a checkpoint) when it
    has one.

    Raises
    ------
    HandgradError
        The estimator is not fitted, or its entry uses a reserved key.
    """
    state = estimator.to_state()
    reserved = {"type", "optimizer"} & set(state.entry)
    if reserved:
        raise HandgradError(f"{type(estimator).__name__}.to_state() returned an entry with the reserved key(s) "
                            f"{', '.join(sorted(reserved))}; rename them")
    metadata = _metadata("estimator", state.network, state.loss, None, None, None, state.history, None)
    arrays = _parameter_arrays(state.network)
    optimizer = None if state.optimizer is None else _optimizer_entry(state.optimizer.state_dict(), arrays)
    metadata["estimator"] = {"type": type(estimator).__name__, "optimizer": optimizer, **state.entry}
    _write(path, metadata, arrays)


def _optimizer_entry(optimizer_state, arrays):
    """The metadata entry for an optimizer's ``state_dict()``; its arrays go into ``arrays``."""
    groups = []
    for i, group in enumerate(optimizer_state["state"]):
        groups.append(sorted(group))
        for name, value in group.items():
            arrays[f"optimizer.{i}.{name}"] = np.asarray(value)
    counters = {k: v for k, v in optimizer_state.items() if k not in ("config", "state")}
    return {"config": optimizer_state["config"], "state": groups,
            "counters": {k: _json_number(v) for k, v in counters.items()}}


def check_model_metadata(model, *, loss, classes, preprocessing=None, settings=None, history=(), extra=None):
    """Raise now, not after a long run, if :func:`save_model` could not store these arguments.

    Takes :func:`save_model`'s arguments but the path; builds the metadata
    and encodes it as the writer would, writing nothing.  ``handgrad train``
    calls it before training, so a value that JSON cannot hold (a NaN, an
    infinity, an object) is refused before the run rather than after it.

    Raises
    ------
    HandgradError
        What cannot be stored, in one line.
    """
    _encode(_metadata("model", model, loss, classes, preprocessing, settings, history, extra))


def _encode(metadata):
    """The metadata as UTF-8 JSON bytes (strict JSON: no NaN or infinity)."""
    try:
        return json.dumps(metadata, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise HandgradError(f"model metadata cannot be stored as JSON ({exc}); "
                            "pass plain numbers and strings") from None


def _write(path, metadata, arrays):
    members = {METADATA: np.frombuffer(_encode(metadata), dtype=np.uint8), **arrays}
    atomic_write(path, lambda f: np.savez(f, **members))


def _metadata(kind, model, loss, classes, preprocessing, settings, history, extra):
    from handgrad._version import __version__

    if classes is not None:         # an estimator keeps its classes in its own entry
        classes = [_json_class(c) for c in classes]
        if len(classes) != model.n_outputs:
            raise HandgradError(f"{len(classes)} class labels for a model with {model.n_outputs} outputs; "
                                "pass one label per output")
    if preprocessing is not None and not isinstance(preprocessing, dict):
        preprocessing = preprocessing.to_dict()
    if isinstance(preprocessing, dict):            # the reader refuses a file whose sizes disagree
        width = preprocessing.get("n_features", len(preprocessing.get("mean") or ()))
        if width != model.n_features:
            raise HandgradError(f"the preprocessing is for {width} features but the model reads {model.n_features}; "
                                "fit the preprocessing on the model's input columns")
    return {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kind": kind,
        "architecture": model.config(), "dtype": np.dtype(model.dtype).name, "loss": None if loss is None else loss.config(),
        "classes": classes, "preprocessing": preprocessing, "settings": dict(settings or {}),
        "history": [{k: _json_number(v) for k, v in record.items()} for record in history],
        "extra": dict(extra or {}), "library_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _json_class(label):
    if isinstance(label, np.generic):
        label = label.item()
    if isinstance(label, bool) or not isinstance(label, (int, str)):
        raise HandgradError(f"class label {label!r} is neither an int nor a string; relabel the classes")
    return label


def _json_number(value):
    """A plain number; a float that is not finite (a figure a run could not compute) becomes None."""
    value = value.item() if isinstance(value, np.generic) else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _parameter_arrays(model):
    """The arrays a file stores, brought to the host wherever the model computes."""
    return {name: np.ascontiguousarray(to_numpy(array)) for name, array in model.state_arrays().items()}
