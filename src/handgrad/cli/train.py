"""``handgrad train``: fit a classifier or regressor on a dataset and write the model file and plots.

The run in order: settings (flags over the dataset's preset, or a
checkpoint's for ``--resume``), output paths checked, data loaded and
preprocessed, ``hg.fit`` with a :class:`Recorder` callback, then the test
figures of the loss's task (accuracy; R² and RMSE; label and subset
accuracy), the model file, the metrics log and the plots.  ``--device cuda``
trains on a GPU (:mod:`handgrad.cli.devices`); everything written is read
back from the host, so the files are the same as a CPU run's.

Faults.  The Recorder keeps, in memory, everything a checkpoint holds as of
the end of the last finished epoch.  On Ctrl-C or SIGTERM that state is
written as a checkpoint (atomically, signals deferred) and the process exits
with 130 or 143; on a diverging loss it is written too, nothing else is, and
the exit code is 2.  ``--resume`` continues from a checkpoint with
``fit(initial_epoch=..., history=...)``; since every shuffle is seeded by
``(seed, epoch)``, the resumed run ends with exactly the weights of an
uninterrupted one (same seed, same thread count).
"""

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import handgrad as hg
from handgrad.arrays import to_numpy
from handgrad.cli import console
from handgrad.cli import settings as S
from handgrad.cli.common import (
    TargetScaling,
    check_count_targets,
    check_writable,
    describe,
    draw_plots,
    predictions,
    remove_stale_plots,
    scales_targets,
    write_text,
)
from handgrad.cli.console import warn
from handgrad.cli.devices import DEVICES, device_name, ops_for_device
from handgrad.cli.interrupts import Interrupted, guard
from handgrad.cli.memory import check_fits, training_bytes
from handgrad.cli.presets import PRESETS, VARIANTS, preset_values, text_table
from handgrad.cli.unused_flags import warn_unused
from handgrad.errors import HandgradError, TrainingDiverged
from handgrad.io.files import fallback_paths, os_error_message
from handgrad.io.modelfile import check_model_metadata, load_checkpoint, save_checkpoint, save_model
from handgrad.io.text import printable
from handgrad.training.loop import validation_split

DEFAULT_OUT = Path("handgrad-out") / "model.npz"
# First-layer weights are drawn only for images at least this many pixels on each
# side: a tile of 8x8 (scikit-learn's digits) is too coarse to show a stroke, so the
# figure read as noise there.
MIN_WEIGHT_IMAGE_SIDE = 16
# A label column of more distinct numbers than this, trained as classes because no --loss was given,
# gets a hint that it may be a quantity to predict (--loss squared-error).  Class codes rarely run past
# twenty; a measured number (a price, a score: diabetes' target has 214 values in 442 rows) usually does.
MAX_NUMERIC_CLASSES = 20
# Without a terminal (no progress bar), a line this often within an epoch that runs longer.
HEARTBEAT_SECONDS = 10.0

