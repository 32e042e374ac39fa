"""handgrad's MLPClassifier/MLPRegressor against scikit-learn's, on scikit-learn's small data sets.

For each data set, solver and seed, both estimators get the same split
(75/25, stratified for classification, ``random_state=0``), the same
``StandardScaler`` on X (and, for the regression data, on y), the same
parameters and the same ``random_state``.  The table gives the mean test
accuracy (classification) or R² (regression) over the seeds, the mean fit
time of each, and their ratio, scikit-learn's time over handgrad's (above 1:
handgrad is faster).  Fits alternate between the two libraries, seed by
seed, so both see the same machine load; on a shared machine only the
ratios mean much.

    python benchmarks/sklearn_compare.py                      # 5 seeds, both solvers, all data sets
    python benchmarks/sklearn_compare.py --seeds 2 --datasets iris wine --solvers lbfgs
    python benchmarks/sklearn_compare.py --float32            # also handgrad with dtype="float32"
    python benchmarks/sklearn_compare.py --numpy              # also handgrad without its compiled kernels

Prints the table (markdown) and writes it with the raw numbers to
``benchmarks/results/run-sklearn-<UTC time>.{md,json}`` (ignored by git);
``--record NAME`` writes ``results/NAME.{md,json}`` instead, replacing a
tracked result such as ``sklearn_compare`` on purpose.  BLAS runs on one
thread (``--threads``) for both.
"""

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SklearnClassifier
from sklearn.neural_network import MLPRegressor as SklearnRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import handgrad as hg  # noqa: E402
from handgrad import _compiled  # noqa: E402

DATASETS = {
    "iris": (load_iris, "classification"),
    "wine": (load_wine, "classification"),
    "breast_cancer": (load_breast_cancer, "classification"),
    "digits": (load_digits, "classification"),
    "diabetes": (load_diabetes, "regression"),
}
# scikit-learn's defaults throughout (max_iter=200: Adam stops there on some sets, with a ConvergenceWarning).
SETTINGS = {"adam": dict(solver="adam"), "lbfgs": dict(solver="lbfgs")}


def machine():
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        return f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs"
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()


def blas():
    """The BLAS NumPy calls, as threadpoolctl reports it: library, version and kernel (architecture)."""
    from threadpoolctl import threadpool_info

    found = [f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')} kernels)"
             for p in threadpool_info() if p.get("user_api") == "blas"]
    return ", ".join(found) or "unknown"


