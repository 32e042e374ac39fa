"""Training settings: parsed from flags, filled from a preset, checked, turned into objects.

One checker per setting serves three callers: argparse (a bad flag), the
preset merge, and ``--resume`` (settings read back from a checkpoint, which
may have been edited by hand).  Each raises a one-line
:class:`~handgrad.errors.HandgradError`.
"""

import argparse
import inspect
from pathlib import Path

import handgrad as hg
from handgrad.cli.presets import preset_for
from handgrad.errors import HandgradError

BUILT_IN = ("digits", "mnist", "fashion-mnist")
DTYPES = ("float32", "float64")
SCHEDULES = ("constant", "cosine")


def positive_int(text):
    value = _number(text, int)
    if value < 1:
        raise HandgradError(f"must be a positive integer, got {text!r}")
    return value


def non_negative_int(text):
    value = _number(text, int)
    if value < 0:
        raise HandgradError(f"must be a non-negative integer, got {text!r}")
    return value


def positive_float(text):
    value = _number(text, float)
    if not 0 < value < float("inf"):
        raise HandgradError(f"must be a positive number, got {text!r}")
    return value


def non_negative_float(text):
    value = _number(text, float)
    if not 0 <= value < float("inf"):
        raise HandgradError(f"must be a non-negative number, got {text!r}")
    return value


def fraction(text):
    value = _number(text, float)
    if not 0 <= value < 1:
        raise HandgradError(f"must lie in [0, 1), got {text!r}")
    return value


def hidden_sizes(text):
    """``"256,128"`` -> ``[256, 128]``; ``"none"`` -> ``[]``, no hidden layer.

    No hidden layer (softmax or linear regression, the seeds' first
    networks) is asked for by name: an empty or mistyped ``--hidden`` is
    refused rather than read as that.
    """
    if str(text).strip().lower() == "none":
        return []
    if isinstance(text, list):                  # settings already read: [] is "none"
        return [positive_int(size) for size in text]
    elif not str(text).strip():
        sizes = []
    else:
        parts = [p.strip() for p in str(text).split(",")]
        try:
            sizes = [positive_int(p) for p in parts]
        except HandgradError:
            raise HandgradError(f"must be comma-separated positive layer widths such as 256,128, "
                                f"got {text!r}") from None
    if not sizes:
        raise HandgradError(f"must name at least one hidden layer width such as 128 (or none: no hidden "
                            f"layer), got {text!r}")
    return sizes