EXAMPLES = """\
examples:
  handgrad train                                  digits, its preset; writes handgrad-out/
  handgrad train --dataset mnist --data-dir ../shared/data
  handgrad train --dataset iris.csv --target species --hidden 32,16 --epochs 200
  handgrad train --dataset houses.csv --target price --loss squared-error   a regressor
  handgrad train --dataset tags.csv --target a,b,c                         multilabel, sigmoid-bce
  handgrad train --dataset people.csv --target income --drop id            leave a column out
  handgrad train --dropout 0.2 --batch-norm --activation gelu
  handgrad train --hidden 256,128 --activation tanh --optimizer sgd --lr 0.05 --momentum 0.9
  handgrad train --epochs 40 --checkpoint-every 5 --out runs/a.npz --log runs/a.jsonl
  handgrad train --resume runs/a.ckpt.npz          continue an interrupted run exactly

Ctrl-C or SIGTERM saves a checkpoint of the last finished epoch (OUT with
.ckpt.npz) and exits with 130 or 143; --resume continues it to the same final
weights as an uninterrupted run.  A diverging loss stops the run, saves the last
good weights in the checkpoint, writes no model and exits with 2.

Every setting left unset comes from the dataset's preset ("file" for a CSV or NPZ
path); a flag given always wins:

{presets}
"""


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "train", parents=parents, help="train a classifier or regressor and write the model file and plots",
        description="Train a classifier (or a regressor, or a multilabel classifier) on a dataset; print its "
                    "held-out figures; write the model and plots.",
        epilog=EXAMPLES.format(presets=text_table()), formatter_class=console.HelpFormatter)
    add_data_flags(p)
    add_model_flags(p)
    t = S.argument_type
    opt = p.add_argument_group("optimization", PRESET_NOTE)
    _choice(opt, "--optimizer", S.optimizer_names(), "Adam, or SGD with --momentum")
    opt.add_argument("--lr", type=t(S.positive_float), help="learning rate")
    opt.add_argument("--momentum", type=t(S.fraction), help="SGD momentum, in [0, 1)")
    _choice(opt, "--schedule", S.SCHEDULES, "learning rate over the run")
    opt.add_argument("--warmup", type=t(S.non_negative_float), metavar="EPOCHS", help="cosine warm-up, in epochs")
    opt.add_argument("--epochs", type=t(S.positive_int), help="number of epochs (with --resume: the new total)")
    opt.add_argument("--batch-size", type=t(S.positive_int), metavar="N", help="minibatch size")
    add_l2_flag(opt)
    add_seed_flag(opt)
    opt.add_argument("--validation-fraction", type=t(S.fraction), metavar="F",
                     help="share of training data held out per epoch")
    opt.add_argument("--early-stopping", type=t(S.non_negative_int), nargs="?", const=10, metavar="PATIENCE",
                     help="stop after PATIENCE epochs without improvement (default 10; 0: off)")
    out = p.add_argument_group("output")
    out.add_argument("--out", metavar="MODEL", help=f"model file to write (default {DEFAULT_OUT})")
    out.add_argument("--plots", metavar="DIR", help="folder for PNG plots (default: plots/ beside --out)")
    out.add_argument("--no-plots", action="store_true", help="draw no plots")
    out.add_argument("--log", metavar="METRICS.jsonl", help="write one JSON line per epoch to this file")
    out.add_argument("--checkpoint", metavar="PATH", help="checkpoint file (default: --out with .ckpt.npz)")
    out.add_argument("--checkpoint-every", type=t(S.positive_int), metavar="N",
                     help="write a checkpoint every N epochs")
    out.add_argument("--resume", metavar="CHECKPOINT", help="continue the run saved in CHECKPOINT")
    run = p.add_argument_group("execution")
    run.add_argument("--threads", type=t(S.optional_threads), metavar="N",
                     help="BLAS threads (same N: same weights)")
    run.add_argument("--device", type=t(device_name), default=None, metavar="DEVICE",
                     help=f"where to train: {DEVICES} (a GPU through PyTorch or CuPy; default cpu, NumPy)")
    progress = run.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="show progress on stderr (the default): a bar and a line per epoch on a "
                               "terminal, else a line per epoch and one every 10 s within a long epoch")
    progress.add_argument("--no-progress", dest="progress", action="store_false",
                          help="show no progress")
    p.set_defaults(run=run_train)


PRESET_NOTE = "unset flags take the dataset's preset (table below)"


def add_data_flags(parser):
    """The "data" group: which dataset, where, which target columns, which preset, augmentation, the test split."""
    t = S.argument_type
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", metavar="NAME|PATH",
                      help="digits (default), mnist, fashion-mnist, or PATH.csv / PATH.npz")
    data.add_argument("--data-dir", metavar="DIR",
                      help="folder holding mnist/ and fashion-mnist/ (else $HANDGRAD_DATA, the cache)")
    data.add_argument("--target", type=t(S.target), metavar="COLUMN[,COLUMN...]",
                      help="CSV label column (default: the last column); for regression one or more numeric "
                           "columns, for multilabel several 0/1 columns (then --loss defaults to sigmoid-bce)")
    data.add_argument("--drop", type=t(S.columns), metavar="COLUMN[,COLUMN...]",
                      help="CSV columns to leave out of the features, such as an id; the model file records "
                           "them, so evaluate and predict leave them out too")
    data.add_argument("--preset", choices=list(VARIANTS), default=None,
                      help="which preset fills unset flags: standard (default), or best (mnist, fashion-mnist: the "
                           "most accurate dense-only recipe found, a few minutes on two cores)")
    data.add_argument("--shift", type=t(S.shift), metavar="PIXELS",
                      help="move each training image by up to PIXELS in each direction, anew every epoch "
                           f"(image datasets; 0: none; default the preset's: {preset_values('shift')})")
    data.add_argument("--flip", action="store_true", default=None,
                      help="mirror each training image left to right with probability 1/2, anew every epoch "
                           "(image datasets whose classes are symmetric, e.g. fashion-mnist)")
    data.add_argument("--test-fraction", type=t(S.fraction), metavar="F",
                      help=f"share held out for testing (digits, CSV, NPZ; default {PRESETS['file']['test_fraction']:g})")


