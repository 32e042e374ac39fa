"""The estimators' former home, kept so that ``from handgrad.estimator import MLPClassifier`` still works.

The code lives in :mod:`handgrad.estimators`.
"""

from handgrad.estimators import (
                                 MLPClassifier,
                                 MLPRegressor,
                                 NotFitted,
                                 ParameterError,
                                 estimator_activations,
                                 estimator_losses,
)

__all__ = ["MLPClassifier", "MLPRegressor", "NotFitted", "ParameterError", "estimator_activations",
           "estimator_losses"]
