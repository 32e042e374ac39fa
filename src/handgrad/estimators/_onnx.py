"""The estimators as ONNX graphs: their parts for ``hg.to_onnx``, and their converters for skl2onnx.

An estimator's graph is its network, written by :func:`handgrad.io.onnx.write`,
and the head of its loss, as for a Sequential, except for a binary classifier
trained with the log-loss, which has one logistic output: its graph reads
that logit ``z`` as the two logits ``(−z, z)``, whose sigmoids are the
probabilities ``(1 − σ(z), σ(z))`` and whose larger one is the class
(``classes_[1]`` exactly when ``z > 0``, as ``predict``).

skl2onnx.  :func:`register_with_skl2onnx` registers a shape calculator and a
converter for ``MLPClassifier`` and ``MLPRegressor`` under the aliases
``HandgradMLPClassifier`` and ``HandgradMLPRegressor``, with the options of
scikit-learn's MLPClassifier (``zipmap``, ``output_class_labels``, and
``nocl``, which labels the classes ``0 … C−1``), so that
``skl2onnx.to_onnx(estimator, X[:1])`` converts one as it converts
scikit-learn's.  Importing skl2onnx takes seconds, so handgrad never imports
it for this: importing :mod:`handgrad.estimators` registers the converters at
once when skl2onnx is already imported, and otherwise leaves a finder on
``sys.meta_path`` that registers them right after skl2onnx's own import, in
whichever order a program imports the two.
"""

import importlib.abc
import sys
import warnings
from dataclasses import dataclass

from handgrad.io.onnx import InferenceParts, Skl2onnxGraph, TaskHead, label_array, output_dtype, write
from handgrad.tasks import CLASSIFICATION


def inference_parts(estimator):
    """The network and output head of a fitted estimator (no preprocessing: it takes the features it was fitted on)."""
    if getattr(estimator, "_encoding", None) == "binary":
        head = BinaryHead(estimator.classes_)
    else:
        classes = estimator.classes_ if hasattr(estimator, "classes_") else range(estimator.n_outputs_)
        head = TaskHead(estimator._loss, classes)
    return InferenceParts(estimator._network(), head)


@dataclass
class BinaryHead:
    """One logistic output for two classes: the classification outputs of the logits ``(−z, z)``."""

    classes: object

    def export(self, graph, logits):
        graph.prefix = "head"
        both = graph.op("Concat", graph.op("Neg", logits), logits, axis=1)
        CLASSIFICATION.export(graph, both, graph.op("Sigmoid", both), label_array(self.classes))


# -- skl2onnx ------------------------------------------------------------------------

CLASSIFIER_OUTPUTS = ("label", "probabilities")
REGRESSOR_OUTPUTS = ("variable",)


def register_with_skl2onnx():
    """Register the converters now if skl2onnx is imported, else as soon as it is (see the module's docstring)."""
    if "skl2onnx" in sys.modules:
        _register_quietly()
    elif not any(isinstance(finder, _AfterSkl2onnx) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterSkl2onnx())


class _AfterSkl2onnx(importlib.abc.MetaPathFinder):
    """Finds no module itself: asked for skl2onnx, it hands on the spec the other finders give, whose loader
    registers handgrad's converters once skl2onnx's own module has run, and then leaves ``sys.meta_path``."""

    def find_spec(self, name, path=None, target=None):
        if name != "skl2onnx":
            return None
        spec = self._found_by_the_others(name, path, target)
        if spec is not None and hasattr(spec.loader, "exec_module"):
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                if self in sys.meta_path:
                    sys.meta_path.remove(self)
                _register_quietly()

            spec.loader.exec_module = exec_module
        return spec

    def _found_by_the_others(self, name, path, target):
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    return spec
        return None


def _register_quietly():
    """:func:`register`, turning a failure into a warning: it must never break the import of skl2onnx."""
    try:
        register()
    except Exception as exc:
        warnings.warn(f"handgrad could not register its estimators with skl2onnx ({type(exc).__name__}: {exc}); "
                      "skl2onnx.to_onnx will not convert them, hg.to_onnx still does", stacklevel=2)


def register():
    """Register the shape calculators and converters of MLPClassifier and MLPRegressor with skl2onnx."""
    from skl2onnx import update_registered_converter

    from handgrad.estimators.classifier import MLPClassifier
    from handgrad.estimators.regressor import MLPRegressor

    update_registered_converter(MLPClassifier, "HandgradMLPClassifier", _shapes, _convert,
                                options={"zipmap": [True, False, "columns"], "output_class_labels": [False, True],
                                         "nocl": [True, False]})
    update_registered_converter(MLPRegressor, "HandgradMLPRegressor", _shapes, _convert)


def _shapes(operator):
    """The types of the converted estimator's outputs, for skl2onnx's shape inference."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, Int64TensorType, StringTensorType

    estimator = operator.raw_operator
    n = operator.inputs[0].get_first_dimension()
    floats = DoubleTensorType if isinstance(operator.inputs[0].type, DoubleTensorType) else FloatTensorType
    if not hasattr(estimator, "classes_"):
        operator.outputs[0].type = floats([n, estimator.n_outputs_])
        return
    width = len(estimator.classes_)
    if estimator._encoding == "indicator":
        operator.outputs[0].type = Int64TensorType([n, width])
    else:
        labels = _labels(estimator, operator.scope_inst)
        operator.outputs[0].type = (StringTensorType if labels.dtype == object else Int64TensorType)([n])
    operator.outputs[1].type = floats([n, width])


def _labels(estimator, options):
    """The classifier's class labels in the graph: ``classes_``, or their positions with skl2onnx's option ``nocl``."""
    if options.get_options(estimator, {"nocl": False})["nocl"]:
        return label_array(range(len(estimator.classes_)))
    return label_array(estimator.classes_)


def _convert(scope, operator, container):
    """Write the estimator's graph into skl2onnx's container, with the code ``hg.to_onnx`` uses."""
    from onnx.helper import tensor_dtype_to_np_dtype

    estimator = operator.raw_operator
    parts = estimator._inference_parts()
    if hasattr(estimator, "classes_"):
        parts.head.classes = _labels(estimator, container)
    x = operator.inputs[0]
    input_dtype = tensor_dtype_to_np_dtype(x.type.to_onnx_type().tensor_type.elem_type)
    names = CLASSIFIER_OUTPUTS if hasattr(estimator, "classes_") else REGRESSOR_OUTPUTS
    outputs = {name: variable.full_name for name, variable in zip(names, operator.outputs)}
    graph = Skl2onnxGraph(scope, container, x.full_name, input_dtype, parts.network.dtype, output_dtype(input_dtype),
                          outputs)
    write(graph, x.full_name, parts)
