"""A fitted estimator as a handgrad model file, and back: ``hg.save(estimator, path)``, ``hg.load(path)``.

The two halves of the estimators' ``to_state``/``from_state`` (the protocol
of :class:`handgrad.io.format.EstimatorState`).  The network goes into the
file as any model does (its layer configuration and arrays, read back by the
same validating reader), the optimizer's state as a checkpoint's (its class
name and constructor arguments, so a user's optimizer class comes back as
itself), and everything else as JSON in the metadata's ``estimator`` entry:

* ``params``: ``get_params()``, each value a JSON number, string, bool,
  null or list.  ``n_iter_no_change=inf`` is stored as ``"inf"``;
  ``class_weight`` as ``{"dict": [[label, weight], …]}`` or ``{"list": …}``;
  a ``random_state`` that is a ``RandomState`` instance as null (an instance
  cannot be written as data; the fitted weights do not depend on it any more);
  a ``dtype`` given as a NumPy type by its name.
* ``fitted``: the fitted attributes (``classes_`` as ``{"dtype", "values"}``,
  string labels at their real width, feature names, counters, loss curves,
  validation scores and losses, with ``"nan"``/``"inf"``/``"-inf"`` for
  non-finite numbers).

Reading checks every field's type and range before it is used and rebuilds
the estimator by its constructor and attribute assignments only; a value of
an unexpected type, a label binariser of an unknown kind, a network whose
shape contradicts the fitted attributes are all errors (which
:func:`handgrad.load` reports as :class:`~handgrad.ModelFileError`).  Every
size the entry declares is checked against the network read before it, and
nothing is allocated at a declared size: labels are built at the width of
the longest one, whatever width the file names; the parameters that shape
the network (``hidden_layer_sizes``, ``activation``, ``dropout``,
``batch_norm``, ``dtype``) must describe the stored network layer for layer,
and ``solver`` the stored optimizer.  Writing refuses an estimator whose
parameters were changed after ``fit`` in a way that no longer describes its
network, so every file handgrad writes also reads back.
"""

import math
import re

import numpy as np
from sklearn.preprocessing import LabelBinarizer

from handgrad.errors import HandgradError
from handgrad.estimators._base import STOCHASTIC_SOLVERS, layer_plan
from handgrad.estimators._common import estimator_activations, output_activation
from handgrad.io.format import EstimatorState
from handgrad.nn.batchnorm import BatchNorm
from handgrad.nn.dropout import Dropout
from handgrad.nn.layers import Dense
from handgrad.nn.losses import Loss
from handgrad.optim.optimizers import SGD, Adam

_FLOAT_TOKENS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
# The optimizer class each stochastic solver trains with (BaseMLP._new_optimizer), and subclasses of it.
_SOLVER_OPTIMIZERS = {"adam": Adam, "sgd": SGD}
_CLASS_DTYPE = re.compile(r"(bool|u?int(8|16|32|64)|float(32|64)|<U[0-9]{1,6}|object)")
_Y_TYPES = ("binary", "multiclass", "multilabel-indicator")
_ENCODINGS = ("labels", "binary", "indicator")
_MAX_LIST = 10_000_000


# -- writing -------------------------------------------------------------------

def estimator_state(estimator):
    """The :class:`~handgrad.io.format.EstimatorState` of a fitted estimator, for :func:`handgrad.save`."""
    if not hasattr(estimator, "coefs_"):
        raise HandgradError(f"this {type(estimator).__name__} is not fitted yet; call fit before hg.save")
    if estimator._architecture() != tuple(estimator._fitted_architecture):
        raise HandgradError(f"hidden_layer_sizes, activation, dropout or batch_norm changed since this "
                            f"{type(estimator).__name__} was fitted, so its parameters no longer describe its "
                            "network; restore them, or fit again, before hg.save")
    estimator._sync_network()
    fitted = {name: _encode(getattr(estimator, name)) for name in _fitted_names(estimator)
              if hasattr(estimator, name)}
    fitted["feature_names_in_"] = (None if not hasattr(estimator, "feature_names_in_")
                                   else [str(name) for name in estimator.feature_names_in_])
    fitted["_fitted_architecture"] = list(estimator._fitted_architecture)
    fitted["_fitted_architecture"][0] = list(fitted["_fitted_architecture"][0])
    if hasattr(estimator, "classes_"):
        classes = np.asarray(estimator.classes_)
        values = [_plain(v) for v in classes.tolist()]
        dtype = f"<U{max(map(len, values))}" if classes.dtype.kind == "U" else classes.dtype.name
        fitted["classes_"] = {"dtype": dtype, "values": values}
        fitted["y_type_"] = estimator._label_binarizer.y_type_
        fitted["_encoding"] = estimator._encoding
    optimizer = getattr(estimator, "_optimizer", None)
    if not isinstance(optimizer, _SOLVER_OPTIMIZERS.get(estimator.solver, ())):
        optimizer = None        # left by a fit with another solver: the next fit makes its own
    return EstimatorState(network=estimator._net, loss=estimator._loss, optimizer=optimizer,
                          entry={"params": _encode_params(estimator.get_params()), "fitted": fitted},
                          history=_history(estimator))


