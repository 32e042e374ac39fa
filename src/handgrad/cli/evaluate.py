"""``handgrad evaluate``: the figures of the model's task on a labelled dataset.

Classification: accuracy, per-class precision and recall, confusion matrix.
Regression: R², RMSE and MAE, over all targets and per target.  Multilabel:
label and subset accuracy, and per label accuracy, precision and recall.
"""

import argparse
from pathlib import Path

import numpy as np

from handgrad.cli.common import (
    TargetScaling,
    check_writable,
    class_names,
    describe,
    labels_in_model_order,
    model_features,
    model_targets,
    model_task,
    predictions,
    remove_stale_plots,
)
from handgrad.errors import DataError
from handgrad.io.modelfile import load_model

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
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    from handgrad.report.metrics import confusion_matrix, format_report

    if args.plots:
        check_writable(args.plots, "--plots", folder=True)
    loaded = load_model(args.model)
    task = model_task(loaded)
    scaling = TargetScaling.of_model(loaded)
    trained = _trained_data(loaded.settings)
    spec = args.dataset or trained.get("dataset", "digits")
    same = _same_dataset(spec, trained.get("dataset"))
    target = args.target if args.target is not None else (trained.get("target") if same else None)
    if task != "classification" and target is None and spec.lower().endswith(".csv"):
        target = ",".join(map(str, loaded.classes))     # the model's outputs are named after its target columns
    dataset = load_dataset(spec, data_dir=args.data_dir or trained.get("data_dir"), target=target,
                           test_fraction=trained.get("test_fraction", 0.2) if same else 0.2,
                           parts=SPLIT_PARTS[args.split], task=task)
    raw, y = _split(dataset, args.split)
    source = f"{spec} ({args.split} split)"
    if task != "classification":
        y = model_targets(loaded, dataset, y, source)      # first: the wrong targets also change the features
        X = model_features(loaded, raw, source)
        predicted = predictions(loaded.model, loaded.loss, X, scaling)
        _print_header(args, loaded, source, len(y))
        _report_values(args, loaded, dataset, task, y, predicted)
        return 0
    X = model_features(loaded, raw, source)
    y = labels_in_model_order(y, dataset.classes.tolist(), loaded.classes, source)
    n_classes = loaded.model.n_outputs
    predicted = loaded.model.predict(X)
    cm = confusion_matrix(y, predicted, n_classes)
    names = class_names(loaded)
    _print_header(args, loaded, source, len(y))
    print(format_report(cm, names))
    if args.plots:
        _plots(Path(args.plots), cm, names, f"{dataset.name} {args.split} split, {describe(loaded.model)}",
               raw, y, predicted, dataset.image_shape)
    return 0


def _print_header(args, loaded, source, n):
    loss = "none stored" if loaded.loss is None else loaded.loss.config()["type"]
    print(f"model {args.model}: {describe(loaded.model)}, loss {loss}")
    print(f"data {source}: {n} samples")


def _report_values(args, loaded, dataset, task, y, predicted):
    """A regressor's or multilabel model's report, and with --plots its figure."""
    from handgrad.report.metrics import (
        format_multilabel_report,
        format_regression_report,
        multilabel_scores,
        regression_scores,
    )
    from handgrad.report.plots import PLOT_FILES, plot_label_scores, plot_predicted_vs_true

    names = [str(c) for c in loaded.classes]
    if task == "regression":
        scores = regression_scores(y, predicted)
        print(format_regression_report(scores, names))
    else:
        scores = multilabel_scores(y, predicted)
        print(format_multilabel_report(scores, names))
    if not args.plots:
        return
    folder = Path(args.plots)
    title = f"{dataset.name} {args.split} split, {describe(loaded.model)}"
    if task == "regression":
        written = PLOT_FILES["predicted_vs_true"]
        plot_predicted_vs_true(y, predicted, names, folder / written, title=title)
    else:
        written = PLOT_FILES["label_scores"]
        plot_label_scores(scores, names, folder / written, title=title)
    print(f"{'predicted against true values' if task == 'regression' else 'per-label scores'} plotted in "
          f"{folder / written}")
    remove_stale_plots(folder, [written], owned=EVALUATE_PLOTS)


MAX_MISCLASSIFIED = 36          # images drawn in misclassified.png: six rows of six stay legible
# The IDX files each split needs: evaluating on the test split reads (and fetches) only the test files.
SPLIT_PARTS = {"test": ("test",), "train": ("train",), "all": ("train", "test")}
# The plot files this command writes, one set per task; the others of a folder it writes into are stale.
EVALUATE_PLOTS = ("confusion_matrix.png", "misclassified.png", "predicted_vs_true.png", "label_scores.png")


def _plots(folder, cm, names, title, raw, y, predicted, image_shape):
    """confusion_matrix.png, and for images misclassified.png; stale ones of this command removed."""
    from handgrad.report.plots import PLOT_FILES, plot_confusion_matrix, plot_misclassified

    written = [PLOT_FILES["confusion_matrix"]]
    plot_confusion_matrix(cm, names, folder / written[-1], title=title)
    print(f"confusion matrix plot written to {folder / written[-1]}")
    if image_shape is not None:
        wrong = np.flatnonzero(predicted != y)
        written.append(PLOT_FILES["misclassified"])
        plot_misclassified(raw[wrong], [names[i] for i in y[wrong]], [names[i] for i in predicted[wrong]],
                           image_shape, folder / written[-1], max_images=MAX_MISCLASSIFIED, title=title)
        print(f"{len(wrong)} misclassified images, {min(len(wrong), MAX_MISCLASSIFIED)} of them drawn in "
              f"{folder / written[-1]}")
    remove_stale_plots(folder, written, owned=EVALUATE_PLOTS)


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
