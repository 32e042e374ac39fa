"""Training defaults per dataset, used by ``handgrad train`` for every flag left unset.

Each preset is a plain dict of the settings ``handgrad train`` accepts
(flag names with dashes turned into underscores).  A flag given on the
command line always wins.  ``early_stopping`` is a patience in epochs
(0: off); ``schedule`` is ``"constant"`` or ``"cosine"`` (half a cosine
from ``lr`` to 0 over the run, after ``warmup`` epochs of linear warm-up).
"""

import copy

_COMMON = {
    "activation": "relu", "loss": "cross-entropy", "optimizer": "adam", "momentum": 0.9,
    "l2": 0.0, "seed": 0, "dtype": "float32", "early_stopping": 0, "schedule": "constant", "warmup": 0.0,
    "test_fraction": 0.2,
}

PRESETS = {
    # 1,437 training images of 8x8: one small layer reaches about 97% in a second or two.
    "digits": {**_COMMON, "hidden": [128], "lr": 3e-3, "epochs": 40, "batch_size": 64, "l2": 1e-4,
               "validation_fraction": 0.1},
    # 60,000 images of 28x28: SGD with momentum and a cosine decay over 12 epochs reaches
    # 98.5% test accuracy by epoch 8 and ends near 98.6% (benchmarks/NOTES.md has the search;
    # Adam at batch 128 stalled near 98.45%).
    "mnist": {**_COMMON, "hidden": [512, 256], "optimizer": "sgd", "lr": 0.15, "momentum": 0.9,
              "epochs": 12, "batch_size": 128, "l2": 5e-5, "validation_fraction": 0.0,
              "schedule": "cosine", "warmup": 0.0},
    "fashion-mnist": {**_COMMON, "hidden": [512, 256], "lr": 1e-3, "epochs": 30, "batch_size": 128,
                      "l2": 1e-5, "validation_fraction": 0.0, "schedule": "cosine", "warmup": 0.5},
    # The user's own CSV or NPZ table: a small net, a validation split, early stopping.
    "file": {**_COMMON, "hidden": [64], "lr": 1e-3, "epochs": 100, "batch_size": 32, "l2": 1e-4,
             "validation_fraction": 0.1, "early_stopping": 10},
}


def preset_for(dataset):
    """A copy of the preset for ``dataset``: its own for a built-in name, ``"file"`` for a path."""
    return copy.deepcopy(PRESETS.get(str(dataset).lower(), PRESETS["file"]))
