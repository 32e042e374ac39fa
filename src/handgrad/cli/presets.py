"""Training defaults per dataset, used by ``handgrad train`` for every flag left unset.

Each preset is a plain dict of the settings ``handgrad train`` accepts
(flag names with dashes turned into underscores).  A flag given on the
command line always wins.  ``early_stopping`` is a patience in epochs
(0: off); ``schedule`` is ``"constant"`` or ``"cosine"`` (half a cosine
from ``lr`` to 0 over the run, after ``warmup`` epochs of linear warm-up).

The table of presets in ``handgrad train --help`` and in docs/cli.md is
generated from :data:`PRESETS` (``python docs/presets_table.py`` prints the
Markdown one, ``--write`` puts it into docs/cli.md), and a test compares the
two, so neither can drift from what the command does.
"""

import copy
import textwrap

from handgrad.cli.console import HELP_WIDTH
from handgrad.errors import HandgradError

_COMMON = {
    "activation": "relu", "loss": "cross-entropy", "optimizer": "adam", "momentum": 0.9,
    "l2": 0.0, "seed": 0, "dtype": "float32", "early_stopping": 0, "schedule": "constant", "warmup": 0.0,
    "test_fraction": 0.2, "input_dropout": 0.0, "dropout": 0.0, "batch_norm": False, "shift": 0,
    "flip": False,
}

# Every preset holds out a tenth of its training data for validation, so the
# learning curves show how the model does on data it does not train on, next
# to the training curve.
PRESETS = {
    # 1,437 training images of 8x8: one small layer, test accuracy 0.961-0.972 over seeds 0-4.
    "digits": {**_COMMON, "hidden": [128], "lr": 3e-3, "epochs": 40, "batch_size": 64, "l2": 1e-4,
               "validation_fraction": 0.1},
    # 60,000 images of 28x28: SGD with momentum and a cosine decay over 12 epochs,
    # every training image moved by up to 1 pixel each epoch.  Test accuracy
    # 0.9870-0.9888 over seeds 0-4 in about 19 s of training on two cores
    # (results/mnist-preset.md; benchmarks/NOTES.md has the search).  Without
    # the shifts, 512-256 units reached only 0.9836-0.9856 in twice the time.
    "mnist": {**_COMMON, "hidden": [256, 128], "optimizer": "sgd", "lr": 0.15, "momentum": 0.9,
              "epochs": 12, "batch_size": 128, "l2": 5e-5, "validation_fraction": 0.1,
              "schedule": "cosine", "warmup": 0.0, "shift": 1},
    # 60,000 images of clothes, 28x28: Adam with a cosine decay over 30 epochs,
    # a BatchNorm before each hidden activation, and every training image
    # mirrored left to right with probability 1/2 each epoch (clothes are
    # left-right symmetric; shifts lowered the accuracy here).  Test accuracy
    # 0.9011-0.9044 over seeds 0-4 with 3.9 TFLOP of training arithmetic, about
    # a minute on two quiet cores (results/fashion-mnist-preset.md); seed 0
    # scored 0.9016 with the flips alone, 0.8997 with neither.
    "fashion-mnist": {**_COMMON, "hidden": [512, 256], "lr": 1e-3, "epochs": 30, "batch_size": 128,
                      "l2": 1e-5, "validation_fraction": 0.1, "schedule": "cosine", "warmup": 0.5,
                      "batch_norm": True, "flip": True},
    # The user's own CSV or NPZ table, typically small (iris: 120 training rows).
    # scikit-learn's width of 100, Adam at 3e-3 for up to 200 epochs, and an L2
    # strong enough that a few dozen rows per class are not memorised; early
    # stopping ends long runs on larger tables.  benchmarks/small_tables.py
    # measures it on iris, wine and breast cancer against scikit-learn.
    "file": {**_COMMON, "hidden": [100], "lr": 3e-3, "epochs": 200, "batch_size": 32, "l2": 3e-2,
             "validation_fraction": 0.1, "early_stopping": 20},
}

# ``--preset best``: the most accurate plain network (dense layers only) found per
# image dataset, measured by benchmarks/preset_accuracy.py (benchmarks/NOTES.md,
# "Third rung: recipes", has the search).
#
# MNIST: 784-1024-512-10, every training image shifted by up to 1 pixel each
# epoch (``handgrad.data.augment``), a light L2 and no dropout, SGD with
# momentum and a cosine decay over 15 epochs.  Test accuracy 0.9901-0.9918
# over seeds 0-4 (mean 0.9912); 99.0% first reached after 10-13 epochs, i.e.
# 3.6-4.7 TFLOP of training arithmetic (6.39 MFLOP per image per step, 57,000
# images an epoch), 5.5 TFLOP for the whole run (results/mnist-flops.md).
# The previous best, 784-1024-1024-10 with input dropout 0.1, dropout 0.3 and
# 2-pixel shifts over 36 epochs, ended at 0.9904-0.9913 and needed 12-15
# TFLOP to reach 99.0% (results/best-mnist.md, best-mnist-seeds-3-4.md).
BEST = {
    "mnist": {**_COMMON, "hidden": [1024, 512], "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
              "epochs": 15, "batch_size": 128, "l2": 5e-5, "validation_fraction": 0.05, "schedule": "cosine",
              "shift": 1},
    # Fashion-MNIST: 784-1024-1024-10, a BatchNorm before each activation,
    # dropout 0.3 after it, flips (no shifts), Adam with a cosine decay over 30
    # epochs (16.35 TFLOP).  Test accuracy 0.9070-0.9093 over seeds 0-4 (mean
    # 0.9080; results/best-fashion-mnist.md), against 0.9011-0.9044 for the
    # standard preset; 91.0% on every seed was not reached.  MNIST's
    # recipe scored 0.8677 here (results/mnist-best-recipe-on-fashion-mnist.md).
    "fashion-mnist": {**_COMMON, "hidden": [1024, 1024], "lr": 1e-3, "epochs": 30, "batch_size": 128,
                      "validation_fraction": 0.05, "schedule": "cosine", "warmup": 0.5, "batch_norm": True,
                      "dropout": 0.3, "flip": True},
}
VARIANTS = {"standard": PRESETS, "best": BEST}

