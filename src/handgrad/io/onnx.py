"""ONNX export: a model's inference network, with its preprocessing and its output head, as one ONNX graph.

The graph takes raw features, as ``handgrad predict`` does, and computes what
handgrad predicts (``docs/onnx.md`` lists the nodes and outputs):

1. the preprocessing stored with a model file (:meth:`Preprocessor.export`);
2. every layer in inference mode (each class's ``export``: Dense is a Gemm,
   an activation its ONNX operator, Dropout nothing, BatchNorm a
   BatchNormalization with the running statistics);
3. the output head: the loss reads the logits (``Loss.export``: softmax,
   the identity, ``e^z`` or ``σ(z)``), a stored target scaling maps values
   back to the target's units, and the task names the outputs
   (``Task.export``: ``label`` and ``probabilities``, or ``variable``).

Each piece writes itself against :class:`GraphWriter`, a builder whose
``op``, ``constant`` and ``cast`` add nodes (and whose ``output`` names the
graph's outputs, for the tasks), so ``handgrad.nn`` never imports onnx.  Two builders implement it: one assembles an ``onnx.ModelProto``
(:func:`to_onnx`), the other writes into skl2onnx's converter container, so
that ``skl2onnx.to_onnx`` converts handgrad's estimators with the same code
(see :mod:`handgrad.estimators._onnx`).

onnx (and onnxruntime, skl2onnx to run and convert) are the optional extra
``handgrad[onnx]``: this module imports onnx only when a graph is built.
"""

import os
from dataclasses import dataclass

import numpy as np

from handgrad import tasks
from handgrad._version import __version__
from handgrad.errors import HandgradError, ModelFileError
from handgrad.nn.losses import SoftmaxCrossEntropy
from handgrad.nn.model import Sequential
from handgrad.registry import ESTIMATORS

# The default and lowest opset of the ONNX standard domain written.  Opset 20
# (ONNX 1.15) is the first with a Gelu operator; every other operator used
# here has had its present form since opset 13 or 15.  ONNX Runtime runs it
# from version 1.17 on.
OPSET = 20

INSTALL = 'pip install "handgrad[onnx]"'

# What an operator's output holds when that is not the type of its first input.
_RESULT_TYPES = {"ArgMax": np.int64, "Greater": np.bool_}


def import_onnx():
    """The onnx module, or a one-line error saying how to install the extra."""
    try:
        import onnx
    except ImportError:
        raise HandgradError(f"ONNX export needs the onnx package, which is not installed; {INSTALL}") from None
    return onnx


# -- the builder every piece writes into -------------------------------------------

class GraphWriter:
    """What a piece's ``export(graph, x)`` writes into: a graph that grows one node at a time.

    Values are named by strings.  A piece receives the name of its input,
    adds nodes with :meth:`op`, and returns the name of its output::

        def export(self, graph, x):
            return graph.op("LeakyRelu", x, alpha=self.negative_slope)

    Attributes
    ----------
    dtype : numpy.dtype
        The network's dtype (float32 or float64): what its layers compute in,
        and what :meth:`constant` stores floating-point values as.
    output_dtype : numpy.dtype
        The floating-point type of the graph's outputs: float64 for a
        float64 input, float32 otherwise (skl2onnx's convention).
    opset : int
        The opset of the standard ONNX domain the graph is written for.
    """

    def __init__(self, dtype, output_dtype, opset):
        self.dtype = np.dtype(dtype)
        self.output_dtype = np.dtype(output_dtype)
        self.opset = opset
        self.prefix = ""
        self._types = {}

    def op(self, op_type, *inputs, **attributes):
        """Add node ``op_type(*inputs, **attributes)`` of the standard domain; the name of its one output."""
        output = self._fresh(op_type)
        self._node(op_type, inputs, output, attributes)
        self._types[output] = np.dtype(_RESULT_TYPES.get(op_type) or self._types.get(inputs[0], self.dtype))
        return output

    def constant(self, value, dtype=None, name="constant"):
        """Store ``value`` in the graph; the name it is read by.

        Floating-point values are stored in ``dtype`` (default the network's
        :attr:`dtype`), integers and booleans as int64, text as strings.
        """
        array = np.asarray(value)
        if dtype is not None or array.dtype.kind == "f":
            array = array.astype(self.dtype if dtype is None else dtype)
        elif array.dtype.kind in "iub":
            array = array.astype(np.int64)
        elif array.dtype.kind in "USO":
            array = array.astype(str).astype(object)
        else:
            raise HandgradError(f"an ONNX constant holds numbers or text, not {array.dtype}")
        output = self._fresh(name)
        self._initializer(output, array)
        self._types[output] = array.dtype
        return output

    def cast(self, x, dtype):
        """``x`` converted to ``dtype`` (``x`` itself when it already has it)."""
        dtype = np.dtype(dtype)
        if self._types.get(x) == dtype:
            return x
        output = self._fresh("Cast")
        self._node("Cast", (x,), output, {"to": tensor_type(dtype)})
        self._types[output] = dtype
        return output

    def output(self, name, value, dtype=None, shape=()):
        """Make ``value`` the graph output ``name``, of ``dtype`` (default :attr:`output_dtype`).

        ``shape`` is the shape of one sample's output: ``()`` for one label per
        row, ``(K,)`` for K columns.
        """
        dtype = self.output_dtype if dtype is None else np.dtype(dtype)
        op_type, attributes = ("Identity", {}) if self._types.get(value) == dtype else ("Cast", {"to": tensor_type(dtype)})
        self._node(op_type, (value,), self._output_name(name, dtype, shape), attributes)

    # what a builder provides

    def _fresh(self, hint):
        raise NotImplementedError

    def _node(self, op_type, inputs, output, attributes):
        raise NotImplementedError

    def _initializer(self, name, array):
        raise NotImplementedError

    def _output_name(self, name, dtype, shape):
        raise NotImplementedError


