"""The ``file`` preset on small tables, against scikit-learn's MLPClassifier on the same splits.

    python benchmarks/small_tables.py                 # the table in docs/cli.md, about 25 s on 2 cores
    python benchmarks/small_tables.py --export DIR    # only write iris.csv, wine.csv, breast-cancer.csv

Three of scikit-learn's bundled datasets are written as CSV files (label
column last, named ``species``, ``cultivar`` and ``diagnosis``), then each
is trained with ``handgrad train --dataset FILE --target COLUMN --seed S``
for seeds 0-4: the ``file`` preset, every setting left to it.  handgrad's
test split does not depend on the seed (split seed 0, a fifth of each
class), so scikit-learn's ``MLPClassifier`` is fitted on the same training
rows and scored on the same test rows, with its defaults and
``random_state=S``, once on the raw columns and once after
``StandardScaler`` (which handgrad applies to every table).  Printed: the
mean test accuracy over the seeds, and the lowest and highest.
"""

import argparse
import contextlib
import csv
import io
import platform
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

SEEDS = range(5)
# name -> (scikit-learn loader, label column); labels are written as the class names
TABLES = {
    "iris": ("load_iris", "species"),
    "wine": ("load_wine", "cultivar"),
    "breast-cancer": ("load_breast_cancer", "diagnosis"),
}


def export(folder):
    """Write each table as FOLDER/NAME.csv; return ``{name: (path, label column)}``."""
    import sklearn.datasets

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, (loader, target) in TABLES.items():
        bunch = getattr(sklearn.datasets, loader)()
        path = folder / f"{name}.csv"
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([_column(c) for c in bunch.feature_names] + [target])
            for row, label in zip(bunch.data, bunch.target):
                writer.writerow([repr(float(v)) for v in row] + [bunch.target_names[label]])
        written[name] = (path, target)
    return written


def _column(name):
    """``"sepal length (cm)"`` -> ``"sepal_length_cm"``: header names without spaces or brackets."""
    return "_".join(name.replace("(", " ").replace(")", " ").replace("/", " ").split())


def handgrad_accuracy(path, target, seed, folder, flags=()):
    """Test accuracy of ``handgrad train`` with the file preset (plus ``flags``) and ``--seed seed``."""
    from handgrad.cli import main
    from handgrad.io.modelfile import load_model

    out = Path(folder) / f"{path.stem}-{seed}.npz"
    chatter = io.StringIO()                  # the command's own report; the table below is what counts
    with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
        code = main(["train", "--dataset", str(path), "--target", target, "--seed", str(seed), "--out", str(out),
                     "--no-plots", "--no-progress", "--threads", "1", *flags])
    if code != 0:
        raise SystemExit(f"handgrad train failed on {path} with exit code {code}:\n{chatter.getvalue()}")
    return load_model(out).metadata["extra"]["test_accuracy"]


def sklearn_accuracy(path, target, seed, scaled):
    """Test accuracy of ``MLPClassifier()`` (defaults, ``random_state=seed``) on handgrad's split of ``path``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from handgrad.data.loaders import load_dataset

    data = load_dataset(path, target=target)
    model = MLPClassifier(random_state=seed)
    if scaled:
        model = make_pipeline(StandardScaler(), model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)   # its 200-epoch limit; the score is what counts
        model.fit(data.X_train, data.y_train)
    return float(model.score(data.X_test, data.y_test))


def summary(values):
    return f"{statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import os

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", metavar="DIR", help="only write the CSV files into DIR")
    parser.add_argument("--flags", default="", help="extra flags for handgrad train, e.g. '--epochs 50'")
    args = parser.parse_args(argv)
    if args.export:
        for path, target in export(args.export).values():
            print(f"{path}  (label column {target})")
        return 0
    with tempfile.TemporaryDirectory() as folder:
        tables = export(folder)
        rows = []
        for name, (path, target) in tables.items():
            ours = [handgrad_accuracy(path, target, s, folder, args.flags.split()) for s in SEEDS]
            raw = [sklearn_accuracy(path, target, s, scaled=False) for s in SEEDS]
            scaled = [sklearn_accuracy(path, target, s, scaled=True) for s in SEEDS]
            rows.append((name, summary(ours), summary(raw), summary(scaled)))
    print(f"test accuracy, mean (lowest-highest) over seeds {SEEDS[0]}-{SEEDS[-1]}; {machine()}")
    print("| table | handgrad, file preset | scikit-learn MLPClassifier() | StandardScaler + MLPClassifier() |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