def add_model_flags(parser):
    """The "model" group: the network and its loss.  Returns the settings it adds (their dests)."""
    t = S.argument_type
    model = parser.add_argument_group("model", PRESET_NOTE)
    actions = [
        model.add_argument("--hidden", type=t(S.hidden_sizes), metavar="N,N,...",
                           help="hidden layer widths, e.g. 256,128; none: no hidden layer (softmax or linear "
                                "regression)"),
        _choice(model, "--activation", S.activation_names(), "hidden activation"),
        model.add_argument("--input-dropout", type=t(S.input_dropout), metavar="P",
                           help="a Dropout(P) before the first layer: drops input features in training "
                                f"(0: none; default the preset's: {preset_values('input_dropout')})"),
        model.add_argument("--dropout", type=t(S.dropout), metavar="P",
                           help="a Dropout(P) after every hidden activation: P in [0, 1) is the share of units "
                                f"dropped in training (0: none; default the preset's: {preset_values('dropout')})"),
        model.add_argument("--batch-norm", action="store_true", default=None,
                           help="a BatchNorm before every hidden activation"),
        _choice(model, "--loss", S.loss_names(),
                "the loss, which sets the task: classification (cross-entropy, softmax-bce), regression "
                "(squared-error, poisson) or multilabel (sigmoid-bce)"),
        _choice(model, "--dtype", S.DTYPES, "floating-point type of weights and data"),
    ]
    return [action.dest for action in actions]


def add_l2_flag(group):
    group.add_argument("--l2", type=S.argument_type(S.non_negative_float), help="L2 penalty λ of (λ/2)·Σ‖W‖²")


def add_seed_flag(group):
    group.add_argument("--seed", type=S.argument_type(S.non_negative_int),
                       help="seeds the initialisation, the validation split and the shuffles (not the test split)")


def _choice(group, flag, options, help):
    """A flag taking one of ``options``, listed in the usage line like argparse's ``choices``; returns its action."""
    return group.add_argument(flag, type=S.argument_type(S.choice(options)), metavar="{" + ",".join(options) + "}",
                       help=help)


# -- plan: settings and paths ----------------------------------------------------

@dataclass
class Outputs:
    model: Path
    checkpoint: Path
    plots: Path
    log: Path
    checkpoint_every: int

    def check(self):
        check_writable(self.model, "--out")
        check_writable(self.checkpoint, "--checkpoint")
        if self.plots is not None:
            check_writable(self.plots, "--plots", folder=True)
        if self.log is not None:
            check_writable(self.log, "--log")
        if self.checkpoint.absolute() == self.model.absolute():
            raise HandgradError(f"--checkpoint and --out are both {self.model}; give them different paths")

    def to_dict(self):
        return {"out": str(self.model), "checkpoint": str(self.checkpoint),
                "plots": None if self.plots is None else str(self.plots),
                "log": None if self.log is None else str(self.log), "checkpoint_every": self.checkpoint_every}


def _outputs(args, saved=None):
    """Paths from the flags; with ``--resume``, unset ones as the interrupted run had them."""
    saved = _saved_outputs(saved)
    model = Path(args.out or saved.get("out") or DEFAULT_OUT)
    checkpoint = Path(args.checkpoint or args.resume or _checkpoint_beside(model))
    if args.no_plots:
        plots = None
    elif args.plots or args.out or "plots" not in saved:
        plots = Path(args.plots) if args.plots else model.parent / "plots"
    else:
        plots = saved["plots"] and Path(saved["plots"])
    log = args.log or saved.get("log")
    every = args.checkpoint_every or saved.get("checkpoint_every")
    return Outputs(model, checkpoint, plots, log and Path(log), every)


def _saved_outputs(saved):
    """The output settings a checkpoint recorded, keeping only well-formed entries."""
    if not isinstance(saved, dict):
        return {}
    kept = {key: saved[key] for key in ("out", "plots", "log")
            if key in saved and (saved[key] is None or isinstance(saved[key], str))}
    every = saved.get("checkpoint_every")
    if isinstance(every, int) and not isinstance(every, bool) and every > 0:
        kept["checkpoint_every"] = every
    return kept


def _checkpoint_beside(model):
    name = model.name[:-4] if model.name.endswith(".npz") else model.name
    return model.with_name(name + ".ckpt.npz")


# -- data ----------------------------------------------------------------------

@dataclass
class Prepared:
    dataset: object
    preprocessor: object
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray          # the targets as the loss trains on them (standardised for squared error)
    target_scaling: object       # the TargetScaling of squared-error targets, else None
    fingerprint: str


