"""What a model file holds: the format's name and version, its kinds, and the objects a file is read into.

``docs/model-format.md`` documents every field; :mod:`handgrad.io.modelfile`
writes files and :mod:`handgrad.io.reader` reads them.
"""

from dataclasses import dataclass, field

import numpy as np

from handgrad.nn.model import Sequential

FORMAT_NAME = "handgrad-model"
FORMAT_VERSION = 1
KINDS = ("model", "checkpoint", "estimator")
DTYPES = {"float32": np.float32, "float64": np.float64}
METADATA = "metadata"
BEST_WEIGHTS = "early_stopping.best_weights"
BEST_BUFFERS = "early_stopping.best."      # + a buffer's stored name: the best epoch's running statistics



@dataclass
class LoadedModel:
    """A model file's contents, rebuilt.

    ``preprocessor`` is a :class:`handgrad.data.preprocessing.Preprocessor` (or
    None when the file stores none); ``classes`` are the original labels,
    indexed by output unit; ``history`` is the list of per-epoch records.
    """

    model: Sequential
    loss: object
    classes: list
    preprocessor: object
    settings: dict
    history: list
    metadata: dict


@dataclass
class Checkpoint(LoadedModel):
    """A checkpoint: a model file plus what ``fit`` needs to continue.

    ``optimizer`` is rebuilt from its configuration with its state loaded;
    ``early_stopping`` is a dict for ``EarlyStopping.load_state_dict`` (None
    when the run had no early stopping); ``epoch`` is the next epoch to run
    (``initial_epoch`` of the resumed ``fit``); ``stopped`` says early
    stopping had ended the run.
    """

    optimizer: object = None
    early_stopping: dict = None
    epoch: int = 0
    stopped: bool = False


@dataclass
class EstimatorState:
    """A fitted estimator as an estimator file holds it: the protocol between an estimator class and :mod:`handgrad.io`.

    An estimator class registered in ``handgrad.registry.ESTIMATORS``
    (every subclass of ``hg.MLPClassifier`` or ``hg.MLPRegressor``, a
    user's included) is saved and loaded through two public methods:

    * ``estimator.to_state()`` returns an ``EstimatorState``; ``hg.save``
      writes its network, loss, optimizer and history as a checkpoint's, and
      ``entry`` as JSON in ``metadata["estimator"]``, beside ``"type"`` (the
      class name) and ``"optimizer"``;
    * ``cls.from_state(state)`` returns the fitted estimator.  ``hg.load``
      looks ``cls`` up by the stored type in the registry and hands it the
      parts it has read and checked as it checks a model file's; ``entry``
      comes from the file unchecked, and ``from_state`` must check every
      field it uses, raising :class:`~handgrad.HandgradError` (which
      ``hg.load`` reports as a :class:`~handgrad.ModelFileError`).

    Attributes
    ----------
    network : Sequential
        The trained network.
    loss : Loss
        The loss it was trained with.
    optimizer : Optimizer or None
        The optimizer, with its state, to continue training (None after L-BFGS).
    entry : dict
        The estimator's own fields, JSON-ready (no keys ``"type"`` or ``"optimizer"``).
    history : list of dict
        Per-epoch records, for readers that know nothing of estimators.
    """

    network: Sequential
    loss: object
    optimizer: object = None
    entry: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