_NUMBERS = ("n_features_in_", "n_iter_", "t_", "n_layers_", "n_outputs_", "loss_", "best_loss_",
            "best_validation_score_", "_no_improvement_count", "_epochs_trained", "_mask_seed")
_LISTS = ("loss_curve_", "validation_scores_", "validation_loss_curve_")


def _fitted_names(estimator):
    return _NUMBERS + _LISTS + ("out_activation_",)


def _encode(value):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    value = _plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _encode_params(params):
    encoded = {}
    for name, value in params.items():
        if name == "class_weight" and isinstance(value, dict):
            value = {"dict": [[_plain(k), _plain(v)] for k, v in value.items()]}
        elif name == "class_weight" and isinstance(value, list):
            value = {"list": [[[_plain(k), _plain(v)] for k, v in d.items()] for d in value]}
        elif name == "random_state" and not (value is None or isinstance(value, (int, np.integer))):
            value = None
        elif name == "hidden_layer_sizes":
            value = [int(v) for v in np.atleast_1d(value)] if np.ndim(value) else int(value)
        elif name == "dtype" and isinstance(value, type):
            value = np.dtype(value).name
        else:
            value = _encode(value)
        encoded[name] = value
    return encoded


def _history(estimator):
    """Per-epoch records for readers of model files that know nothing of estimators."""
    records = []
    scores = getattr(estimator, "validation_scores_", None) or []
    val_losses = getattr(estimator, "validation_loss_curve_", None) or []
    for epoch, loss in enumerate(getattr(estimator, "loss_curve_", None) or []):
        record = {"epoch": epoch, "train_loss": _finite_or_none(loss)}
        if epoch < len(scores):
            record["val_score"] = _finite_or_none(scores[epoch])
        if epoch < len(val_losses):
            record["val_loss"] = _finite_or_none(val_losses[epoch])
        records.append(record)
    return records


def _finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


# -- reading -------------------------------------------------------------------

def restore_estimator(cls, state):
    """A fitted ``cls`` from an :class:`~handgrad.io.format.EstimatorState`: its checked network, loss and
    optimizer, and its unchecked ``entry``, which every use below checks."""
    network, loss, optimizer, metadata = state.network, state.loss, state.optimizer, state.entry
    if not isinstance(metadata, dict) or set(metadata) != {"params", "fitted"}:
        raise HandgradError("the estimator entry must hold exactly 'params' and 'fitted'")
    estimator = cls(**_decode_params(cls, metadata["params"]))
    estimator._check_parameters()
    fitted = metadata["fitted"]
    if not isinstance(fitted, dict):
        raise HandgradError("'fitted' is not a dictionary")
    if not isinstance(loss, Loss):
        raise HandgradError("the file stores no loss")
    for name in _NUMBERS:
        if name in fitted:
            setattr(estimator, name, _number(fitted[name], name))
    for name in _LISTS:
        if name in fitted:
            setattr(estimator, name, _number_list(fitted[name], name))
    for name in ("n_features_in_", "n_iter_", "t_", "n_layers_", "n_outputs_", "_epochs_trained"):
        value = getattr(estimator, name, None)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise HandgradError(f"{name} must be a non-negative integer, got {value!r}")
    _check_network(estimator, network, fitted)
    estimator._fitted_architecture = _architecture(fitted.get("_fitted_architecture"))
    _check_layers(estimator, network)
    _check_solver(estimator, optimizer)
    estimator.out_activation_ = _string(fitted.get("out_activation_"), "out_activation_")
    if estimator.out_activation_ != output_activation(type(loss)):
        raise HandgradError(f"out_activation_ {estimator.out_activation_!r} does not match the loss "
                            f"{type(loss).__name__}")
    names = fitted.get("feature_names_in_")
    if names is not None:
        if not isinstance(names, list) or len(names) != estimator.n_features_in_ \
                or not all(isinstance(n, str) for n in names):
            raise HandgradError("feature_names_in_ must be one string per feature")
        estimator.feature_names_in_ = np.asarray(names, dtype=object)
    if "classes_" in fitted or hasattr(cls, "predict_proba"):
        _restore_classes(estimator, fitted)
    estimator._net = network.eval()
    estimator._point_attributes_at_network()
    estimator._loss = loss
    if optimizer is not None:
        estimator._optimizer = optimizer
    return estimator