def _prepare(settings, dtype, loss, preprocessor=None):
    from handgrad.data.loaders import load_dataset
    from handgrad.data.preprocessing import Preprocessor

    dataset = load_dataset(settings["dataset"], data_dir=settings["data_dir"], target=settings["target"],
                           test_fraction=settings["test_fraction"], task=loss.task, drop=settings["drop"])
    check_count_targets(loss, dataset)
    _check_memory(settings, dataset, dtype)       # before the scaled copies, the network and the optimizer
    if preprocessor is None:
        preprocessor = Preprocessor.fit(dataset.X_train, dataset.kind, dtype, names=dataset.feature_names,
                                        name=f"{dataset.name} (training split)")
    X_train = preprocessor.transform(dataset.X_train, dtype=dtype, name=f"{dataset.name} (training split)")
    X_test = (preprocessor.transform(dataset.X_test, dtype=dtype, name=f"{dataset.name} (test split)")
              if len(dataset.X_test) else dataset.X_test)
    scaling, y_train = None, dataset.y_train
    if scales_targets(loss):
        with np.errstate(over="ignore", invalid="ignore"):     # targets too large are refused just below
            scaling = TargetScaling.fit(dataset.y_train)
            y_train = scaling.transform(dataset.y_train)
        _check_scaled_targets(dataset, y_train, dtype)
    fingerprint = _fingerprint(dataset)
    return Prepared(_without_raw_features(dataset), preprocessor, X_train, X_test, y_train, scaling, fingerprint)


def _check_memory(settings, dataset, dtype):
    """Refuse, before allocating it, a run that cannot fit in memory (see :mod:`handgrad.cli.memory`)."""
    n_rows = len(dataset.X_train) + len(dataset.X_test)
    widths = [dataset.X_train.shape[1], *settings["hidden"], dataset.n_outputs]
    states = len(S.build_optimizer(settings).state_names)
    estimate = training_bytes(n_rows, widths, dtype, settings["batch_size"], states,
                              settings["validation_fraction"], settings["batch_norm"])
    smaller = ", use --dtype float32," if np.dtype(dtype) != np.float32 else ""
    check_fits(estimate, f"--hidden or --batch-size{smaller or ','} or train on fewer rows")


def _check_scaled_targets(dataset, y_train, dtype):
    """Refuse targets whose squared errors overflow ``dtype`` even after scaling, naming the column and the value.

    Standardised targets lie within ±√n; only a column whose variance itself
    overflows float64 (values near 1e300) stays this large.
    """
    limit = np.sqrt(np.finfo(dtype).max)
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(y_train) <= limit)
    if bad.any():
        row, col = np.argwhere(bad.reshape(len(y_train), -1))[0]
        value = np.asarray(dataset.y_train).reshape(len(y_train), -1)[row, col]
        raise HandgradError(f"{dataset.name}: the target column {str(dataset.classes[col])!r} holds {value:g} "
                            f"(training row {row}), too large to train on: its squared error overflows "
                            f"{np.dtype(dtype).name}; rescale the column (divide it by a power of ten)")


def _hint_numeric_target(dataset, settings):
    """Warn when a table's label column looks like a number to predict rather than classes.

    The rule: the run has a classification loss only because no --loss was
    given, the column is in a table, every one of its values is a number, and
    it holds more than :data:`MAX_NUMERIC_CLASSES` distinct ones.  A warning,
    not an error: a table may code 26 letters or 100 classes as numbers, and
    then ``--loss cross-entropy`` says so and silences it.
    """
    classes = dataset.classes
    if dataset.kind != "tabular" or len(classes) <= MAX_NUMERIC_CLASSES or not _all_numbers(classes):
        return
    column = settings["target"] or _last_column(settings["dataset"])
    rows = len(dataset.y_train) + len(dataset.y_test)
    warn(f"the target column {column!r} holds {len(classes)} distinct numbers in {rows} rows, so this trains a "
         f"classifier of {len(classes)} classes; to predict the number, pass --loss squared-error (or --loss "
         "poisson for counts); to keep the classes, pass --loss cross-entropy")


def _last_column(path):
    """The name of the column a table's labels default to: a CSV's last one, an NPZ's ``y``."""
    if not str(path).lower().endswith(".csv"):
        return "y"
    from handgrad.data.tabular import read_csv_header

    return read_csv_header(path)[-1]


def _all_numbers(values):
    if np.asarray(values).dtype.kind in "iuf":
        return True
    try:
        [float(value) for value in values]
    except (TypeError, ValueError):
        return False
    return True


def _without_raw_features(dataset):
    """``dataset`` with its raw feature rows released (MNIST's: 55 MB of bytes) once they are scaled.

    The run reads the scaled copies in :class:`Prepared`; the dataset keeps
    its labels, names and shapes.  Empty arrays of their own, not views,
    so the raw buffers are freed.
    """
    return dataclasses.replace(dataset, X_train=np.empty((0, dataset.X_train.shape[1]), dataset.X_train.dtype),
                               X_test=np.empty((0, dataset.X_test.shape[1]), dataset.X_test.dtype))