def tensor_type(dtype):
    """ONNX's element type for a numpy dtype (object arrays hold text)."""
    onnx = import_onnx()
    dtype = np.dtype(dtype)
    if dtype.kind in "USO":
        return onnx.TensorProto.STRING
    return onnx.helper.np_dtype_to_tensor_dtype(dtype)


class _ModelGraph(GraphWriter):
    """A builder that collects nodes, initializers and outputs for an ``onnx.ModelProto``."""

    def __init__(self, dtype, output_dtype, opset):
        super().__init__(dtype, output_dtype, opset)
        self.onnx = import_onnx()
        self.nodes, self.initializers, self.outputs, self._used = [], [], [], set()

    def input(self, name, dtype, width):
        self._used.add(name)
        self._types[name] = np.dtype(dtype)
        self.inputs = [self.onnx.helper.make_tensor_value_info(name, tensor_type(dtype), ["N", width])]
        return name

    def _fresh(self, hint):
        base = f"{self.prefix}.{hint}" if self.prefix else hint
        name, k = base, 1
        while name in self._used:
            k += 1
            name = f"{base}_{k}"
        self._used.add(name)
        return name

    def _node(self, op_type, inputs, output, attributes):
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [output], name=output, **attributes))

    def _initializer(self, name, array):
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))

    def _output_name(self, name, dtype, shape):
        self._used.add(name)
        self.outputs.append(self.onnx.helper.make_tensor_value_info(name, tensor_type(dtype), ["N", *shape]))
        return name

    def model(self, doc):
        helper = self.onnx.helper
        graph = helper.make_graph(self.nodes, "handgrad", self.inputs, self.outputs, initializer=self.initializers)
        opsets = [helper.make_opsetid("", self.opset)]
        return helper.make_model(graph, opset_imports=opsets, producer_name="handgrad", producer_version=__version__,
                                 doc_string=doc, ir_version=helper.find_min_ir_version_for(opsets))


class Skl2onnxGraph(GraphWriter):
    """A builder that writes into skl2onnx's ``scope`` and ``container`` (a converter's arguments).

    ``outputs`` maps each output this graph writes (``label``,
    ``probabilities``, ``variable``) to the name skl2onnx gave that output
    of the converted operator.
    """

    def __init__(self, scope, container, input_name, input_dtype, dtype, output_dtype, outputs):
        opset = container.target_opset
        if opset < OPSET:
            raise HandgradError(f"handgrad writes ONNX opset {OPSET} or later, and skl2onnx was asked for opset "
                                f"{opset}; pass target_opset={OPSET} or higher (or leave it unset)")
        super().__init__(dtype, output_dtype, opset)
        self.scope, self.container, self.outputs = scope, container, outputs
        self._types[input_name] = np.dtype(input_dtype)

    def _fresh(self, hint):
        return self.scope.get_unique_variable_name(f"{self.prefix}_{hint}" if self.prefix else hint)

    def _node(self, op_type, inputs, output, attributes):
        self.container.add_node(op_type, list(inputs), [output], name=self.scope.get_unique_operator_name(op_type),
                                op_version=self.opset, **attributes)

    def _initializer(self, name, array):
        if array.dtype == object:
            self.container.add_initializer(name, tensor_type(array.dtype), list(array.shape),
                                           [s.encode("utf-8") for s in array.ravel()])
        else:
            tensor = import_onnx().numpy_helper.from_array(array, name)
            self.container.add_initializer(name, tensor.data_type, list(array.shape), tensor)

    def _output_name(self, name, dtype, shape):
        return self.outputs[name]


