"""A ``handgrad train`` preset measured: test accuracy after every epoch, and the time to 98.5/98.8/99.0%.

    python benchmarks/preset_accuracy.py [--dataset mnist] [--preset best] [--seeds 0] [--data-dir ../shared/data]
                                         [--record NAME]

Each seed trains the network ``handgrad train --dataset mnist --preset P --seed S``
builds, with the same settings, data, preprocessing, validation split,
shifts and seeds (the command's own functions build them), so its weights
are the command's.  ``--dataset fashion-mnist`` trains MNIST's recipe on
Fashion-MNIST unchanged (the flags of ``handgrad train --dataset
fashion-mnist`` with every setting of MNIST's preset given explicitly).
After every epoch a callback scores the 10,000 test images; that scoring is
kept off the training clock.  The report gives, per seed, the final test
accuracy, the training time, and the time at which the test accuracy first
reached each threshold.

Results go to ``benchmarks/results/run-preset-<UTC time>.{json,md}`` (ignored by
git); ``--record NAME`` writes ``results/NAME.{json,md}``.  Run it alone: the
best preset takes about ten minutes per seed on two cores, the standard one
about twenty seconds.
"""

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import handgrad as hg  # noqa: E402
from bench import describe_blas, machine  # noqa: E402
from handgrad.cli import settings as S  # noqa: E402
from handgrad.cli import train  # noqa: E402
from handgrad.cli.presets import VARIANTS  # noqa: E402
from handgrad.data.augment import shift_images  # noqa: E402
from handgrad.data.loaders import load_dataset  # noqa: E402
from handgrad.data.preprocessing import Preprocessor  # noqa: E402

THRESHOLDS = (0.985, 0.988, 0.990)


class TestClock(hg.Callback):
    """Test accuracy after each epoch, with the time spent training so far (scoring excluded)."""

    def __init__(self, X_test, y_test):
        self.X_test, self.y_test = X_test, y_test
        self.rows, self.training = [], 0.0
        self.last = time.perf_counter()

    def on_epoch_end(self, ctx, record):
        self.training += time.perf_counter() - self.last
        accuracy = float(np.mean(ctx.model.predict(self.X_test) == self.y_test))
        self.rows.append({"epoch": record["epoch"], "seconds": self.training, "test_accuracy": accuracy})
        print(f"  epoch {record['epoch']}: {accuracy:.4f} at {self.training:.0f} s", flush=True)
        self.last = time.perf_counter()


def settings_for(dataset, preset, data_dir, seed):
    """MNIST's preset ``preset``, with ``dataset`` (also another image dataset: the recipe, unchanged)."""
    parser = argparse.ArgumentParser()
    train.add_parser(parser.add_subparsers(), [])
    args = parser.parse_args(["train", "--dataset", "mnist", "--data-dir", str(data_dir), "--preset", preset,
                              "--seed", str(seed)])
    return {**S.from_flags(args), "dataset": dataset}


def run(dataset, preset, data_dir, seed):
    s = settings_for(dataset, preset, data_dir, seed)
    data = load_dataset(s["dataset"], data_dir=s["data_dir"], test_fraction=s["test_fraction"])
    scaling = Preprocessor.fit(data.X_train, data.kind)
    X_train, X_test = scaling.transform(data.X_train, np.float32), scaling.transform(data.X_test, np.float32)
    model = S.build_model(s, X_train.shape[1], data.n_classes, np.float32)
    clock = TestClock(X_test, data.y_test)
    hg.fit(model, S.build_loss(s), X_train, data.y_train, optimizer=S.build_optimizer(s), epochs=s["epochs"],
           batch_size=s["batch_size"], l2=s["l2"], validation_fraction=s["validation_fraction"],
           lr_schedule=S.build_schedule(s), seed=s["seed"], callbacks=[clock],
           augment=shift_images(data.image_shape, s["shift"]) if s["shift"] else None)
    reached = {f"{t:.3f}": next((r["seconds"] for r in clock.rows if r["test_accuracy"] >= t), None)
               for t in THRESHOLDS}
    return {"seed": seed, "final_test_accuracy": clock.rows[-1]["test_accuracy"], "seconds": clock.training,
            "time_to": reached, "epochs": clock.rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    parser.add_argument("--preset", default="best", choices=list(VARIANTS), help="MNIST's preset to train (default best)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--record", metavar="NAME", help="write results/NAME.{json,md} instead of a run-<time> file")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    results = []
    for seed in seeds:
        print(f"{args.dataset} with MNIST's {args.preset} preset, seed {seed}", flush=True)
        results.append(run(args.dataset, args.preset, args.data_dir, seed))
    report = {"machine": machine(), "dataset": args.dataset, "preset": args.preset,
              "settings": settings_for(args.dataset, args.preset, args.data_dir, 0), "results": results}
    write_report(report, args.record or f"run-preset-{args.preset}-{args.dataset}-{_stamp()}")


def _stamp():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def write_report(report, name):
    """Print the table and write ``results/NAME.{json,md}``."""
    results, accuracies = report["results"], [r["final_test_accuracy"] for r in report["results"]]
    m = report["machine"]
    blas = describe_blas(m)
    lines = [f"MNIST's `--preset {report['preset']}` recipe trained on {report['dataset']}: test accuracy and "
             "training time per seed",
             f"machine: {m['cpu']}, {m['cores']} cores, {m['date'][:10]}; BLAS: {blas}", "",
             "| seed | final test accuracy | training s | " + " | ".join(f"s to {t:.1%}" for t in THRESHOLDS) + " |",
             "|---|---|---|" + "---|" * len(THRESHOLDS)]
    for r in results:
        cells = [("–" if r["time_to"][f"{t:.3f}"] is None else f"{r['time_to'][f'{t:.3f}']:.0f}") for t in THRESHOLDS]
        lines.append(f"| {r['seed']} | {r['final_test_accuracy']:.4f} | {r['seconds']:.1f} | " + " | ".join(cells)
                     + " |")
    if len(results) > 1:
        lines += ["", f"final test accuracy over seeds {', '.join(str(r['seed']) for r in results)}: "
                      f"min {min(accuracies):.4f}, mean {sum(accuracies) / len(accuracies):.4f}, "
                      f"max {max(accuracies):.4f}"]
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "results" / f"{name}.json").write_text(json.dumps(report, indent=2))
    (HERE / "results" / f"{name}.md").write_text(text)


if __name__ == "__main__":
    main()
