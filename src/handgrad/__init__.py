"""handgrad: neural-network classifiers trained by hand-derived backpropagation.

Every backward pass is written out next to its forward pass, with the
derivation in its docstring, and checked against finite differences and an
independent autodiff engine.  See ``docs/derivations.md``.
"""

from handgrad import registry
from handgrad._version import __version__  # noqa: F401 - the package's version, re-exported
from handgrad.derivations.derive import derive
from handgrad.derivations.diagnose import diagnose
from handgrad.errors import DataError, HandgradError, ModelFileError, TrainingDiverged
from handgrad.io.modelfile import load, save
from handgrad.io.onnx import to_onnx
from handgrad.nn.activations import (
    ELU,
    GELU,
    Activation,
    Identity,
    LeakyReLU,
    ReLU,
    Sigmoid,
    Softplus,
    Tanh,
    activations,
)
from handgrad.nn.batchnorm import BatchNorm
from handgrad.nn.derivation import Derivation
from handgrad.nn.dropout import Dropout
from handgrad.nn.gradcheck import GradcheckReport, check_function, gradcheck
from handgrad.nn.layers import Dense, Layer
from handgrad.nn.losses import (
    Loss,
    PoissonDeviance,
    SigmoidBinaryCrossEntropy,
    SoftmaxBinaryCrossEntropy,
    SoftmaxCrossEntropy,
    SquaredError,
    log_softmax,
    losses,
    softmax,
)
from handgrad.nn.model import Sequential, mlp
from handgrad.nn.objective import loss_and_gradients
from handgrad.optim import schedules
from handgrad.optim.optimizers import SGD, Adam, Optimizer
from handgrad.training.callbacks import Callback, EarlyStopping, EpochLogger
from handgrad.training.loop import History, TrainingContext, evaluate, fit

# The estimators import scikit-learn (seconds): the model-file reader gets their
# classes from the registry, which imports them the first time a file names one.
registry.ESTIMATORS.provide(("MLPClassifier", "MLPRegressor"), lambda: __getattr__("MLPClassifier"))


_LAZY = ("MLPClassifier", "MLPRegressor")


def __getattr__(name):
    # The estimator imports scikit-learn (seconds); load it only when asked for,
    # so that ``import handgrad`` and the command line start fast.
    if name in _LAZY:
        from handgrad import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'handgrad' has no attribute {name!r}")


def __dir__():
    # What ``hg.<Tab>`` and ``dir(hg)`` offer: the module's names and the estimators it imports on first use.
    return sorted({*globals(), *_LAZY})

__all__ = [
    "Activation", "Adam", "BatchNorm", "Callback", "DataError", "Dense", "Dropout", "ELU", "EarlyStopping",
    "EpochLogger", "GELU", "GradcheckReport", "HandgradError", "History", "Identity", "Layer", "LeakyReLU", "Loss",
    "MLPClassifier", "MLPRegressor", "ModelFileError", "Optimizer", "PoissonDeviance", "ReLU", "SGD", "Sequential",
    "Sigmoid", "SigmoidBinaryCrossEntropy", "SoftmaxBinaryCrossEntropy", "SoftmaxCrossEntropy", "Softplus",
    "SquaredError", "Tanh", "TrainingContext", "TrainingDiverged", "activations", "check_function", "evaluate",
    "fit", "gradcheck", "load", "log_softmax", "loss_and_gradients", "losses", "mlp", "registry", "save",
    "schedules", "softmax",
    "Derivation", "derive", "diagnose", "to_onnx",
]