# -- what a graph holds --------------------------------------------------------------

@dataclass
class InferenceParts:
    """What an ONNX graph of a model computes: preprocessing (or None), the network, and the output head.

    ``head.export(graph, logits)`` writes the graph's outputs.
    """

    network: Sequential
    head: object
    preprocessor: object = None


@dataclass
class TaskHead:
    """The output head of a model trained with ``loss``: its task's outputs, read off the logits by the loss.

    ``classes`` label the outputs (integers or strings); ``target_scaling``,
    ``(mean, scale)`` with one mean per output and a scale or one per output,
    maps standardised values back to the target's units: ``mean + scale · value``.
    """

    loss: object
    classes: object
    target_scaling: tuple = None

    def export(self, graph, logits):
        graph.prefix = "head"
        values = self.loss.export(graph, logits)
        if self.target_scaling is not None:
            # As handgrad's TargetScaling.invert: in float64, from the network's values.
            mean, scale = self.target_scaling
            values = graph.op("Mul", graph.cast(values, np.float64), graph.constant(scale, np.float64, "scale"))
            values = graph.op("Add", values, graph.constant(mean, np.float64, "mean"))
        tasks.of(self.loss).export(graph, logits, values, label_array(self.classes))


def label_array(classes):
    """Class labels as ONNX can hold them: int64 for integers (booleans, integral floats), else strings."""
    array = np.asarray(classes)
    if array.dtype.kind in "iub":
        return array.astype(np.int64)
    if array.dtype.kind == "f":
        if not (np.isfinite(array).all() and (array == np.round(array)).all()):
            raise HandgradError(f"class labels {array.tolist()[:5]} are not whole numbers; an ONNX label is an "
                                "integer or a string: relabel the classes")
        return array.astype(np.int64)
    if array.dtype.kind in "US" or all(isinstance(c, str) for c in array.ravel()):
        return array.astype(str).astype(object)
    raise HandgradError(f"class labels of type {array.dtype} cannot become ONNX labels; use integers or strings")


def write(graph, x, parts):
    """Write the preprocessing, the network and the output head of ``parts`` into ``graph``, reading input ``x``."""
    if parts.preprocessor is not None:
        graph.prefix = "preprocessing"
        x = parts.preprocessor.export(graph, x)
    graph.prefix = "input"
    x = graph.cast(x, graph.dtype)
    layers = parts.network.layers
    for position, layer in enumerate(layers, 1):
        graph.prefix = f"layer{position}_{type(layer).__name__}"
        try:
            x = layer.export(graph, x)
        except HandgradError as exc:
            raise HandgradError(f"layer {position} of {len(layers)}: {exc}") from None
    parts.head.export(graph, x)


# -- from a model, a model file or an estimator -----------------------------------------

def inference_parts(obj, loss=None, classes=None):
    """The :class:`InferenceParts` of a Sequential, a model file (its path or loaded contents) or an estimator."""
    from handgrad.io.format import LoadedModel
    from handgrad.io.reader import load_model, read

    if not isinstance(obj, Sequential) and (loss is not None or classes is not None):
        raise HandgradError("loss= and classes= describe a Sequential; a model file or an estimator brings its own")
    if isinstance(obj, Sequential):
        classes = list(range(obj.n_outputs)) if classes is None else list(classes)
        if len(classes) != obj.n_outputs:
            raise HandgradError(f"{len(classes)} class labels for a model with {obj.n_outputs} outputs; "
                                "pass one label per output")
        return InferenceParts(obj, TaskHead(SoftmaxCrossEntropy() if loss is None else loss, classes))
    if isinstance(obj, (str, os.PathLike)):
        stored = read(obj, want="any")
        if not isinstance(stored, Sequential):
            return inference_parts(stored)           # an estimator file
        obj = load_model(obj)
    if isinstance(obj, LoadedModel):
        head = TaskHead(SoftmaxCrossEntropy() if obj.loss is None else obj.loss, obj.classes, target_scaling(obj))
        return InferenceParts(obj.model, head, obj.preprocessor)
    if getattr(type(obj), "registry", None) is ESTIMATORS:
        return obj._inference_parts()
    raise HandgradError(f"ONNX export takes a handgrad Sequential, a fitted handgrad estimator or a model file's "
                        f"path, got {type(obj).__name__}")