def _fingerprint(dataset):
    """A hash of the training and test data, so a resumed run can tell that its data changed."""
    digest = hashlib.blake2b(digest_size=16)
    for features, targets in ((dataset.X_train, dataset.y_train), (dataset.X_test, dataset.y_test)):
        # Features hashed as float64, whatever dtype the loader keeps (images stay bytes), a slice of rows
        # at a time: the same digest as hashing the float64 array whole, without its 376 MB copy for MNIST.
        for start in range(0, len(features), _HASH_ROWS):
            digest.update(np.ascontiguousarray(features[start:start + _HASH_ROWS], dtype=np.float64).data)
        digest.update(np.ascontiguousarray(targets).data)
    return digest.hexdigest()


_HASH_ROWS = 4096


# -- the run ---------------------------------------------------------------------

class Recorder(hg.Callback):
    """Holds the state at the end of the last finished epoch; writes periodic checkpoints.

    ``snapshot`` is replaced as a whole (one assignment) after it is fully
    built, so a signal arriving mid-copy leaves the previous one intact.
    """

    def __init__(self, early_stopping, write_checkpoint, every):
        self.early_stopping, self.write_checkpoint, self.every = early_stopping, write_checkpoint, every
        self.snapshot = None

    def on_train_begin(self, ctx):
        self._take(ctx)

    def on_epoch_end(self, ctx, record):
        self._take(ctx)
        if self.every and len(ctx.history) % self.every == 0:
            self.write_checkpoint(self.snapshot)

    def _take(self, ctx):
        state = ctx.optimizer.state_dict()
        state["state"] = [{k: np.array(v) for k, v in group.items()} for group in state["state"]]
        stopping = None if self.early_stopping is None else dict(self.early_stopping.state_dict())
        self.snapshot = {"weights": ctx.model.get_weights(), "buffers": ctx.model.get_buffers(),
                         "optimizer_state": state, "early_stopping": stopping,
                         "history": [dict(r) for r in ctx.history.records], "stopped": bool(ctx.stop)}


class TargetUnits(hg.Callback):
    """Puts each epoch's RMSE into the target's own units, before anything else reads the record.

    ``fit`` measures it on the standardised targets it trains on (see
    :class:`~handgrad.cli.common.TargetScaling`).  For one target the
    conversion is exact: RMSE times the column's scale.  Several targets
    have units of their own, and an RMSE over all of them has none (nor
    could it be recovered from the standardised one), so their per-epoch
    RMSE is left out (None); R², the mean over the columns of a figure each
    column's scale leaves unchanged, is the per-epoch figure then, and the
    test report gives each target's RMSE in its units.  The losses stay in
    the standardised units.
    """

    def __init__(self, scale):
        self.scale = np.asarray(scale, dtype=np.float64).reshape(-1)

    def on_epoch_end(self, ctx, record):
        for key in ("train_rmse", "val_rmse"):
            if record.get(key) is not None:
                record[key] = float(record[key] * self.scale[0]) if len(self.scale) == 1 else None


