"""handgrad's networks as scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor``.

Drop-ins for :mod:`sklearn.neural_network`'s estimators (all three solvers,
dense and sparse input, multilabel and multi-output targets), plus what
scikit-learn's do not offer: class weights, dropout, batch normalisation, a
validation loss curve and safe persistence through :func:`handgrad.save`.
See ``docs/estimator.md``.

Layout, imports running downward: :mod:`._common` (names from the
registries, errors, weights) → :mod:`._lbfgs` (the L-BFGS-B solver) →
:mod:`._base` (parameters, initialisation, the training loops, prediction)
→ :mod:`.classifier`, :mod:`.regressor`; :mod:`._persist` turns a fitted
estimator into a model file's parts and back, :mod:`._onnx` into an ONNX
graph (for ``hg.to_onnx`` and skl2onnx).
"""

from handgrad.estimators._common import NotFitted, ParameterError, estimator_activations, estimator_losses
from handgrad.estimators._onnx import register_with_skl2onnx
from handgrad.estimators.classifier import MLPClassifier
from handgrad.estimators.regressor import MLPRegressor

register_with_skl2onnx()        # skl2onnx.to_onnx converts them (see ._onnx)

__all__ = ["MLPClassifier", "MLPRegressor", "NotFitted", "ParameterError", "estimator_activations",
           "estimator_losses"]
