"""handgrad: neural-network classifiers trained by hand-derived backpropagation.

Every backward pass is written out next to its forward pass, with the
derivation in its docstring, and checked against finite differences and an
independent autodiff engine.  See ``docs/derivations.md``.
"""

from .callbacks import Callback, EarlyStopping, EpochLogger
from .errors import DataError, HandgradError, ModelFileError, TrainingDiverged
from .gradcheck import GradcheckReport, check_function, gradcheck
from .layers import Dense, Identity, Layer, ReLU, Sigmoid, Tanh
from .losses import SoftmaxBinaryCrossEntropy, SoftmaxCrossEntropy, log_softmax, softmax
from .model import Sequential, mlp
from .objective import loss_and_gradients
from .optimizers import SGD, Adam
from .training import History, TrainingContext, evaluate, fit
from . import schedules

__version__ = "0.1.0"


def __getattr__(name):
    # The estimator imports scikit-learn (seconds); load it only when asked for,
    # so that ``import handgrad`` and the command line start fast.
    if name == "MLPClassifier":
        from .estimator import MLPClassifier

        return MLPClassifier
    raise AttributeError(f"module 'handgrad' has no attribute {name!r}")

__all__ = [
    "Adam", "Callback", "DataError", "Dense", "EarlyStopping", "EpochLogger", "GradcheckReport",
    "HandgradError", "History", "MLPClassifier", "Identity", "Layer", "ModelFileError", "ReLU", "SGD", "Sequential",
    "Sigmoid", "SoftmaxBinaryCrossEntropy", "SoftmaxCrossEntropy", "Tanh", "TrainingContext",
    "TrainingDiverged", "check_function", "evaluate", "fit", "gradcheck", "log_softmax",
    "loss_and_gradients", "mlp", "schedules", "softmax",
]
