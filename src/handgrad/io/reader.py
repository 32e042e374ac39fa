"""Reading model and checkpoint files without trusting them.

Reading never calls ``np.load`` or pickle.  Each member is read by hand
(:class:`handgrad.io.files.NpyMember`): the zip directory first (members must be
stored uncompressed and fit inside the file, so no claim in a header can make
the reader allocate more than the file's size), then each ``.npy`` header,
whose dtype and shape must be the ones the metadata's architecture implies,
then exactly that many bytes, which the zip's CRC-32 verifies.  Object arrays
are refused at their header, before a byte of their data is read.  Every
failure is a :class:`~handgrad.errors.ModelFileError` with a one-line message.
"""

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from handgrad.data.preprocessing import Preprocessor
from handgrad.errors import HandgradError, ModelFileError
from handgrad.io.files import ARCHIVE_ERRORS, NpyError, NpyMember
from handgrad.io.format import (
    BEST_BUFFERS,
    BEST_WEIGHTS,
    DTYPES,
    FORMAT_NAME,
    FORMAT_VERSION,
    KINDS,
    METADATA,
    Checkpoint,
    EstimatorState,
    LoadedModel,
)
from handgrad.nn.losses import loss_from_config
from handgrad.nn.model import Sequential, stored_arrays
from handgrad.optim.optimizers import optimizer_from_config
from handgrad.registry import ESTIMATORS, LAYERS, OPTIMIZERS

_MAX_MEMBERS = 10_000
_MAX_LAYERS = 1_000

def load_model(path):
    """Read a model (or checkpoint) file and return a :class:`LoadedModel`.

    Raises :class:`~handgrad.errors.ModelFileError` for a missing,
    unreadable, truncated, corrupted, foreign or newer-format file; never
    runs code from the file.
    """
    return read(path, want="model")


