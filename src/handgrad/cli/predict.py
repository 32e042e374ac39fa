"""``handgrad predict``: labels and class probabilities (or predicted values) for unlabelled samples, as CSV."""

import sys
from pathlib import Path

import numpy as np

from handgrad import tasks
from handgrad.cli import console
from handgrad.cli.common import (
    TargetScaling,
    check_writable,
    class_names,
    model_features,
    predictions,
    refuse_non_finite,
    write_text,
)
from handgrad.errors import DataError
from handgrad.io.modelfile import load_model
from handgrad.io.text import printable, printable_labels

EXAMPLES = """\
examples:
  handgrad predict handgrad-out/model.npz samples.csv --out predictions.csv
  handgrad predict model.npz t10k-images-idx3-ubyte.gz --out mnist-test.csv
  handgrad predict model.npz rows.npz                 CSV on standard output

The output has a header and one row per sample: the predicted label (and its
name, for datasets whose labels are codes such as Fashion-MNIST's), then the
probability of each class (columns prob_<class>).  A regressor writes one column
per target, named as in training, holding the predicted value (in the target's
units); a multilabel model writes one 0/1 column per label, then the
probability of each label (prob_<label>).  A CSV input is matched to the
training columns by name (extra columns such as the label are ignored).
--out is written atomically: an existing file is replaced only by a complete
new one.
"""


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "predict", parents=parents, help="predict labels and probabilities (or values) for new samples",
        description="Predict the class of each sample in INPUT (.csv, .npz with X, or IDX images).",
        epilog=EXAMPLES, formatter_class=console.HelpFormatter)
    p.add_argument("model", metavar="MODEL", help="model (or checkpoint) file written by handgrad train")
    p.add_argument("input", metavar="INPUT", help="samples: PATH.csv, PATH.npz (array X) or an IDX images file")
    p.add_argument("--out", metavar="PRED.csv", help="write the predictions here (default: standard output)")
    p.set_defaults(run=run_predict)


def run_predict(args):
    from handgrad.data.loaders import load_features

    if args.out:
        check_writable(args.out, "--out")
    loaded = load_model(args.model)
    names = loaded.metadata.get("extra", {}).get("feature_names")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        names = None                     # no names (or unusable ones): take a CSV's columns in order
    _check_format(args.input, loaded, names)
    raw = load_features(args.input, feature_names=names if args.input.lower().endswith(".csv") else None)
    X = model_features(loaded, raw, args.input, images=Path(args.input).suffix.lower() not in (".csv", ".npz"))
    task = tasks.of(loaded.loss)
    with np.errstate(all="ignore"):        # outputs that overflow are refused below, in one line
        predicted = predictions(loaded.model, loaded.loss, X, TargetScaling.of_model(loaded))
        probabilities = task.probabilities(loaded.model, loaded.loss, X)
    refuse_non_finite(loaded, X, args.model, args.input, predicted, probabilities)
    # Labels and names come from the model file: escaped, so the CSV is valid UTF-8 and inert on a terminal.
    text = task.prediction_table(printable_labels(loaded.classes), printable_labels(class_names(loaded)), predicted,
                                 probabilities)
    if args.out:
        write_text(args.out, text)
        print(f"{len(X)} predictions written to {printable(args.out)}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _check_format(path, loaded, feature_names):
    """Refuse, naming what this model reads, an input that is neither .csv, .npz nor IDX (or IDX for a table)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".npz"):
        return
    extra = loaded.metadata.get("extra", {})
    kind = extra.get("kind") or ("tabular" if feature_names else None)
    if kind != "tabular" and _looks_like_idx(path):
        return
    raise DataError(f"{path} is not a file this model reads; it reads {_formats(loaded, feature_names, kind, extra)}")


def _looks_like_idx(path):
    """True for a gzip or raw IDX file by its first bytes (or an unreadable path, which the reader reports)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return True
    return head in (b"\x1f\x8b", b"\x00\x00")


def _formats(loaded, feature_names, kind, extra):
    """The inputs a model accepts, in words, for an error message."""
    width = loaded.model.n_features
    if kind == "tabular":
        if feature_names:
            shown = ", ".join(feature_names[:6]) + (", ..." if len(feature_names) > 6 else "")
            return f".csv with the columns {shown} (others are ignored), or .npz with an array X of {width} columns"
        return f".csv or .npz (array X) with {width} columns"
    shape = extra.get("image_shape")
    images = (f"{shape[0]}x{shape[1]} images" if isinstance(shape, list) and len(shape) == 2
              and all(isinstance(s, int) for s in shape) else f"images of {width} pixels")
    return (f"an IDX file of {images} (such as t10k-images-idx3-ubyte.gz), .npz with an array X of "
            f"{width} columns, or .csv with {width} columns")
