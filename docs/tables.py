"""Write every table the README and docs/cli.md train on, as CSV files with a header.

    python docs/tables.py            # into tables/ (which git ignores)
    python docs/tables.py DIR        # into DIR

From scikit-learn's bundled data: ``diabetes.csv`` (442 rows, ten features
and the disease score ``target``, for regression), ``labels.csv`` (1,000
rows of ``make_multilabel_classification``: twenty features ``x0``..``x19``
and five 0/1 labels ``l0``..``l4``), and, through
``benchmarks/small_tables.py``'s export, ``iris.csv``, ``wine.csv`` and
``breast-cancer.csv`` (label columns ``species``, ``cultivar``,
``diagnosis``).  Numbers are written with 17 significant digits, so they
read back exactly.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_tables(folder):
    """Write the five tables into ``folder``; return their paths."""
    import numpy as np
    from sklearn.datasets import load_diabetes, make_multilabel_classification

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from small_tables import export
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    d = load_diabetes()
    np.savetxt(folder / "diabetes.csv", np.column_stack([d.data, d.target]), delimiter=",",
               header=",".join(d.feature_names + ["target"]), comments="", fmt="%.17g")
    X, Y = make_multilabel_classification(n_samples=1000, n_features=20, n_classes=5, random_state=0)
    np.savetxt(folder / "labels.csv", np.column_stack([X, Y]), delimiter=",",
               header=",".join([f"x{i}" for i in range(20)] + [f"l{i}" for i in range(5)]), comments="", fmt="%.17g")
    written = [folder / "diabetes.csv", folder / "labels.csv"]
    return written + [path for path, _ in export(folder).values()]


def main(argv):
    if len(argv) > 1 or argv[:1] and argv[0].startswith("-"):
        sys.exit("usage: python docs/tables.py [DIR]")
    for path in write_tables(argv[0] if argv else "tables"):
        print(path)


if __name__ == "__main__":
    main(sys.argv[1:])
