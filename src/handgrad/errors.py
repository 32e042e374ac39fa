"""The one exception family for mistakes a user can make.

Every error handgrad raises on purpose derives from :class:`HandgradError`,
itself a :class:`ValueError`, so ``except ValueError`` still works for code
that knows nothing of handgrad.  Messages are one line: what is wrong, then
what to do about it.
"""


class HandgradError(ValueError):
    """Base class of every error handgrad raises for bad input or state."""


class DataError(HandgradError):
    """Input data (arrays, labels, files of samples) is unusable."""


class ModelFileError(HandgradError):
    """A model or checkpoint file is missing, damaged, or not handgrad's."""


class TrainingDiverged(HandgradError):
    """Training diverged: the loss or the weights became NaN or infinite, or
    an epoch's loss rose far above where the run started (see ``fit``).

    The model has been put back to the weights of the last good epoch;
    ``history`` holds the epochs that completed before the failure.
    """

    def __init__(self, message, history=None, epoch=None):
        super().__init__(message)
        self.history = history
        self.epoch = epoch