def load_average():
    """The 1-minute load average, or None where the system does not give one."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def build(library, task, solver, seed, float32=False):
    params = dict(SETTINGS[solver], random_state=seed)
    if library == "handgrad":
        estimator = (hg.MLPClassifier if task == "classification" else hg.MLPRegressor)(
            **params, **({"dtype": "float32"} if float32 else {}))
    else:
        estimator = (SklearnClassifier if task == "classification" else SklearnRegressor)(**params)
    pipe = make_pipeline(StandardScaler(), estimator)
    return pipe if task == "classification" else TransformedTargetRegressor(pipe, transformer=StandardScaler())


@contextlib.contextmanager
def numpy_only(active):
    """While active, handgrad's automatic choice (the estimators') runs its NumPy code, as with
    ``HANDGRAD_NO_COMPILED=1``, in this same process: the two alternate seed by seed."""
    saved = _compiled._kernels
    if active:
        _compiled._kernels = None
    try:
        yield
    finally:
        _compiled._kernels = saved


def run(datasets, solvers, seeds, float32, numpy=False):
    rows = []
    for name in datasets:
        load, task = DATASETS[name]
        X, y = load(return_X_y=True)
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=0.25, random_state=0, stratify=y if task == "classification" else None)
        contenders = (["handgrad", "scikit-learn"] + (["handgrad-float32"] if float32 else [])
                      + (["handgrad-numpy"] if numpy else []))
        for solver in solvers:
            results = {c: {"score": [], "seconds": []} for c in contenders}
            for seed in range(seeds):
                order = contenders if seed % 2 == 0 else contenders[::-1]
                for contender in order:
                    model = build("scikit-learn" if contender == "scikit-learn" else "handgrad", task, solver, seed,
                                  float32=contender == "handgrad-float32")
                    with numpy_only(contender == "handgrad-numpy"):
                        start = time.perf_counter()
                        model.fit(X_train, y_train)
                        results[contender]["seconds"].append(time.perf_counter() - start)
                    results[contender]["score"].append(float(model.score(X_test, y_test)))
            rows.append({"dataset": name, "task": task, "solver": solver, "results": results})
            print(f"  {name:14s} {solver:6s} done", file=sys.stderr)
    return rows


def table(rows, seeds):
    lines = ["| data set | solver | metric | handgrad | scikit-learn | handgrad fit (s) | scikit-learn fit (s) | "
             "speed-up |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ours, theirs = row["results"]["handgrad"], row["results"]["scikit-learn"]
        speedup = np.mean(np.array(theirs["seconds"]) / np.array(ours["seconds"]))
        metric = "accuracy" if row["task"] == "classification" else "R²"
        lines.append(f"| {row['dataset']} | {row['solver']} | {metric} | {np.mean(ours['score']):.4f} | "
                     f"{np.mean(theirs['score']):.4f} | {np.mean(ours['seconds']):.3f} | "
                     f"{np.mean(theirs['seconds']):.3f} | {speedup:.2f}× |")
        for contender, label in (("handgrad-float32", "handgrad float32"), ("handgrad-numpy", "handgrad, NumPy only")):
            if contender in row["results"]:
                other = row["results"][contender]
                speedup = np.mean(np.array(theirs["seconds"]) / np.array(other["seconds"]))
                lines.append(f"| {row['dataset']} | {row['solver']} ({label}) | {metric} | "
                             f"{np.mean(other['score']):.4f} | | {np.mean(other['seconds']):.3f} | | {speedup:.2f}× |")
    return "\n".join(lines) + f"\n\nMeans over {seeds} seeds; speed-up is scikit-learn's fit time over handgrad's, " \
                              "per seed, averaged."


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=list(DATASETS))
    parser.add_argument("--solvers", nargs="+", choices=sorted(SETTINGS), default=["adam", "lbfgs"])
    parser.add_argument("--float32", action="store_true", help="also time handgrad with dtype='float32'")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for both libraries")
    parser.add_argument("--numpy", action="store_true",
                        help="also time handgrad without its compiled kernels (as HANDGRAD_NO_COMPILED=1)")
    parser.add_argument("--record", metavar="NAME",
                        help="write results/NAME.{md,json}, replacing a tracked result such as sklearn_compare on "
                             "purpose (default: a new results/run-sklearn-<UTC time>.{md,json}, ignored by git)")
    args = parser.parse_args(argv)
    if args.record is not None and (not args.record or "/" in args.record or args.record.startswith(".")):
        parser.error(f"--record takes a plain file name such as sklearn_compare, got {args.record!r}")
    warnings.simplefilter("ignore", ConvergenceWarning)
    print(f"Machine: {machine()}; BLAS threads: {args.threads}; numpy {np.__version__}", file=sys.stderr)
    with threadpool_limits(limits=args.threads, user_api="blas"):
        load = [load_average()]
        rows = run(args.datasets, args.solvers, args.seeds, args.float32, args.numpy)
        load.append(load_average())
    text = (f"Machine: {machine()}, BLAS on {args.threads} thread(s): {blas()}; load average {load[0]} at the start, "
            f"{load[1]} at the end.\n\n{table(rows, args.seeds)}\n")
    print(text, end="")
    name = args.record or f"run-sklearn-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    results = Path(__file__).resolve().parent / "results"
    (results / f"{name}.md").write_text(text)
    (results / f"{name}.json").write_text(json.dumps({"machine": machine(), "threads": args.threads, "blas": blas(),
                                                       "load_average": load, "seeds": args.seeds, "rows": rows},
                                                      indent=1))
    print(f"written to {results / name}.md and .json", file=sys.stderr)


if __name__ == "__main__":
    main()