def _decode_params(cls, params):
    expected = set(cls().get_params())
    if not isinstance(params, dict) or set(params) != expected:
        raise HandgradError(f"params must name exactly {sorted(expected)}")
    decoded = {}
    for name, value in params.items():
        if name == "class_weight" and isinstance(value, dict):
            value = _class_weight(value)
        elif name == "hidden_layer_sizes" and isinstance(value, list):
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise HandgradError(f"hidden_layer_sizes {value!r} is not a list of integers")
            value = tuple(value)
        elif name == "n_iter_no_change" and value == "inf":
            value = math.inf
        elif isinstance(value, (dict, list)):
            raise HandgradError(f"parameter {name} has a value of type {type(value).__name__}")
        decoded[name] = value
    return decoded


def _class_weight(value):
    if set(value) == {"dict"}:
        return _weight_dict(value["dict"])
    if set(value) == {"list"} and isinstance(value["list"], list):
        return [_weight_dict(pairs) for pairs in value["list"]]
    raise HandgradError("class_weight must be stored as {'dict': pairs} or {'list': [pairs, …]}")


def _weight_dict(pairs):
    if not isinstance(pairs, list):
        raise HandgradError("class weights must be a list of [label, weight] pairs")
    weights = {}
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (int, float, str, bool))
                and not isinstance(pair[1], bool) and isinstance(pair[1], (int, float)) and math.isfinite(pair[1])):
            raise HandgradError(f"class weight {pair!r} is not a [label, finite weight] pair")
        weights[pair[0]] = pair[1]
    return weights


def _number(value, name):
    if isinstance(value, str) and value in _FLOAT_TOKENS:
        return _FLOAT_TOKENS[value]
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        if value is None and name in ("best_loss_", "best_validation_score_"):
            return None
        raise HandgradError(f"{name} must be a number, got {value!r}")
    return value


def _number_list(value, name):
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > _MAX_LIST:
        raise HandgradError(f"{name} must be a list of numbers")
    return [float(_number(v, name)) for v in value]


def _string(value, name):
    if not isinstance(value, str):
        raise HandgradError(f"{name} must be a string, got {value!r}")
    return value


def _architecture(value):
    if not (isinstance(value, list) and len(value) == 4 and isinstance(value[0], list)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value[0])
            and isinstance(value[1], str) and isinstance(value[2], (int, float)) and isinstance(value[3], bool)):
        raise HandgradError(f"_fitted_architecture {value!r} is not [widths, activation, dropout, batch_norm]")
    return (tuple(value[0]), value[1], float(value[2]), value[3])


def _check_layers(estimator, network):
    """The stored network must be, layer for layer, the one ``_fitted_architecture`` and the parameters describe."""
    architecture = estimator._fitted_architecture
    if architecture != estimator._architecture():
        raise HandgradError(f"the parameters (hidden_layer_sizes, activation, dropout, batch_norm) "
                            f"{list(estimator._architecture())} do not match _fitted_architecture {list(architecture)}")
    if architecture[1] not in estimator_activations():
        raise HandgradError(f"_fitted_architecture names the activation {architecture[1]!r}, which is not registered")
    plan = layer_plan(architecture, estimator.n_features_in_, estimator.n_outputs_)
    found = [_layer_text(type(layer), [getattr(layer, name) for name in _IDENTIFYING.get(type(layer), ())])
             for layer in network.layers]
    expected = [_layer_text(cls, arguments) for cls, arguments in plan]
    if found != expected:
        raise HandgradError(f"the stored network {found[:8]} is not the {expected[:8]} its parameters describe")
    if estimator.dtype is not None and np.dtype(estimator.dtype) != network.dtype:
        raise HandgradError(f"dtype is {estimator.dtype!r} but the stored network is {np.dtype(network.dtype).name}")


# The attributes that tell two layers of a class apart, in the order layer_plan passes them.
_IDENTIFYING = {Dense: ("n_in", "n_out"), BatchNorm: ("n_features",), Dropout: ("p",)}