def _number(text, kind):
    if isinstance(text, bool):
        raise HandgradError(f"must be a number, got {text!r}")
    if kind is int and isinstance(text, float):
        raise HandgradError(f"must be an integer, got {text!r}")
    try:
        return kind(text)
    except (TypeError, ValueError, OverflowError):
        raise HandgradError(f"must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def choice(options):
    """A checker for one of ``options``: a tuple, or a function returning one (read at each check,
    so that pieces registered after import are offered too)."""
    def check(text):
        names = options() if callable(options) else options
        if text not in names:
            raise HandgradError(f"must be one of {', '.join(names)}, got {text!r}")
        return text
    return check


# The choices of --activation, --loss and --optimizer: the registries' names.
def activation_names():
    return tuple(hg.activations())


def loss_names():
    return tuple(hg.losses())


def optimizer_names():
    return tuple(hg.registry.OPTIMIZERS.choices())


def optional_text(text):
    if text is not None and not isinstance(text, str):
        raise HandgradError(f"must be text, got {text!r}")
    return text


def optional_threads(text):
    return None if text is None else positive_int(text)


def dropout(text):
    """The probability of dropping a hidden unit, in [0, 1); 0 puts no Dropout layer in."""
    return _drop_probability(text, "a hidden unit", 0.2)


def input_dropout(text):
    """The probability of dropping an input feature, in [0, 1); 0 puts no Dropout before the first layer."""
    return _drop_probability(text, "an input feature", 0.1)


def _drop_probability(text, what, example):
    value = _number(text, float)
    if not 0 <= value < 1:
        raise HandgradError(f"is the probability of dropping {what} and must lie in [0, 1), got {text!r}; "
                            f"use e.g. {example}, or 0 for none")
    return value


def shift(text):
    """Random image shifts in training: at most this many pixels each way (0: none)."""
    value = _number(text, int)
    if value < 0 or value > 4:
        raise HandgradError(f"is the largest shift in pixels and must lie in 0..4, got {text!r}; use e.g. 2, or 0 for none")
    return value


def flag(value):
    """An on/off setting: True or False (``--batch-norm`` given or not)."""
    if not isinstance(value, bool):
        raise HandgradError(f"must be true or false, got {value!r}")
    return value


def target(text):
    """One CSV column, or several separated by commas (``"a,b,c"``): each named once, none empty."""
    from handgrad.data.loaders import target_columns

    text = optional_text(text)
    return None if text is None else ",".join(target_columns(text, subject=""))


def columns(text):
    """CSV columns to leave out of the features (``"id,date"``): each named once, none empty; None for none."""
    from handgrad.data.loaders import target_columns

    text = optional_text(text)
    return None if text is None else ",".join(target_columns(text, subject=""))


def target_names(settings):
    """The target columns a run names (a list), or None for the dataset's default (its last column)."""
    from handgrad.data.loaders import target_columns

    return target_columns(settings.get("target"))


def task(settings):
    """The :class:`~handgrad.tasks.Task` of the run's loss."""
    return hg.losses()[settings["loss"]].task


# setting -> checker; the order is the order of ``handgrad train --help``'s groups.
CHECKS = {
    "dataset": optional_text, "data_dir": optional_text, "target": target, "drop": columns,
    "test_fraction": fraction,
    "hidden": hidden_sizes, "activation": choice(activation_names), "input_dropout": input_dropout,
    "dropout": dropout, "batch_norm": flag, "shift": shift, "flip": flag,
    "dtype": choice(DTYPES),
    "loss": choice(loss_names), "optimizer": choice(optimizer_names), "lr": positive_float, "momentum": fraction,
    "schedule": choice(SCHEDULES), "warmup": non_negative_float, "epochs": positive_int,
    "batch_size": positive_int, "l2": non_negative_float, "seed": non_negative_int,
    "validation_fraction": fraction, "early_stopping": non_negative_int, "threads": optional_threads,
}
# What --resume may change: more epochs, the data's new location, the thread
# count (a different count may change the last bits of the weights).
RESUMABLE = ("epochs", "data_dir", "threads")
# Settings as a run without their flags has them, under the preset's.
# Checkpoints written before --dropout, --batch-norm, --input-dropout,
# --shift, --drop and --flip existed lack those: their runs had none of them.
UNPRESET = {"data_dir": None, "target": None, "drop": None, "threads": None, "dropout": 0.0, "batch_norm": False,
            "input_dropout": 0.0, "shift": 0, "flip": False}
_ADDED_LATER = ("dropout", "batch_norm", "input_dropout", "shift", "drop", "flip")
# The loss a run takes when --target names several columns and --loss is not given.
MULTILABEL_LOSS = "sigmoid-bce"


def argument_type(check):
    """``check`` as an argparse ``type=``: its message becomes argparse's error."""
    def convert(text):
        try:
            return check(text)
        except HandgradError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = check.__name__
    return convert


def from_flags(args):
    """The preset of ``--dataset`` overlaid with every flag given; checked."""
    dataset = args.dataset or "digits"
    settings = dict(UNPRESET)
    settings.update(preset_for(dataset, getattr(args, "preset", None)))
    settings.update({key: getattr(args, key) for key in CHECKS if getattr(args, key, None) is not None})
    if getattr(args, "loss", None) is None and len(str(settings["target"] or "").split(",")) > 1:
        settings["loss"] = MULTILABEL_LOSS          # several target columns: several 0/1 labels
    settings["dataset"] = dataset_spec(dataset)
    settings["data_dir"] = absolute_folder(settings["data_dir"])
    return check(settings)


def for_resume(saved, args):
    """Settings of a checkpoint, with the flags ``--resume`` allows changing."""
    given = [key for key in CHECKS if getattr(args, key, None) is not None and key not in RESUMABLE]
    if given:
        flags = ", ".join("--" + key.replace("_", "-") for key in given)
        raise HandgradError(f"{flags} cannot change when resuming (the run continues with its saved settings); "
                            f"drop {'them' if len(given) > 1 else 'it'}, or start a new run without --resume")
    settings = {key: value for key, value in UNPRESET.items() if key in _ADDED_LATER}
    settings.update(saved)
    settings.update({key: getattr(args, key) for key in RESUMABLE if getattr(args, key, None) is not None})
    if args.data_dir is not None:
        settings["data_dir"] = absolute_folder(args.data_dir)
    return check(settings, source="the checkpoint's ")


def check(settings, source=""):
    """Every setting present and valid, the schedule consistent; raise otherwise."""
    missing = [key for key in CHECKS if key not in settings]
    if missing:
        raise HandgradError(f"{source}settings lack {', '.join(missing)}; the file is damaged, start a new run")
    checked = {}
    for key, checker in CHECKS.items():
        try:
            checked[key] = checker(settings[key])
        except HandgradError as exc:
            raise HandgradError(f"{source}--{key.replace('_', '-')} {exc}") from None
    if checked["schedule"] == "cosine" and checked["warmup"] >= checked["epochs"]:
        raise HandgradError(f"--warmup ({checked['warmup']:g}) must be shorter than --epochs ({checked['epochs']})")
    if checked["dataset"] is None:
        raise HandgradError(f"{source}settings name no dataset; pass --dataset")
    _check_task(checked, source)
    if checked["drop"] and not checked["dataset"].lower().endswith(".csv"):
        raise HandgradError(f"{source}--drop names CSV columns to leave out, but {checked['dataset']} is not a "
                            ".csv file; leave out --drop")
    if checked["shift"] and checked["dataset"] not in BUILT_IN:
        raise HandgradError(f"{source}--shift moves images, but {checked['dataset']} is a table; "
                            "drop --shift (or pass --shift 0)")
    if checked["flip"] and checked["dataset"] not in BUILT_IN:
        raise HandgradError(f"{source}--flip mirrors images, but {checked['dataset']} is a table; drop --flip")
    return checked


def _check_task(settings, source):
    """The loss fits the targets: one label column for a softmax loss, a table of one's own for the others."""
    names = target_names(settings)
    loss, kind = settings["loss"], task(settings)
    if kind.label_column and names is not None and len(names) > 1:
        raise HandgradError(f"{source}--loss {loss} reads one class label per row, but --target names "
                            f"{len(names)} columns ({', '.join(names)}); use --loss {MULTILABEL_LOSS} for several "
                            "0/1 labels, or name one target column")
    if not kind.label_column and settings["dataset"] in BUILT_IN:
        raise HandgradError(f"{source}--loss {loss} is a {kind} loss, but {settings['dataset']} has class labels; "
                            f"train it on a .csv or .npz table of {kind.target_columns} (one column per output), "
                            "or use --loss cross-entropy")


def dataset_spec(dataset):
    """Built-in names as they are; paths made absolute, so ``--resume`` works from any folder.

    A name that is neither built in nor a ``.csv``/``.npz`` path is refused
    here, as the user typed it, with the nearest built-in name suggested.
    """
    from handgrad.data.loaders import check_dataset_name

    check_dataset_name(dataset)
    if dataset.lower() in BUILT_IN:
        return dataset.lower()
    return str(Path(dataset).expanduser().absolute())


def absolute_folder(folder):
    """``folder`` as an absolute path (or None), so a stored ``--data-dir`` means the same from any folder."""
    return None if folder is None else str(Path(folder).expanduser().absolute())


def build_loss(settings):
    return hg.losses()[settings["loss"]]()


def build_model(settings, n_features, n_outputs, dtype):
    """The network of ``handgrad train`` (and ``handgrad derive``) for these settings, freshly initialised.

    ``Dropout(p)`` first with ``--input-dropout p`` above 0; per hidden
    layer: ``Dense``, then ``BatchNorm`` with ``--batch-norm``, the
    activation, then ``Dropout(p)`` with ``--dropout p`` above 0; then the
    output ``Dense``.  Without those flags this is ``hg.mlp``'s network,
    with the same initial weights.
    """
    act = hg.activations()[settings["activation"]]
    widths = [n_features, *settings["hidden"]]
    layers = [hg.Dropout(settings["input_dropout"])] if settings["input_dropout"] > 0 else []
    for n_in, n_out in zip(widths, widths[1:]):
        layers.append(hg.Dense(n_in, n_out, dtype=dtype))
        if settings["batch_norm"]:
            layers.append(hg.BatchNorm(n_out, dtype=dtype))
        layers.append(act())
        if settings["dropout"] > 0:
            layers.append(hg.Dropout(settings["dropout"]))
    layers.append(hg.Dense(widths[-1], n_outputs, dtype=dtype))
    return hg.Sequential(*layers, seed=settings["seed"])


def build_optimizer(settings):
    """The named optimizer with ``--lr``, and ``--momentum`` where it takes one."""
    cls = hg.registry.OPTIMIZERS.choices()[settings["optimizer"]]
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{key: settings[key] for key in ("lr", "momentum") if key in accepted})


def build_schedule(settings):
    if settings["schedule"] == "cosine":
        return hg.schedules.Cosine(settings["lr"], settings["epochs"], warmup=settings["warmup"])
    return None


def build_early_stopping(settings):
    """An EarlyStopping on validation loss (training loss without a validation split), or None."""
    patience = settings["early_stopping"]
    if not patience:
        return None
    monitor = "val_loss" if settings["validation_fraction"] > 0 else "train_loss"
    return hg.EarlyStopping(monitor=monitor, patience=patience)
