"""What a model file holds: the format's name and version, its kinds, and the objects a file is read into.

``docs/model-format.md`` documents every field; :mod:`handgrad.io.modelfile`
writes files and :mod:`handgrad.io.reader` reads them.
"""

from dataclasses import dataclass

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