class Run:
    """One ``handgrad train`` invocation: what it trains, and what it writes."""

    def __init__(self, args):
        self.args = args
        if args.resume:
            self.checkpoint = load_checkpoint(args.resume)
            self.settings = S.for_resume(self.checkpoint.settings, args)
            self.outputs = _outputs(args, self.checkpoint.metadata["extra"].get("outputs"))
        else:
            self.checkpoint = None
            self.settings = S.from_flags(args)
            self.outputs = _outputs(args)
        self.outputs.check()
        warn_unused("train", args, {**self.settings, "checkpoint_every": self.outputs.checkpoint_every})
        self.dtype = np.dtype(self.settings["dtype"]).type
        self.device = ops_for_device(args.device)      # before any data is loaded: a missing GPU fails fast

    def execute(self):
        self.loss = S.build_loss(self.settings)
        self.data = self._data()
        if self.checkpoint is None and self.args.loss is None:
            _hint_numeric_target(self.data.dataset, self.settings)
        self.model, self.optimizer, self.early_stopping, history, initial = self._start()
        self.model.to(self.device)
        self.recorder = Recorder(self.early_stopping, self._write_checkpoint, self.outputs.checkpoint_every)
        status(self._plan(initial))
        # Everything the model file will hold but the run's figures, checked now rather than after the run.
        check_model_metadata(self.model, **self._model_file_parts(history.records, {}))
        saved = False
        try:
            history = self._fit(history, initial)
            scores = {**self._train_scores(), **self._test_scores()}
            with guard.deferred():     # a signal now waits until the model file is complete
                self._save_model(self._model_file_parts(history.records, scores))
                self._write_log(history.records)
                saved = True
            # The figures first, the plots after them: a plot that cannot be drawn hides no result.
            self._report(history, scores)
            self._draw_plots(history)
        except Interrupted as stop:
            if saved:
                stop.note = f"the model was saved to {self.outputs.model}, the plots may be incomplete"
            else:
                self._save_interrupted(stop)
            raise
        return 0

    def _model_file_parts(self, records, scores):
        """save_model's arguments; a test figure that is not a finite number is stored as null."""
        scores = {key: None if value is None or not np.isfinite(value) else value for key, value in scores.items()}
        return dict(loss=self.loss, classes=self._classes(), preprocessing=self.data.preprocessor,
                    settings=self.settings, history=records, extra=self._extra(**scores))

    def _save_model(self, parts):
        """Write the model file; if that fails, write it beside the target or in the temporary folder instead.

        A finished run is never lost to a full disk or a folder whose
        permissions changed during the run: the model goes to the first
        fallback that takes it (:func:`handgrad.io.files.fallback_paths`),
        and the one-line error names the failure and where the model is.
        """
        target = self.outputs.model
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            save_model(target, self.model, **parts)
            return
        except OSError as exc:
            failure = os_error_message(exc, target)
        for fallback in fallback_paths(target):
            try:
                save_model(fallback, self.model, **parts)
            except OSError:
                continue
            raise HandgradError(f"the model file could not be written ({failure}); the trained model was saved to "
                                f"{fallback} instead: move it where you want it, or pass it to evaluate and predict "
                                "as it is")
        raise HandgradError(f"the model file could not be written ({failure}), nor beside it or in the temporary "
                            "folder; the trained model is lost: free space and train again")

    def _plan(self, initial):
        """The line announcing what the run will train, or that it has nothing left to train."""
        n, fraction = len(self.data.X_train), self.settings["validation_fraction"]
        held_out = f" ({int(round(fraction * n))} held out for validation)" if fraction else ""
        what = (f"{describe(self.model)} on {self.data.dataset.name}: {n} training samples{held_out}, "
                f"{self._outputs_text()}")
        total = self.settings["epochs"]
        if not self.device.is_numpy:
            what += f", on {self.device.name} {self.device.device}"
        if self.checkpoint is not None and self.checkpoint.stopped:
            return (f"nothing left to train: early stopping ended this run after epoch {self.checkpoint.epoch} "
                    f"({what}); writing its model")
        if initial >= total:
            return (f"nothing left to train: the checkpoint has finished all {total} epochs ({what}); "
                    f"writing its model (pass a larger --epochs to train on)")
        if initial:
            return f"training {what}, epochs {initial + 1}..{total} (resumed after epoch {initial})"
        return f"training {what}, epochs 1..{total}"

    def _outputs_text(self):
        """``"10 classes"``, ``"target price"``, ``"3 labels (a, b, c)"``: what the model outputs."""
        return self.loss.task.describe_outputs(self._classes())

    def _data(self):
        if self.checkpoint is None:
            return _prepare(self.settings, self.dtype, self.loss)
        data = _prepare(self.settings, self.dtype, self.loss, preprocessor=self.checkpoint.preprocessor)
        if data.fingerprint != self.checkpoint.metadata["extra"].get("fingerprint"):
            raise HandgradError(f"the data of {self.settings['dataset']} differ from those the checkpoint was "
                                "trained on; resume with the same data, or start a new run")
        return data

    def _start(self):
        """Model, optimizer, early stopping, history and first epoch: fresh, or from the checkpoint."""
        s = self.settings
        early_stopping = S.build_early_stopping(s)
        if self.checkpoint is None:
            model = S.build_model(s, self.data.X_train.shape[1], self.data.dataset.n_outputs, self.dtype)
            return model, S.build_optimizer(s), early_stopping, hg.History(), 0
        c = self.checkpoint
        if (early_stopping is None) != (c.early_stopping is None):
            raise HandgradError("the checkpoint's early-stopping state does not match its settings; start a new run")
        if early_stopping is not None:
            early_stopping.load_state_dict(c.early_stopping)
            if c.stopped:
                early_stopping.stopped_epoch = c.epoch      # a checkpoint records that it stopped, not when
        if c.model.n_features != self.data.X_train.shape[1] or c.model.n_outputs != self.data.dataset.n_outputs:
            raise HandgradError("the checkpoint's model does not fit its data; start a new run")
        initial = s["epochs"] if c.stopped else c.epoch
        if c.epoch > s["epochs"]:
            raise HandgradError(f"the checkpoint has already trained {c.epoch} epochs, more than --epochs "
                                f"{s['epochs']}; pass a larger --epochs")
        return c.model, c.optimizer, early_stopping, hg.History(c.history), initial

    def _fit(self, history, initial):
        s = self.settings
        # Progress unless --no-progress: a bar and a line per epoch on a terminal; elsewhere (a log file,
        # a pipe) the line per epoch, and a line every 10 s within a long epoch, so a run is never silent.
        progress = self.args.progress is not False
        # The progress line, and the recorder, read each record after its RMSE is in the targets' units.
        callbacks = [TargetUnits(self.data.target_scaling.scale)] if self.data.target_scaling else []
        callbacks += [hg.EpochLogger(heartbeat_seconds=HEARTBEAT_SECONDS)] if progress else []
        try:
            # Overflow on the way to a NaN loss is reported once, as TrainingDiverged, not as warnings.
            with _threads(s.get("threads")), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                return hg.fit(self.model, self.loss, self.data.X_train, self.data.y_train,
                              optimizer=self.optimizer, epochs=s["epochs"], batch_size=s["batch_size"], l2=s["l2"],
                              validation_fraction=s["validation_fraction"], early_stopping=self.early_stopping or False,
                              lr_schedule=S.build_schedule(s), callbacks=[*callbacks, self.recorder], seed=s["seed"],
                              verbose=False, initial_epoch=initial, history=history, augment=self._augment())
        except TrainingDiverged as exc:
            raise HandgradError(self._save_diverged(exc)) from None

    def _augment(self):
        """``--flip`` and ``--shift``: random mirror images and shifts of the training images, or None."""
        if not (self.settings["shift"] or self.settings["flip"]):
            return None
        from handgrad.data.augment import image_augmentation

        return image_augmentation(self.data.dataset.image_shape, self.settings["shift"], self.settings["flip"])

    def _save_interrupted(self, stop):
        snapshot = self.recorder.snapshot
        if snapshot is None:
            return
        self._write_checkpoint(snapshot)
        epoch = len(snapshot["history"])
        stop.note = (f"checkpoint of epoch {epoch} saved to {self.outputs.checkpoint}; "
                     f"continue with: handgrad train --resume {self.outputs.checkpoint}")

    def _save_diverged(self, exc):
        snapshot = self.recorder.snapshot
        epoch = len(snapshot["history"])
        if epoch == 0:
            return f"{exc}; no epoch finished, so nothing was saved"
        self._write_checkpoint(snapshot)
        return (f"{exc}; the last good weights (end of epoch {epoch}) are in {self.outputs.checkpoint}, "
                f"no model was written")

    def _write_checkpoint(self, snapshot):
        with guard.deferred():
            model = hg.Sequential.from_config(self.model.config(), self.dtype)
            model.set_weights(snapshot["weights"])
            model.set_buffers(snapshot["buffers"])
            self.outputs.checkpoint.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(self.outputs.checkpoint, model, loss=self.loss, classes=self._classes(),
                            optimizer_state=snapshot["optimizer_state"], epoch=len(snapshot["history"]),
                            preprocessing=self.data.preprocessor, settings=self.settings,
                            history=snapshot["history"], early_stopping=snapshot["early_stopping"],
                            stopped=snapshot["stopped"], extra=self._extra())
            self._write_log(snapshot["history"])

    def _write_log(self, records):
        if self.outputs.log is not None:
            write_text(self.outputs.log, "".join(json.dumps(r) + "\n" for r in records))

    def _classes(self):
        return self.data.dataset.classes.tolist()

    def _class_names(self):
        d = self.data.dataset
        return d.class_names if d.class_names is not None else [str(c) for c in self._classes()]

    def _extra(self, **more):
        d = self.data.dataset
        scaling = self.data.target_scaling
        return {"dataset": d.name, "kind": d.kind, "task": self.loss.task.name, "feature_names": d.feature_names,
                "class_names": list(self._class_names()),
                "image_shape": None if d.image_shape is None else list(d.image_shape),
                "target_scaling": None if scaling is None else scaling.to_dict(),
                "fingerprint": self.data.fingerprint, "outputs": self.outputs.to_dict(), **more}

    def _train_scores(self):
        """``{"train_<figure>": value}``: the saved model on the rows it trained on, in inference mode.

        No dropout, no shifts, the weights as they are written (the best
        epoch's with early stopping): the training figures of the run's
        records are running means over each epoch's minibatches instead,
        taken while the weights changed and on augmented images.
        """
        predicted = predictions(self.model, self.loss, self.data.X_train, self.data.target_scaling)
        rows = self._training_rows()
        scores = self.loss.task.scores(self.data.dataset.y_train[rows], predicted[rows])
        return {f"train_{key}": value for key, value in scores.items()}

    def _training_rows(self):
        """The indices of the training rows ``fit`` trained on: all but its validation split."""
        n, fraction = len(self.data.X_train), self.settings["validation_fraction"]
        if not fraction:
            return np.arange(n)
        return validation_split(n, fraction, self.settings["seed"])[0]

    def _test_scores(self):
        """``{"test_<figure>": value}`` of the loss's task on the test split (each None without one).

        The test predictions are kept for the plots.
        """
        task = self.loss.task
        self._test_predicted = None
        if not len(self.data.X_test):
            return {f"test_{figure.key}": None for figure in task.figures}
        predicted = predictions(self.model, self.loss, self.data.X_test, self.data.target_scaling)
        self._test_predicted = predicted
        return {f"test_{key}": value for key, value in task.scores(self.data.dataset.y_test, predicted).items()}

    def _report(self, history, scores):
        """The results on standard output: how early stopping ended the run, the figures, the model file."""
        stopping = self._stopping()
        if stopping is not None:
            print(f"early stopping: {stopping.text(len(history), self.settings['epochs'])}")
        task = self.loss.task
        trained = task.figures_text(scores, "train")
        if trained:
            n = len(self._training_rows())
            print(f"train {trained} after {len(history)} epochs, on the {n:,} training rows "
                  "(the saved model, in inference mode)")
        tested = task.figures_text(scores, "test")
        if tested:
            print(f"test {tested} on {len(self.data.X_test):,} held-out samples")
        print(f"model written to {self.outputs.model}")

    def _stopping(self):
        """What early stopping did, or None when the run has none."""
        e = self.early_stopping
        if e is None or e.best_epoch is None:
            return None
        return StoppingReport(e.monitor, e.patience, e.best_epoch, e.best, e.stopped_epoch)

    def _draw_plots(self, history):
        """Every plot of the run; one that cannot be drawn is a warning, and the others are still drawn."""
        if self.outputs.plots is None:
            return
        folder = self.outputs.plots
        written, owned = draw_plots(folder, lambda: self._plot_jobs(history), debug=self.args.debug)
        remove_stale_plots(folder, written, owned=owned)
        if written:
            print(f"plots written to {folder}: {', '.join(written)}")

    def _plot_jobs(self, history):
        """``[(file name, draw(path)), ...]`` for this run, and the names the command owns in a plots folder."""
        from handgrad.report.plots import (
            PLOT_FILES,
            HeldOut,
            plot_first_layer_weights,
            plot_held_out,
            plot_learning_curves,
        )

        d = self.data.dataset
        title = f"{d.name}, {describe(self.model)}"
        stopping = self._stopping()
        jobs = [(PLOT_FILES["learning_curves"], lambda path: plot_learning_curves(
            history.records, path, title=title, kept_epoch=stopping and stopping.best_epoch,
            note=stopping and stopping.plot_note()))]
        if self._test_predicted is not None:
            held_out = HeldOut(d.y_test, self._test_predicted, self._class_names())
            for plot in self.loss.task.test_plots:
                jobs.append((PLOT_FILES[plot], lambda path, plot=plot: plot_held_out(
                    plot, held_out, path, title=f"{title}, test split")))
        first = next((layer for layer in self.model.layers if isinstance(layer, hg.Dense)), None)
        if first is not None and d.image_shape is not None and min(d.image_shape) >= MIN_WEIGHT_IMAGE_SIDE:
            jobs.append((PLOT_FILES["first_layer_weights"], lambda path: plot_first_layer_weights(
                to_numpy(first.W), d.image_shape, path, title=title)))
        return jobs, PLOT_FILES.values()


