"""The one exception family for mistakes a user can make.

Every error handgrad raises on purpose derives from :class:`HandgradError`,
itself a :class:`ValueError`, so ``except ValueError`` still works for code
that knows nothing of handgrad.  Messages are one line: what is wrong, then
what to do about it.
"""


class HandgradError(ValueError):
    """Base class of every error handgrad raises for bad input or state.

    A :class:`ValueError`, so ``except ValueError`` catches it too.  The
    message is one line: what is wrong, then what to do about it.

    See Also
    --------
    DataError, ModelFileError, TrainingDiverged : Its kinds.

    Examples
    --------
    >>> try:
    ...     hg.Dense(0, 3)
    ... except hg.HandgradError as error:
    ...     print(error)
    Dense n_in must be a positive integer, got 0; give the number of input features (the width of the layer before)
    >>> issubclass(hg.HandgradError, ValueError)
    True
    """


class DataError(HandgradError):
    """Input data (arrays, labels, files of samples) is unusable.

    See Also
    --------
    HandgradError : Its base.

    Examples
    --------
    >>> model = hg.mlp(3, [4], 2, seed=0)
    >>> try:
    ...     model.predict(np.ones((2, 5)))
    ... except hg.DataError as error:
    ...     print(error)
    X has 5 features but the model expects 3; pass data with the same columns as in training
    """


class ModelFileError(HandgradError):
    """A model or checkpoint file is missing, damaged, or not handgrad's.

    See Also
    --------
    load : Raises it for a file it cannot read.

    Examples
    --------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "notes.npz")
    ...     with open(path, "w") as file:
    ...         _ = file.write("not a model")
    ...     try:
    ...         hg.load(path)
    ...     except hg.ModelFileError as error:
    ...         print(type(error).__name__)
    ModelFileError
    """


class TrainingDiverged(HandgradError):
    """Training diverged: the loss or the weights became non-finite, or the loss rose far above its start.

    The loss or the weights became NaN or infinite, or an epoch's loss rose
    far above where the run started (see :func:`fit`).  The model has been
    put back to the weights of the last good epoch; ``history`` holds the
    epochs that completed before the failure.

    Parameters
    ----------
    message : str
        What diverged, and where.
    history : History, optional
        The epochs that completed.
    epoch : int, optional
        The epoch that diverged, counted from 0.

    See Also
    --------
    fit : Raises it.

    Examples
    --------
    >>> X, y = np.random.default_rng(0).normal(size=(40, 3)), np.arange(40) % 2
    >>> try:
    ...     hg.fit(hg.mlp(3, [8], 2, seed=0), hg.SoftmaxCrossEntropy(), X, y, optimizer=hg.SGD(lr=1e3), seed=0)
    ... except hg.TrainingDiverged as error:
    ...     print(error)
    ...     print(len(error.history), error.epoch)
    training loss rose to ... in epoch 2, over 100 times its starting scale ...; weights restored to the end of epoch 1; lower the learning rate (now 1000)
    1 1
    """

    def __init__(self, message, history=None, epoch=None):
        super().__init__(message)
        self.history = history
        self.epoch = epoch
