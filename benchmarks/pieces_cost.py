"""What each piece costs per epoch on the MNIST preset's network (its hidden layers, SGD with momentum, batch 128).

    python benchmarks/pieces_cost.py [--rows 20000] [--epochs 2] [--rounds 3] [--record NAME]

Every variant trains the same network on the same rows in one process, one
after another and alternating over ``--rounds`` rounds; each variant's time
is the median over rounds of its seconds per epoch (after a warm-up fit), so
the ratios to the plain ReLU network compare times measured side by side.
Variants: the plain network; Dropout(0.2) after each hidden activation;
BatchNorm before each hidden activation; both; and the plain network with
each registered activation in place of ReLU.

Results go to ``benchmarks/results/run-pieces-<UTC time>.{json,md}`` (ignored
by git); ``--record NAME`` writes ``results/NAME.{json,md}`` on purpose.
Run it alone: another busy process on the machine skews every ratio.
"""

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import handgrad as hg  # noqa: E402
from bench import machine  # noqa: E402
from handgrad.cli.presets import PRESETS  # noqa: E402
from handgrad.cli.settings import build_model  # noqa: E402
from idx import load_mnist  # noqa: E402

HIDDEN = tuple(PRESETS["mnist"]["hidden"])
RECIPE = dict(batch_size=128, l2=5e-5)


def network(activation="relu", dropout=0.0, batch_norm=False, seed=0):
    """The MNIST preset's network, with the optional pieces where ``handgrad train`` puts them (its own builder)."""
    settings = {"activation": activation, "hidden": list(HIDDEN), "dropout": dropout, "batch_norm": batch_norm,
                "input_dropout": 0.0, "seed": seed}
    return build_model(settings, 784, 10, np.float32)


def variants():
    base = {"relu": dict(), "relu + dropout 0.2": dict(dropout=0.2), "relu + batch norm": dict(batch_norm=True),
            "relu + batch norm + dropout 0.2": dict(batch_norm=True, dropout=0.2)}
    for name in hg.activations():
        if name != "relu":
            base[name] = dict(activation=name)
    return base


def seconds_per_epoch(settings, X, y, epochs):
    model = network(**settings)
    optimizer = hg.SGD(0.05, momentum=0.9)
    start = time.perf_counter()
    hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=optimizer, epochs=epochs, seed=0, **RECIPE)
    return (time.perf_counter() - start) / epochs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000, help="MNIST training rows per epoch (default 20000)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed fit (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is kept (default 3)")
    parser.add_argument("--record", metavar="NAME", help="write results/NAME.{json,md} instead of a run-<time> file")
    args = parser.parse_args(argv)
    X, y, _, _ = load_mnist()
    X, y = X[:args.rows].copy(), y[:args.rows].copy()
    table = variants()
    for settings in table.values():                        # warm-up: kernels loaded, buffers allocated
        seconds_per_epoch(settings, X[:1024], y[:1024], 1)
    times = {name: [] for name in table}
    for _ in range(args.rounds):
        for name, settings in table.items():
            times[name].append(seconds_per_epoch(settings, X, y, args.epochs))
    medians = {name: statistics.median(values) for name, values in times.items()}
    report = {"machine": machine(), "rows": args.rows, "epochs": args.epochs, "rounds": args.rounds,
              "seconds_per_epoch": medians, "all_times": times,
              "ratio_to_relu": {name: medians[name] / medians["relu"] for name in medians}}
    lines = [f"MNIST preset network 784-{'-'.join(map(str, HIDDEN))}-10, SGD momentum 0.9, batch 128, {args.rows} rows, "
             f"median of {args.rounds} rounds of {args.epochs} epochs",
             f"machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, BLAS "
             + ", ".join(f"{b['internal_api']} {b['version']} {b['architecture']} x{b['num_threads']}"
                         for b in report["machine"]["blas"]),
             "", "| network | s/epoch | × plain ReLU |", "|---|---|---|"]
    lines += [f"| {name} | {medians[name]:.3f} | {report['ratio_to_relu'][name]:.2f} |" for name in medians]
    text = "\n".join(lines) + "\n"
    print(text)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = args.record or f"run-pieces-{stamp}"
    (HERE / "results" / f"{name}.json").write_text(json.dumps(report, indent=2))
    (HERE / "results" / f"{name}.md").write_text(text)


if __name__ == "__main__":
    main()
