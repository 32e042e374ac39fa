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
    """``"256,128"`` -> ``[256, 128]``; at least one hidden layer.

    An empty list would silently train softmax regression, which is never
    what a mistyped or empty ``--hidden`` meant, so it is refused.
    """
    if isinstance(text, list):
        sizes = [positive_int(size) for size in text]
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
        raise HandgradError(f"must name at least one hidden layer width such as 128, got {text!r}")
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


# setting -> checker; the order is the order of ``handgrad train --help``'s groups.
CHECKS = {
    "dataset": optional_text, "data_dir": optional_text, "target": optional_text, "test_fraction": fraction,
    "hidden": hidden_sizes, "activation": choice(activation_names), "dtype": choice(DTYPES),
    "loss": choice(loss_names), "optimizer": choice(optimizer_names), "lr": positive_float, "momentum": fraction,
    "schedule": choice(SCHEDULES), "warmup": non_negative_float, "epochs": positive_int,
    "batch_size": positive_int, "l2": non_negative_float, "seed": non_negative_int,
    "validation_fraction": fraction, "early_stopping": non_negative_int, "threads": optional_threads,
}
# What --resume may change: more epochs, the data's new location, the thread
# count (a different count may change the last bits of the weights).
RESUMABLE = ("epochs", "data_dir", "threads")


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
    settings = preset_for(dataset)
    settings.update({"data_dir": None, "target": None, "threads": None})
    settings.update({key: getattr(args, key) for key in CHECKS if getattr(args, key, None) is not None})
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
    settings = dict(saved)
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
    return checked


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


def build_optimizer(settings):
    """The named optimizer with ``--lr``, and ``--momentum`` where it takes one."""
    cls = hg.registry.OPTIMIZERS.choices()[settings["optimizer"]]
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{key: settings[key] for key in ("lr", "momentum") if key in accepted})


def build_schedule(settings):
    if settings["schedule"] == "cosine":
        return hg.schedules.cosine(settings["lr"], settings["epochs"], warmup=settings["warmup"])
    return None


def build_early_stopping(settings):
    """An EarlyStopping on validation loss (training loss without a validation split), or None."""
    patience = settings["early_stopping"]
    if not patience:
        return None
    monitor = "val_loss" if settings["validation_fraction"] > 0 else "train_loss"
    return hg.EarlyStopping(monitor=monitor, patience=patience)