@dataclass
class StoppingReport:
    """What early stopping did in a run: the figure it watched, and which epoch's weights the model has."""

    monitor: str
    patience: int
    best_epoch: int
    best: float
    stopped_epoch: int = None

    def text(self, epochs_run, epochs_planned):
        """The console's sentence: why the run ended, and which weights the model keeps."""
        kept = f"the model has the weights of epoch {self.best_epoch} ({self.monitor} {self.best:.4g}, its best)"
        if self.stopped_epoch is not None:
            return (f"stopped after epoch {self.stopped_epoch} of {epochs_planned}, as {self.monitor} had not "
                    f"improved for {self.patience} epochs; {kept}")
        return f"ran all {epochs_run} epochs (patience {self.patience} never ran out); {kept}"

    def plot_note(self):
        """The learning curves' line about it."""
        if self.stopped_epoch is not None:
            return (f"early stopping after epoch {self.stopped_epoch}: no better {self.monitor} for "
                    f"{self.patience} epochs; weights of epoch {self.best_epoch} kept")
        return f"early stopping never triggered; weights of epoch {self.best_epoch} (best {self.monitor}) kept"


def _threads(n):
    from contextlib import nullcontext

    if n is None:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n)


def status(message):
    print(printable(message), file=sys.stderr, flush=True)     # names from the data, escaped


def run_train(args):
    return Run(args).execute()