# Column heading -> how a preset's cell is written.
_COLUMNS = {
    "hidden": lambda p: ",".join(map(str, p["hidden"])),
    "optimizer": lambda p: p["optimizer"] + (f", momentum {p['momentum']:g}" if p["optimizer"] == "sgd" else ""),
    "lr": lambda p: f"{p['lr']:g}",
    "epochs": lambda p: str(p["epochs"]),
    "batch": lambda p: str(p["batch_size"]),
    "l2": lambda p: f"{p['l2']:g}",
    "validation": lambda p: f"{p['validation_fraction']:g}",
    "schedule": lambda p: p["schedule"] + (f", {p['warmup']:g} warm-up" if p["warmup"] else ""),
    "regularisation": lambda p: ", ".join(
        part for part in (f"input dropout {p['input_dropout']:g}" if p["input_dropout"] else "",
                          f"dropout {p['dropout']:g}" if p["dropout"] else "",
                          "batch norm" if p["batch_norm"] else "",
                          f"shifts ≤ {p['shift']} px" if p["shift"] else "",
                          "flips" if p["flip"] else "") if part) or "–",
    "early stopping": lambda p: f"patience {p['early_stopping']}" if p["early_stopping"] else "off",
}
# Settings the table shows in a column; those the presets share are listed below it.
_IN_COLUMNS = ("hidden", "optimizer", "momentum", "lr", "epochs", "batch_size", "l2", "validation_fraction",
               "schedule", "warmup", "early_stopping", "input_dropout", "dropout", "batch_norm", "shift",
               "flip")
_NAMES = {"file": "file (CSV/NPZ)"}


def preset_for(dataset, variant=None):
    """A copy of the preset for ``dataset``: its own for a built-in name, ``"file"`` for a path.

    ``variant`` "best" picks :data:`BEST`, defined for the image datasets it names.
    """
    name = str(dataset).lower()
    if variant in (None, "standard"):
        return copy.deepcopy(PRESETS.get(name, PRESETS["file"]))
    if variant not in VARIANTS:
        raise HandgradError(f"--preset must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if name not in VARIANTS[variant]:
        raise HandgradError(f"--preset {variant} is defined for {', '.join(VARIANTS[variant])}, not {dataset}; "
                            "drop --preset to use the dataset's standard preset")
    return copy.deepcopy(VARIANTS[variant][name])


def _all_presets():
    for name, preset in PRESETS.items():
        yield _NAMES.get(name, name), preset
    for name, preset in BEST.items():
        yield f"{name} --preset best", preset


def preset_values(key):
    """``"1 for mnist, 2 for mnist --preset best, else 0"``: a setting across the presets, for ``--help``."""
    values = {name: preset[key] for name, preset in _all_presets()}
    common = max(set(map(repr, values.values())), key=lambda v: sum(repr(x) == v for x in values.values()))
    special = [f"{value:g} for {name}" if isinstance(value, float) else f"{value} for {name}"
               for name, value in values.items() if repr(value) != common]
    usual = next(value for value in values.values() if repr(value) == common)
    usual = f"{usual:g}" if isinstance(usual, float) else str(usual)
    return ", ".join(special) + (f", else {usual}" if special else usual)


def table_rows():
    """The header and one row per preset, as lists of strings."""
    rows = [["preset", *_COLUMNS]]
    for name, preset in _all_presets():
        rows.append([name, *(cell(preset) for cell in _COLUMNS.values())])
    return rows


def shared_settings():
    """``"activation relu, loss cross-entropy, ..."``: the settings every preset has alike."""
    presets = [preset for _, preset in _all_presets()]
    first = presets[0]
    shared = [key for key in first if key not in _IN_COLUMNS
              and all(preset[key] == first[key] for preset in presets)]
    return ", ".join(f"{key.replace('_', ' ')} {first[key]}" for key in shared)


def markdown_table():
    """The presets as a Markdown table, followed by the settings they share."""
    rows = table_rows()
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "|" + " --- |" * len(rows[0]))
    return "\n".join(lines) + f"\n\nEvery preset: {shared_settings()}.\n"


def text_table(width=HELP_WIDTH):
    """The presets as plain text for ``--help``, no line wider than ``width``: one block per preset (its
    settings as ``heading value`` cells, wrapped between cells), then the settings they share."""
    rows = table_rows()
    headings, presets = rows[0][1:], rows[1:]
    indent = 2 + max(len(row[0]) for row in presets) + 2
    lines = []
    for name, *cells in presets:
        line = "  " + name.ljust(indent - 2)
        for i, cell in enumerate(f"{heading} {value}" for heading, value in zip(headings, cells)):
            piece = cell + (";" if i < len(cells) - 1 else "")
            if len(line) + 1 + len(piece) > width and line.strip() != name:
                lines.append(line.rstrip())
                line = " " * indent
            line += ("" if line.endswith(" ") else " ") + piece
        lines.append(line.rstrip())
    shared = textwrap.fill(f"every preset: {shared_settings()}", width, initial_indent="  ", subsequent_indent="  ")
    return "\n".join(lines) + "\n" + shared