def _layer_text(cls, arguments):
    """``"Dense(4, 16)"``: a layer class and its identifying arguments, for comparison and messages."""
    return f"{cls.__name__}({', '.join(map(repr, arguments))})"


def _check_solver(estimator, optimizer):
    """A stored optimizer is the one ``solver`` trains with; L-BFGS keeps none."""
    if optimizer is None:
        return
    expected = _SOLVER_OPTIMIZERS.get(estimator.solver)
    if expected is None or not isinstance(optimizer, expected):
        raise HandgradError(f"solver is {estimator.solver!r} but the file stores the state of a "
                            f"{type(optimizer).__name__} optimizer ({', '.join(STOCHASTIC_SOLVERS)} keep one, "
                            "lbfgs none)")


def _check_network(estimator, network, fitted):
    dense = [layer for layer in network.layers if isinstance(layer, Dense)]
    if len(dense) != estimator.n_layers_ - 1:
        raise HandgradError(f"n_layers_ is {estimator.n_layers_} but the network has {len(dense)} Dense layers")
    if network.n_features != estimator.n_features_in_ or network.n_outputs != estimator.n_outputs_:
        raise HandgradError(f"the network maps {network.n_features} features to {network.n_outputs} outputs, "
                            f"but n_features_in_ is {estimator.n_features_in_} and n_outputs_ "
                            f"{estimator.n_outputs_}")


def _restore_classes(estimator, fitted):
    spec = fitted.get("classes_")
    if not isinstance(spec, dict) or set(spec) != {"dtype", "values"} or not isinstance(spec["dtype"], str) \
            or not _CLASS_DTYPE.fullmatch(spec["dtype"]) or not isinstance(spec["values"], list):
        raise HandgradError("classes_ must be stored as {'dtype', 'values'} with a plain dtype")
    values = spec["values"]
    if len(values) not in (2, estimator.n_outputs_):        # before any array is made of them
        raise HandgradError(f"classes_ holds {len(values)} labels for a network of {estimator.n_outputs_} outputs")
    if not all(isinstance(v, (int, float, str, bool)) for v in values) or len(values) < 2:
        raise HandgradError("classes_ must hold at least two labels, each a number, string or bool")
    classes = _labels(values, spec["dtype"])
    if len(np.unique(classes)) != len(classes) or not np.array_equal(np.sort(classes), classes):
        raise HandgradError("classes_ must be sorted and unique")
    y_type, encoding = fitted.get("y_type_"), fitted.get("_encoding")
    if y_type not in _Y_TYPES or encoding not in _ENCODINGS:
        raise HandgradError(f"y_type_ {y_type!r} or _encoding {encoding!r} is not one handgrad writes")
    expected_outputs = 1 if encoding == "binary" else len(classes)
    if estimator.n_outputs_ != expected_outputs or (encoding == "binary") != (y_type == "binary" and
                                                                             estimator.n_outputs_ == 1):
        raise HandgradError(f"{len(classes)} classes with encoding {encoding!r} cannot have "
                            f"{estimator.n_outputs_} outputs")
    binarizer = LabelBinarizer()
    binarizer.classes_, binarizer.y_type_, binarizer.sparse_input_ = classes, y_type, False
    estimator._label_binarizer, estimator.classes_, estimator._encoding = binarizer, classes, encoding


# The Python type each kind of stored label dtype holds (bool is an int, so it is told apart).
_LABEL_TYPES = {"U": str, "O": str, "b": bool, "i": int, "u": int, "f": (int, float)}


def _labels(values, dtype):
    """``values`` as an array of the stored ``dtype``, strings at the width of the longest one.

    The width a file declares is never allocated: ``<U999999`` for two
    labels of three letters would take 8 MB here and as much again per
    predicted sample.  A declared width shorter than a label is refused,
    as writing would have cut it.
    """
    dtype = np.dtype(dtype)
    wanted = _LABEL_TYPES[dtype.kind]
    if not all(isinstance(v, wanted) and (dtype.kind == "b") == isinstance(v, bool) for v in values):
        raise HandgradError(f"classes_ of dtype {dtype} must hold {getattr(wanted, '__name__', 'number')} labels only")
    if dtype.kind == "U":
        width = max(map(len, values))
        if width > dtype.itemsize // 4:
            raise HandgradError(f"classes_ declares dtype {dtype.str} but holds a label of {width} characters")
        return np.asarray(values, dtype=f"<U{width}")
    return np.asarray(values, dtype=dtype)