def target_scaling(loaded):
    """``(mean, scale)`` of a model file's stored target scaling (``extra["target_scaling"]``), or None.

    The scale is one number for every output or a list of one per output.
    """
    entry = loaded.metadata.get("extra", {}).get("target_scaling")
    if entry is None:
        return None
    k = loaded.model.n_outputs
    try:
        mean = np.asarray(entry["mean"], dtype=np.float64)
        scale = np.asarray(entry["scale"], dtype=np.float64)
        good = mean.shape == (k,) and scale.shape in ((), (k,)) and np.isfinite(mean).all() \
            and np.isfinite(scale).all() and (scale > 0).all()
    except (TypeError, KeyError, ValueError, OverflowError):
        good = False
    if not good:
        raise ModelFileError(f"the model file's target scaling is damaged (it needs a finite mean per output, "
                             f"{k} here, and a positive scale); train the model again")
    return mean, scale


def input_signature(X, n_features, dtype):
    """The input's element type and width from a sample ``X`` (None: ``dtype`` rows of ``n_features``)."""
    if X is None:
        return np.dtype(dtype), n_features
    if not hasattr(X, "dtype") or not hasattr(X, "shape"):
        X = np.asarray(X)
    if len(X.shape) != 2:
        raise HandgradError(f"X is a sample of the model's inputs, shape (n, {n_features}); got shape {X.shape}")
    if X.shape[1] != n_features:
        raise HandgradError(f"X has {X.shape[1]} columns but the model takes {n_features} features; "
                            "pass a sample of its inputs")
    if np.dtype(X.dtype).kind not in "iuf":
        raise HandgradError(f"X has dtype {X.dtype}; the ONNX graph reads numbers: pass a numeric sample")
    return np.dtype(X.dtype), X.shape[1]


def output_dtype(input_dtype):
    """The graph's floating-point outputs: float64 for a float64 input, float32 otherwise (as skl2onnx)."""
    return np.dtype(np.float64 if np.dtype(input_dtype) == np.float64 else np.float32)


def to_onnx(obj, X=None, *, loss=None, classes=None, target_opset=None):
    """An ``onnx.ModelProto`` computing what ``obj`` predicts, from raw features.

    Parameters
    ----------
    obj : Sequential, fitted MLPClassifier or MLPRegressor, or str or PathLike
        The network (read with ``loss``, default softmax cross-entropy, and
        labelled by ``classes``, default ``0 … C−1``), a fitted handgrad
        estimator, or the path of a model file (its preprocessing, loss,
        classes and target scaling included) or of a saved estimator.
    X : array-like or sparse matrix of shape (n, d), optional
        A sample of the inputs: it fixes the input's element type and width
        (as skl2onnx's ``to_onnx``).  Default: the model's dtype and width.
    loss, classes : for a Sequential only.
    target_opset : int, optional
        The opset of the standard ONNX domain, at least and by default 20.

    Returns
    -------
    onnx.ModelProto
        Input ``X`` (N, d).  Classification: ``label`` (N,), int64 or string,
        and ``probabilities`` (N, C); regression: ``variable`` (N, K) in the
        target's units; multilabel: ``label`` (N, K) of 0/1 int64 and
        ``probabilities`` (N, K).  See ``docs/onnx.md``.

    Raises
    ------
    HandgradError
        onnx is missing, a layer has no ONNX exporter (the message names its
        position and class), ``X`` does not fit the model, or the opset is too old.

    Examples
    --------
    >>> model = hg.mlp(4, [8], 3, seed=0)
    >>> X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    >>> onx = hg.to_onnx(model, X[:1], loss=hg.SoftmaxCrossEntropy(), classes=[10, 20, 30])
    >>> [output.name for output in onx.graph.output]
    ['label', 'probabilities']
    >>> import onnxruntime as ort                                       # doctest: +SKIP
    >>> label, proba = ort.InferenceSession(onx.SerializeToString()).run(None, {"X": X})  # doctest: +SKIP
    >>> np.array_equal(label, np.array([10, 20, 30])[model.predict(X)])                   # doctest: +SKIP
    True
    """
    onnx = import_onnx()
    parts = inference_parts(obj, loss, classes)
    network = parts.network
    input_dtype, width = input_signature(X, network.n_features, network.dtype)
    opset = OPSET if target_opset is None else target_opset
    latest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not OPSET <= opset <= latest:
        raise HandgradError(f"target_opset must be an integer from {OPSET} to {latest} (this onnx's newest), "
                            f"got {opset!r}")
    graph = _ModelGraph(network.dtype, output_dtype(input_dtype), opset)
    write(graph, graph.input("X", input_dtype, width), parts)
    features = "raw features, preprocessed in the graph" if parts.preprocessor is not None else "features"
    return graph.model(f"handgrad {network!r}: input X, {features}")
