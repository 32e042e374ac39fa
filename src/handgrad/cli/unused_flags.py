"""Flags that do nothing in the configuration they are given in: declared once, each a one-line warning.

A flag the user typed is a request; when the rest of the command line makes
it a no-op (``--momentum`` for Adam, ``--warmup`` without a schedule to warm
up), the command still runs, as asked, but says so on stderr::

    handgrad train: warning: --momentum has no effect with --optimizer adam, which keeps its own ...

Only flags given on the command line are judged, never a preset's values
(every preset carries a momentum, used by SGD alone).  Each rule names the
flag (its argparse ``dest``), the commands that have it, and a function of
the command's resolved view (the flags, and for ``train`` and ``derive``
the settings after the preset is merged) that returns why the flag does
nothing, with the remedy, or None when it does something.  Adding a rule is
one entry in :data:`RULES`; ``tests/test_journeys.py`` runs each one.
"""

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from handgrad.cli.console import warn


@dataclass(frozen=True)
class Rule:
    """``--flag`` does nothing in ``commands`` whenever ``idle(view)`` returns a reason (with the remedy)."""

    flag: str
    commands: tuple
    idle: Callable


def _optimizer_without_momentum(view):
    import handgrad as hg

    name = view["optimizer"]
    cls = hg.registry.OPTIMIZERS.choices()[name]
    if "momentum" in inspect.signature(cls.__init__).parameters:
        return None
    return (f"with --optimizer {name}, which takes no momentum (Adam keeps its own running averages of the "
            "gradient); drop --momentum, or pass --optimizer sgd")


def _constant_schedule(view):
    if view["schedule"] != "constant":
        return None
    return "with --schedule constant, which has no warm-up; pass --schedule cosine, or drop --warmup"


def _official_test_set(view):
    from handgrad.data.datasets import DATASETS

    if view["dataset"] not in DATASETS:
        return None
    return (f"on {view['dataset']}, which has its own test set of 10,000 images; drop --test-fraction "
            "(--validation-fraction holds out training images)")


def _no_data_folder(view):
    from pathlib import Path

    from handgrad.data.datasets import DATASETS

    dataset = view.get("dataset")
    if dataset is None or str(dataset).lower() in DATASETS:
        return None                     # evaluate without --dataset: the model's own data, perhaps MNIST
    what = ("digits, which ships with scikit-learn" if str(dataset).lower() == "digits"
            else f"{Path(dataset).name}, a file of its own")
    return f"on {what}: only mnist and fashion-mnist are looked up there; drop --data-dir"


def _no_plots(view):
    return "with --no-plots, which draws none; drop one of the two" if view.get("no_plots") else None


def _checkpoint_never_due(view):
    every, epochs = view.get("checkpoint_every"), view.get("epochs")
    if every is None or epochs is None or every <= epochs:
        return None
    return (f"when it exceeds --epochs {epochs}: no checkpoint falls due (one is still written on Ctrl-C); "
            "pass a smaller N")


def _without_model(view):
    if view.get("model"):
        return None
    return "without --model: it sets how a saved model's arrays are sampled; add --model FILE"


def _without_check(view):
    return None if view.get("check") else "without --check, which is what it tunes; add --check"


def _no_hidden_layer(what):
    def idle(view):
        if view.get("hidden") != []:
            return None
        return f"with --hidden none: there is no hidden layer {what}; drop it, or name hidden widths"
    return idle


RULES = (
    Rule("momentum", ("train",), _optimizer_without_momentum),
    Rule("warmup", ("train",), _constant_schedule),
    Rule("test_fraction", ("train", "derive", "diagnose"), _official_test_set),
    Rule("data_dir", ("train", "derive", "diagnose", "evaluate"), _no_data_folder),
    Rule("plots", ("train",), _no_plots),
    Rule("checkpoint_every", ("train",), _checkpoint_never_due),
    Rule("entries", ("check",), _without_model),
    Rule("all", ("check",), _without_model),
    Rule("check_rows", ("derive",), _without_check),
    Rule("check_entries", ("derive",), _without_check),
    Rule("activation", ("train", "derive", "diagnose"), _no_hidden_layer("to take the activation")),
    Rule("dropout", ("train", "derive", "diagnose"), _no_hidden_layer("for a Dropout to follow")),
    Rule("batch_norm", ("train", "derive", "diagnose"), _no_hidden_layer("for a BatchNorm to precede")),
)


def given(args, flag):
    """Whether ``--flag`` was on the command line: its value is neither None nor False (the unset defaults)."""
    value = getattr(args, flag, None)
    return value is not None and value is not False


def warn_unused(command, args, settings=None):
    """One warning per flag of ``command`` given in ``args`` that has no effect; returns the flags warned about."""
    view = {**vars(args), **(settings or {})}
    idle = []
    for rule in RULES:
        if command in rule.commands and given(args, rule.flag):
            reason = rule.idle(view)
            if reason:
                idle.append(rule.flag)
                warn(f"--{rule.flag.replace('_', '-')} has no effect {reason}", command)
    return idle
