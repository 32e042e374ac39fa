"""``handgrad evaluate``: the figures of the model's task on a labelled dataset.

Classification: accuracy, per-class precision and recall, confusion matrix.
Regression: R², RMSE and MAE, over all targets and per target.  Multilabel:
label and subset accuracy, and per label accuracy, precision and recall.
"""

from pathlib import Path

import numpy as np

from handgrad import tasks
from handgrad.cli import console
from handgrad.cli.common import (
    TargetScaling,
    check_writable,
    class_names,
    columns_not_read,
    describe,
    draw_plots,
    in_model_order,
    model_features,
    predictions,
    refuse_non_finite,
    remove_stale_plots,
)
from handgrad.cli.unused_flags import warn_unused
from handgrad.errors import DataError
from handgrad.io.modelfile import load_model
from handgrad.io.text import printable, printable_labels

EXAMPLES = """\
examples:
  handgrad evaluate handgrad-out/model.npz                  the model's own held-out test set
  handgrad evaluate model.npz --dataset mnist --data-dir ../shared/data
  handgrad evaluate model.npz --dataset new-rows.csv --split all --plots report/

Without --dataset, the model is evaluated on the test split of the data it was
trained on (the same split that train reported).  Labels of another file must be
among the model's classes.  With --plots, image data also get misclassified.png,
a grid of misclassified images with their true and predicted classes.

A regressor (--loss squared-error or poisson) prints R², RMSE and MAE (in the
targets' units) and plots predicted_vs_true.png; a multilabel model prints label
and subset accuracy and plots label_scores.png.  Their target columns default
to the ones the model was trained on.
"""


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "evaluate", parents=parents, help="report a model's accuracy (or R² and RMSE) on a labelled dataset",
        description="Evaluate a model file: accuracy, per-class precision/recall and the confusion matrix; "
                    "R², RMSE and MAE for a regressor; label and subset accuracy for a multilabel model.",
        epilog=EXAMPLES, formatter_class=console.HelpFormatter)
    p.add_argument("model", metavar="MODEL", help="model (or checkpoint) file written by handgrad train")
    p.add_argument("--dataset", metavar="NAME|PATH",
                   help="digits, mnist, fashion-mnist, PATH.csv or PATH.npz (default: the training data)")
    p.add_argument("--data-dir", metavar="DIR", help="folder holding mnist/ and fashion-mnist/")
    p.add_argument("--target", metavar="COLUMN[,COLUMN...]",
                   help="CSV label column(s) (default: the training run's; else the last column, or for a "
                        "regressor or multilabel model the columns named as its outputs)")
    p.add_argument("--split", choices=("test", "train", "all"), default="test",
                   help="which part of the dataset to evaluate on (default: test)")
    p.add_argument("--plots", metavar="DIR",
                   help="also write confusion_matrix.png (and for images misclassified.png) into DIR; "
                        "predicted_vs_true.png for a regressor, label_scores.png for a multilabel model")
    p.set_defaults(run=run_evaluate)


def run_evaluate(args):
    from handgrad.data.loaders import load_dataset

    if args.plots:
        check_writable(args.plots, "--plots", folder=True)
    warn_unused("evaluate", args)
    loaded = load_model(args.model)
    task = tasks.of(loaded.loss)
    trained = _trained_data(loaded.settings)
    spec = args.dataset or trained.get("dataset", "digits")
    same = _same_dataset(spec, trained.get("dataset"))
    target = args.target if args.target is not None else (trained.get("target") if same else None)
    if not task.label_column and target is None and spec.lower().endswith(".csv"):
        target = ",".join(map(str, loaded.classes))     # the model's outputs are named after its target columns
    dataset = load_dataset(spec, data_dir=args.data_dir or trained.get("data_dir"), target=target,
                           test_fraction=trained.get("test_fraction", 0.2) if same else 0.2,
                           parts=SPLIT_PARTS[args.split], task=task, drop=columns_not_read(spec, loaded, target))
    raw, y = _split(dataset, args.split)
    source = f"{spec} ({args.split} split)"
    # The targets first: targets that do not fit the model also explain features that do not.
    y = task.model_targets(y, dataset.classes.tolist(), loaded.classes, source)
    raw = in_model_order(loaded, dataset, raw, source)
    X = model_features(loaded, raw, source, images=dataset.kind == "image")
    with np.errstate(all="ignore"):        # outputs that overflow are refused below, in one line
        predicted = predictions(loaded.model, loaded.loss, X, TargetScaling.of_model(loaded))
    refuse_non_finite(loaded, X, args.model, source, predicted)
    names = printable_labels(class_names(loaded))        # text from the file, escaped for the terminal
    _print_header(args, loaded, source, len(y))
    print(task.summary(y, predicted, names))
    if args.plots:
        held_out = (y, predicted, names, raw, dataset.image_shape)
        _plots(args, task, held_out, Path(args.plots), f"{dataset.name} {args.split} split, {describe(loaded.model)}")
    return 0


def _print_header(args, loaded, source, n):
    loss = "none stored" if loaded.loss is None else loaded.loss.config()["type"]
    print(printable(f"model {args.model}: {describe(loaded.model)}, loss {loss}"))
    print(printable(f"data {source}: {n} samples"))


MAX_MISCLASSIFIED = 36          # images drawn in misclassified.png: six rows of six stay legible
# The IDX files each split needs: evaluating on the test split reads (and fetches) only the test files.
SPLIT_PARTS = {"test": ("test",), "train": ("train",), "all": ("train", "test")}


def _plots(args, task, held_out, folder, title):
    """The task's plots of ``held_out`` (the arguments of :class:`~handgrad.report.plots.HeldOut`), after the
    report; one that cannot be drawn is a warning.  This command's plots that did not apply are removed as stale.
    """
    lines = []

    def jobs():
        from handgrad.report.plots import PLOT_FILES, HeldOut, plot_held_out

        data = HeldOut(*held_out)

        def drawer(plot):
            def draw(path):
                line = plot_held_out(plot, data, path, title=title, max_images=MAX_MISCLASSIFIED)
                if line is None:
                    return False            # does not apply to these data: nothing drawn
                lines.append(line)
            return draw

        owned = {PLOT_FILES[p] for other in tasks.all_tasks() for p in (*other.test_plots, *other.evaluate_plots)}
        return [(PLOT_FILES[plot], drawer(plot)) for plot in (*task.test_plots, *task.evaluate_plots)], owned

    written, owned = draw_plots(folder, jobs, debug=args.debug)
    remove_stale_plots(folder, written, owned=owned)
    for line in lines:
        print(line)


def _trained_data(settings):
    """Where the model's training data came from, as far as its (untrusted) settings say so clearly."""
    known = {key: settings.get(key) for key in ("dataset", "data_dir", "target") if isinstance(settings.get(key), str)}
    fraction = settings.get("test_fraction")
    if isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and 0 <= fraction < 1:
        known["test_fraction"] = fraction
    return known


def _same_dataset(spec, trained_spec):
    if trained_spec is None:
        return False
    if spec.lower() == str(trained_spec).lower():
        return True
    return Path(spec).expanduser().absolute() == Path(trained_spec)


def _split(dataset, split):
    if split == "train":
        return dataset.X_train, dataset.y_train
    if split == "test":
        if not len(dataset.X_test):
            raise DataError("the dataset has no test split; pass --split all or --split train")
        return dataset.X_test, dataset.y_test
    return np.concatenate([dataset.X_train, dataset.X_test]), np.concatenate([dataset.y_train, dataset.y_test])
