"""What both estimators share below the estimator classes: names, errors, weights.

The names an estimator accepts for ``activation=`` and ``loss=`` come from
handgrad's registries (:mod:`handgrad.registry`), so a user-defined
activation or loss is a valid estimator parameter as soon as its class is
defined.
"""

from contextlib import contextmanager

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError, StrOptions

from handgrad.arrays import to_numpy
from handgrad.errors import DataError, HandgradError
from handgrad.nn.activations import activations
from handgrad.nn.losses import losses
from handgrad.tasks import CLASSIFICATION

# scikit-learn spells handgrad's "sigmoid" "logistic"; every other name is the
# registry's, with underscores where the command line has hyphens.
SKLEARN_SPELLINGS = {"logistic": "sigmoid"}


def estimator_activations():
    """``{estimator name: handgrad name}`` for every registered activation."""
    names = {name.replace("-", "_"): name for name in activations()}
    names.update({alias: name for alias, name in SKLEARN_SPELLINGS.items() if name in names.values()})
    return names


def estimator_losses(task=CLASSIFICATION):
    """``{estimator name: loss class}`` for every registered loss of ``task`` (a Task or its name; None: every task).

    Classification losses (softmax outputs) feed MLPClassifier's ``loss=``,
    regression losses MLPRegressor's; the classifier trains binary and
    multilabel targets with the multilabel task's logistic loss.
    """
    return {name.replace("-", "_"): cls for name, cls in losses(task).items()}


def output_activation(loss_cls):
    """scikit-learn's name (``out_activation_``) for what turns the logits into predictions under ``loss_cls``:
    the loss's own ``output_activation`` (the Poisson deviance: "exp"), else its task's."""
    return getattr(loss_cls, "output_activation", None) or loss_cls.task.output_activation


class RegistryOptions(StrOptions):
    """scikit-learn's ``StrOptions`` over names read from a registry at each check."""

    def __init__(self, names, extra=()):
        self._names, self._extra = names, set(extra)
        super().__init__(set(names()) | self._extra)

    @property
    def options(self):
        return set(self._names()) | self._extra

    @options.setter
    def options(self, value):
        pass       # the registry is the one list


class ParameterError(HandgradError, InvalidParameterError):
    """A constructor parameter is out of range or of the wrong type."""


class NotFitted(HandgradError, NotFittedError):
    """A method that needs a fitted estimator was called before ``fit``."""


class DataTypeError(DataError, TypeError):
    """Input of an unusable type (complex numbers, dicts in an array)."""


@contextmanager
def data_errors():
    """Re-raise scikit-learn's input-validation errors as :class:`DataError`, on one line."""
    try:
        yield
    except HandgradError:
        raise
    except ValueError as exc:
        raise DataError(" ".join(str(exc).split())) from None
    except TypeError as exc:
        raise DataTypeError(" ".join(str(exc).split())) from None


def check_sample_weight(sample_weight, n):
    """Non-negative finite float64 weights of shape (n,) with a positive sum, or ``None``."""
    if sample_weight is None:
        return None
    with data_errors():
        weights = np.asarray(to_numpy(sample_weight), dtype=np.float64)
    if weights.ndim == 0:
        weights = np.full(n, float(weights))
    if weights.shape != (n,):
        raise DataError(f"sample_weight.shape == {weights.shape}, expected ({n},); pass one weight per sample")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise DataError("sample_weight must be finite and non-negative")
    if weights.sum() == 0:
        raise DataError("sample_weight sums to zero; give at least one sample a positive weight")
    return weights