def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_checkpoint`; return a :class:`Checkpoint`."""
    return read(path, want="checkpoint")


def read(path, want):
    """The file at ``path`` read as ``want``: "model" (a LoadedModel, or a Checkpoint for a checkpoint file),
    "checkpoint", or "any" (what ``hg.load`` returns: the model, or the estimator an estimator file holds)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            with _open_archive(path, f) as archive:
                return _Reader(path, archive, size).read(want)
    except ModelFileError:
        raise
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path} is a folder, not a model file; pass the .npz file inside it") from None
    except PermissionError:
        raise ModelFileError(f"{path} cannot be read (permission denied); check its permissions") from None
    except HandgradError as exc:
        raise ModelFileError(f"{path} is not a valid handgrad model file ({exc}); re-create it with handgrad") from None
    except ARCHIVE_ERRORS as exc:
        raise ModelFileError(f"{path} is corrupted or truncated ({_one_line(exc)}); "
                             "re-create it or restore a good copy") from None


def _open_archive(path, f):
    try:
        return zipfile.ZipFile(f)
    except zipfile.BadZipFile:
        raise ModelFileError(f"{path} is not a handgrad model file (not an .npz archive, or a truncated one); "
                             "pass a file written by handgrad train") from None


def _one_line(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


class _Reader:
    """Validating reader of one archive; every method raises ModelFileError on bad input."""

    def __init__(self, path, archive, size):
        self.path, self.archive, self.size = path, archive, size
        infos = archive.infolist()
        if len(infos) > _MAX_MEMBERS:
            self.fail(f"holds {len(infos)} members, far more than any model")
        self.members = {}
        for info in infos:
            if not info.filename.endswith(".npy"):
                self.fail(f"holds {info.filename!r}, which is not a .npy array")
            name = info.filename[:-4]
            if name in self.members:
                self.fail(f"holds the array {name!r} twice")
            self._check_stored(info)
            self.members[name] = info
        self.unread = set(self.members)

    def fail(self, problem, remedy="re-create it with handgrad, or restore a good copy"):
        raise ModelFileError(f"{self.path}: {problem}; {remedy}")

    def _check_stored(self, info):
        """Stored members cannot expand: their claimed size is bytes that exist in the file."""
        if info.compress_type != zipfile.ZIP_STORED:
            self.fail(f"member {info.filename!r} is compressed; handgrad writes (and reads) uncompressed archives")
        if info.file_size != info.compress_size or info.header_offset + info.compress_size > self.size:
            self.fail(f"member {info.filename!r} claims more bytes than the file holds (truncated?)")

    # -- arrays --

    def array(self, name, dtype, shape):
        """The member ``name`` as a new array, which must have exactly ``dtype`` and ``shape``.

        Both are checked on the member's header, before its data is read.
        """
        info = self.members.get(name)
        if info is None:
            self.fail(f"array {name!r} is missing")
        self.unread.discard(name)
        try:
            with NpyMember(self.archive, info) as member:
                if member.dtype != np.dtype(dtype):
                    self.fail(f"array {name!r} has dtype {member.dtype}, expected {np.dtype(dtype)}")
                if shape is None:
                    if len(member.shape) != 1:
                        self.fail(f"array {name!r} has shape {member.shape}, expected a vector")
                    shape = member.shape
                if tuple(member.shape) != tuple(shape):
                    self.fail(f"array {name!r} has shape {tuple(member.shape)}, but the architecture needs "
                              f"{tuple(shape)}")
                return member.read()
        except NpyError as exc:
            if exc.pickled:
                self.fail(f"array {name!r} {exc}", "refusing to load it: only use model files from sources you trust")
            self.fail(f"array {name!r} {exc}")

    def finite(self, name, dtype, shape):
        arr = self.array(name, dtype, shape)
        if not np.isfinite(arr).all():
            self.fail(f"array {name!r} contains NaN or infinite values")
        return arr

    # -- metadata --

    def metadata(self):
        raw = self.array(METADATA, np.uint8, None)
        try:
            meta = json.loads(raw.tobytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            self.fail(f"its metadata is not valid JSON ({_one_line(exc)})")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            self.fail("not a handgrad model file (its metadata names no handgrad format)",
                      "pass a file written by handgrad train")
        version = meta.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            self.fail(f"its format version {version!r} is not a positive integer")
        if version > FORMAT_VERSION:
            self.fail(f"made by a newer handgrad (format version {version}; this handgrad reads up to "
                      f"{FORMAT_VERSION})", "upgrade handgrad to load it")
        if meta.get("kind") not in KINDS:
            self.fail(f"its kind {meta.get('kind')!r} is not one of {', '.join(KINDS)}")
        return meta

    def read(self, want):
        """``want``: "model" (a LoadedModel or Checkpoint), "checkpoint", or "any" (what ``hg.load`` returns)."""
        meta = self.metadata()
        if want == "checkpoint" and meta["kind"] != "checkpoint":
            self.fail("a finished model, not a checkpoint", "resume from the checkpoint file that training wrote")
        if meta["kind"] == "estimator":
            if want != "any":
                self.fail("a saved scikit-learn estimator, not a model file", "load it with hg.load(path)")
            return self._estimator(meta)
        dtype = DTYPES.get(meta.get("dtype"))
        if dtype is None:
            self.fail(f"its dtype {meta.get('dtype')!r} is not float32 or float64")
        architecture = self._architecture(meta.get("architecture"))
        model = self._model(architecture, dtype)
        loss = self._loss(meta.get("loss"))
        classes = self._classes(meta.get("classes"), model.n_outputs)
        preprocessor = self._preprocessor(meta.get("preprocessing"), model)
        settings, history = self._dict(meta, "settings"), self._records(meta.get("history"))
        self._dict(meta, "extra")
        parts = dict(model=model, loss=loss, classes=classes, preprocessor=preprocessor, settings=settings,
                     history=history, metadata=meta)
        if meta["kind"] == "checkpoint":
            result = Checkpoint(**parts, **self._checkpoint(meta.get("checkpoint"), model, len(history)))
        else:
            result = LoadedModel(**parts)
        if self.unread:
            self.fail(f"holds unexpected arrays: {', '.join(sorted(self.unread))}")
        return result.model if want == "any" else result

    def _estimator(self, meta):
        """The estimator an "estimator" file holds, rebuilt by its class from checked parts."""
        entry = meta.get("estimator")
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
            self.fail("marked as an estimator but has no estimator entry")
        if entry["type"] not in ESTIMATORS:
            self.fail(f"its estimator type {entry['type']!r} is not registered "
                      f"(known: {', '.join(ESTIMATORS.type_names())})",
                      f"define or import the class {entry['type']} (a subclass of a handgrad estimator) before loading")
        cls = ESTIMATORS.get(entry["type"])
        dtype = DTYPES.get(meta.get("dtype"))
        if dtype is None:
            self.fail(f"its dtype {meta.get('dtype')!r} is not float32 or float64")
        model = self._model(self._architecture(meta.get("architecture")), dtype)
        loss = self._loss(meta.get("loss"))
        history = self._records(meta.get("history"))
        optimizer = None if entry.get("optimizer") is None else self._optimizer(entry["optimizer"], model)
        if self.unread:
            self.fail(f"holds unexpected arrays: {', '.join(sorted(self.unread))}")
        fields = {k: v for k, v in entry.items() if k not in ("type", "optimizer")}
        try:
            return cls.from_state(EstimatorState(model, loss, optimizer, fields, history))
        except (HandgradError, *ARCHIVE_ERRORS) as exc:
            self.fail(f"its {entry['type']} entry is invalid ({_one_line(exc)})")

    def _architecture(self, config):
        if not isinstance(config, list) or not config or len(config) > _MAX_LAYERS:
            self.fail("its architecture is not a list of layers")
        for layer in config:
            if not isinstance(layer, dict) or not isinstance(layer.get("type"), str):
                self.fail(f"its architecture holds a layer that is not a typed dictionary: {layer!r}")
            if layer["type"] not in LAYERS:
                self.fail(f"its architecture holds a layer of type {layer['type']!r}, which is not registered",
                          f"define or import the class {layer['type']} (a subclass of hg.Layer) before loading")
        return config

    def _model(self, architecture, dtype):
        """The model, with its arrays read before anything is built wherever their shapes are known.

        Each layer's configuration is checked first against its class's
        ``constraints`` (:meth:`handgrad.registry.Registry.check`): a setting
        out of range is refused with the layer's position and the setting's
        rule.  Built-in layers then state their shapes from their
        configuration, so a file that claims a huge layer fails on its
        missing bytes, not by allocating; only a user-defined layer that
        states none is built first.
        """
        shapes = {}
        for position, layer in enumerate(architecture):
            try:
                cls, arguments = LAYERS.check(layer, dtype)    # each setting within its class's declared range
                known = cls.parameter_shapes(arguments)
            except HandgradError as exc:
                self.fail(f"its layer {position} is invalid ({_one_line(exc)})")
            if known is None:
                shapes = None
                break
            shapes.update({(position, name): shape for name, shape in known.items()})
        arrays = {}
        if shapes is not None:
            for name, position, attribute, _ in stored_arrays(architecture):
                arrays[name] = self.finite(name, dtype, shapes[(position, attribute)])
        try:
            model = Sequential.from_config(architecture, dtype)
        except HandgradError as exc:
            self.fail(f"its architecture cannot be built ({_one_line(exc)})")
        for name, target in model.state_arrays().items():
            value = arrays[name] if name in arrays else self.finite(name, dtype, target.shape)
            target[...] = value
        self._check_stored_state(model, architecture)
        return model.eval()     # a stored model is a trained one: fit continues it in training mode

    def _check_stored_state(self, model, architecture):
        """Each layer's own check of its stored state (a batch norm's running variance is never negative)."""
        for name, position, attribute, is_buffer in stored_arrays(architecture):
            problem = model.layers[position].stored_state_problem(attribute) if is_buffer else None
            if problem:
                self.fail(f"array {name!r} of layer {position} ({type(model.layers[position]).__name__}) {problem}",
                          "the file was edited or damaged: re-create it with handgrad train, "
                          "or restore a good copy")

    def _loss(self, spec):
        if spec is None:
            return None
        try:
            return loss_from_config(spec)
        except HandgradError as exc:
            self.fail(f"its loss is invalid ({_one_line(exc)})")

    def _classes(self, classes, n_outputs):
        if not isinstance(classes, list) or len(classes) != n_outputs:
            self.fail(f"its class list does not have one label per output ({n_outputs})")
        if any(isinstance(c, bool) or not isinstance(c, (int, str)) for c in classes):
            self.fail("its class labels are not all ints or strings")
        if len(set(classes)) != len(classes):
            self.fail("its class labels are not unique")
        return classes

    def _preprocessor(self, spec, model):
        """The preprocessing, its numbers checked in the model's dtype (:attr:`Preprocessor.constraints`)."""
        if spec is None:
            return None
        if not isinstance(spec, dict):
            self.fail("its preprocessing entry is not a dictionary")
        try:
            preprocessor = Preprocessor.from_dict(spec, model.dtype)
        except (HandgradError, *ARCHIVE_ERRORS) as exc:
            self.fail(f"its preprocessing entry is invalid ({_one_line(exc)})")
        if preprocessor.n_features != model.n_features:
            self.fail(f"its preprocessing is for {preprocessor.n_features} features but the model reads "
                      f"{model.n_features}")
        return preprocessor

    def _dict(self, meta, key):
        value = meta.get(key, {})
        if not isinstance(value, dict):
            self.fail(f"its {key} entry is not a dictionary")
        return value

    def _records(self, history):
        if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
            self.fail("its history is not a list of per-epoch records")
        return _epochs_from_one(history)

    def _checkpoint(self, info, model, n_records):
        if not isinstance(info, dict):
            self.fail("marked as a checkpoint but has no checkpoint entry")
        epoch = info.get("epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch != n_records:
            self.fail(f"its epoch {epoch!r} does not match its {n_records} history records")
        return {"optimizer": self._optimizer(info.get("optimizer"), model),
                "early_stopping": self._early_stopping(info.get("early_stopping"), model),
                "epoch": epoch, "stopped": info.get("stopped") is True}

    def _optimizer(self, spec, model):
        if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict):
            self.fail("its optimizer entry is missing")
        try:
            OPTIMIZERS.check(spec["config"], model.dtype)    # settings such as eps, in the model's dtype
            optimizer = optimizer_from_config(spec["config"])
        except (HandgradError, *ARCHIVE_ERRORS) as exc:
            self.fail(f"its optimizer configuration is invalid ({_one_line(exc)})")
        groups, counters = spec.get("state"), spec.get("counters")
        expected = _expected_state(optimizer)
        if groups != expected and groups != []:     # [] before the first step
            self.fail(f"its optimizer state arrays {groups!r} are not the {expected!r} that "
                      f"{spec['config'].get('type')} keeps")
        fresh = optimizer.state_dict()
        wanted = set(fresh) - {"config", "state"}
        if not isinstance(counters, dict) or set(counters) != wanted:
            self.fail(f"its optimizer counters {counters!r} are not {sorted(wanted)}")
        for key, value in counters.items():
            if isinstance(value, bool) or not isinstance(value, type(fresh[key])) or value < 0:
                self.fail(f"its optimizer counter {key} is {value!r}")
        shape = model.flat_parameters.shape
        state = [{name: self.finite(f"optimizer.{i}.{name}", model.dtype, shape) for name in names}
                 for i, names in enumerate(groups)]
        optimizer.load_state_dict({"state": state, **counters})
        return optimizer

    def _early_stopping(self, spec, model):
        if spec is None:
            return None
        if not isinstance(spec, dict):
            self.fail("its early-stopping entry is not a dictionary")
        best, best_epoch, wait = spec.get("best"), spec.get("best_epoch"), spec.get("wait")
        if best is not None and (isinstance(best, bool) or not isinstance(best, (int, float))):
            self.fail(f"its early-stopping best value {best!r} is not a number")
        for key, value in (("best_epoch", best_epoch), ("wait", wait)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                self.fail(f"its early-stopping {key} {value!r} is not a non-negative integer")
        weights = None
        if spec.get("has_best_weights") is True:
            weights = self.finite(BEST_WEIGHTS, model.dtype, model.flat_parameters.shape)
        buffers = None
        if spec.get("has_best_buffers") is True:
            buffers = {name: self.finite(BEST_BUFFERS + name, model.dtype, value.shape)
                       for name, value in model.get_buffers().items()}
        return {"best": best, "best_epoch": best_epoch, "wait": wait or 0, "best_weights": weights,
                "best_buffers": buffers}


def _expected_state(optimizer):
    """The state-array names per group that ``optimizer`` keeps for a model's one flat vector.

    Read from the optimizer's declared ``state_names`` (see
    :class:`handgrad.optim.optimizers.Optimizer`): one group holding them,
    or no group for an optimizer that keeps no state.
    """
    names = sorted(optimizer.state_names)
    return [names] if names else []


def _epochs_from_one(history):
    """Records numbered 0, 1, ... (as files written before handgrad counted epochs from 1) renumbered 1, 2, ...

    A resumed run appends records counted from 1, so an old history is
    brought to the same numbering as it is read.
    """
    if history and all(record.get("epoch") == i and not isinstance(record.get("epoch"), bool)
                       for i, record in enumerate(history)):
        return [{**record, "epoch": i + 1} for i, record in enumerate(history)]
    return history
