"""``handgrad predict``: labels and class probabilities for unlabelled samples, as CSV."""

import argparse
import csv
import io
import sys

from handgrad.cli.common import check_writable, model_features, write_text
from handgrad.io.modelfile import load_model

EXAMPLES = """\
examples:
  handgrad predict handgrad-out/model.npz samples.csv --out predictions.csv
  handgrad predict model.npz t10k-images-idx3-ubyte.gz --out mnist-test.csv
  handgrad predict model.npz rows.npz                 CSV on standard output

The output has a header and one row per sample: the predicted label, then the
probability of each class (columns prob_<class>).  A CSV input is matched to
the training columns by name (extra columns such as the label are ignored).
--out is written atomically: an existing file is replaced only by a complete
new one.
"""


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "predict", parents=parents, help="predict labels and probabilities for new samples",
        description="Predict the class of each sample in INPUT (.csv, .npz with X, or IDX images).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    raw = load_features(args.input, feature_names=names if args.input.lower().endswith(".csv") else None)
    X = model_features(loaded, raw, args.input)
    proba = loaded.model.predict_proba(X)
    text = _csv(loaded.classes, proba)
    if args.out:
        write_text(args.out, text)
        print(f"{len(proba)} predictions written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _csv(classes, proba):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["label"] + [f"prob_{c}" for c in classes])
    best = proba.argmax(axis=1)
    for label, row in zip(best, proba):
        writer.writerow([classes[label]] + [f"{p:.6g}" for p in row])
    return buffer.getvalue()
