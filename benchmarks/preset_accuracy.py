"""A ``handgrad train`` preset measured: test accuracy after every epoch, and the epochs, FLOPs and time to thresholds.

    python benchmarks/preset_accuracy.py [--dataset mnist] [--preset best] [--seeds 0] [--data-dir ../shared/data]
                                         [--set KEY=VALUE ...] [--record NAME]

Each seed trains the network ``handgrad train --dataset D --preset P --seed S``
builds, with the same settings, data, preprocessing, validation split,
augmentation and seeds (the command's own functions build them), so its
weights are the command's.  ``--set KEY=VALUE`` (repeatable) changes one
setting the way the command's flag would: ``--set hidden=512,512`` is
``--hidden 512,512``, ``--set flip`` (or ``flip=true``) is ``--flip``;
the report names the whole command.  After every epoch a callback scores
the 10,000 test images; that scoring is kept off the training clock.

The report gives, per seed, the final test accuracy, the training time, and
for each threshold (MNIST 98.5/98.8/99.0%, Fashion-MNIST 90/90.5/91%) the
first epoch whose test accuracy reached it, with the training arithmetic
spent until then and the seconds.  The arithmetic counts the products of
the Dense layers, ×2 FLOPs per multiply-add, per training image and step:
the forward ``X W`` and the backward ``Xᵀ G`` of every layer, and ``G Wᵀ``
of every layer but the first (the data needs no gradient); i.e.
``2·(3·Σ n_in·n_out − d·n_1)`` per image, times the rows trained on per
epoch (the training set less the validation split).  Biases, activations,
dropout, the loss and the update are not counted (below 1% here).

Results go to ``benchmarks/results/run-preset-<UTC time>.{json,md}`` (ignored by
git); ``--record NAME`` writes ``results/NAME.{json,md}``.  Run it alone: the
best presets take five to fifteen minutes per seed on two cores, the
standard ones about twenty seconds to a minute.
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
from handgrad.data.augment import image_augmentation  # noqa: E402
from handgrad.data.loaders import load_dataset  # noqa: E402
from handgrad.data.preprocessing import Preprocessor  # noqa: E402

THRESHOLDS = {"mnist": (0.985, 0.988, 0.990), "fashion-mnist": (0.900, 0.905, 0.910)}
_SWITCHES = ("batch_norm", "flip")          # on/off settings: a flag without a value


class TestClock(hg.Callback):
    """Test accuracy after each epoch, with the time spent training so far (scoring excluded)."""

    def __init__(self, X_test, y_test, flops_per_epoch):
        self.X_test, self.y_test, self.flops_per_epoch = X_test, y_test, flops_per_epoch
        self.rows, self.training = [], 0.0
        self.last = time.perf_counter()

    def on_epoch_end(self, ctx, record):
        self.training += time.perf_counter() - self.last
        accuracy = float(np.mean(ctx.model.predict(self.X_test) == self.y_test))
        tflop = record["epoch"] * self.flops_per_epoch / 1e12
        self.rows.append({"epoch": record["epoch"], "seconds": self.training, "tflop": tflop,
                          "test_accuracy": accuracy, "train_accuracy": record.get("train_accuracy")})
        print(f"  epoch {record['epoch']}: {accuracy:.4f} at {self.training:.0f} s, {tflop:.2f} TFLOP "
              f"(training batches {record.get('train_accuracy', float('nan')):.4f})", flush=True)
        self.last = time.perf_counter()


def flag_arguments(overrides):
    """``["hidden=512,512", "flip"]`` -> ``["--hidden", "512,512", "--flip"]``: the command's flags."""
    argv = []
    for item in overrides:
        key, _, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if key not in S.CHECKS or key in ("dataset", "data_dir", "seed"):
            raise SystemExit(f"--set {item}: not a setting of handgrad train's preset "
                             f"(one of {', '.join(k for k in S.CHECKS if k not in ('dataset', 'data_dir', 'seed'))})")
        flag = "--" + key.replace("_", "-")
        if key in _SWITCHES:
            if value.lower() not in ("", "true", "1", "yes"):
                raise SystemExit(f"--set {item}: {flag} can only be switched on (drop it to keep the preset's)")
            argv.append(flag)
        else:
            argv += [flag, value]
    return argv


def command(dataset, preset, overrides, seed="S"):
    """The ``handgrad train`` command line a run measures."""
    return " ".join(["handgrad train --dataset", dataset, "--preset", preset, *flag_arguments(overrides),
                     "--seed", str(seed)])


def settings_for(dataset, preset, data_dir, seed, overrides=()):
    """The settings of ``handgrad train --dataset D --preset P --seed S`` with the flags of ``overrides``."""
    parser = argparse.ArgumentParser()
    train.add_parser(parser.add_subparsers(), [])
    args = parser.parse_args(["train", "--dataset", dataset, "--data-dir", str(data_dir), "--preset", preset,
                              "--seed", str(seed), *flag_arguments(overrides)])
    return S.from_flags(args)


def flops_per_image(model):
    """FLOPs of one training image's products in one step: 2·(forward + ∂W + ∂X), no ∂X for the first layer."""
    dense = [layer for layer in model.layers if isinstance(layer, hg.Dense)]
    sizes = [layer.n_in * layer.n_out for layer in dense]
    return 2 * (3 * sum(sizes) - sizes[0])


def training_rows(n, validation_fraction):
    """The rows ``fit`` trains on each epoch: ``n`` less its validation split."""
    return n - int(round(validation_fraction * n)) if validation_fraction else n


def run(dataset, preset, data_dir, seed, overrides=()):
    s = settings_for(dataset, preset, data_dir, seed, overrides)
    data = load_dataset(s["dataset"], data_dir=s["data_dir"], test_fraction=s["test_fraction"])
    scaling = Preprocessor.fit(data.X_train, data.kind)
    X_train, X_test = scaling.transform(data.X_train, np.float32), scaling.transform(data.X_test, np.float32)
    model = S.build_model(s, X_train.shape[1], data.n_classes, np.float32)
    rows = training_rows(len(X_train), s["validation_fraction"])
    clock = TestClock(X_test, data.y_test, flops_per_image(model) * rows)
    hg.fit(model, S.build_loss(s), X_train, data.y_train, optimizer=S.build_optimizer(s), epochs=s["epochs"],
           batch_size=s["batch_size"], l2=s["l2"], validation_fraction=s["validation_fraction"],
           lr_schedule=S.build_schedule(s), seed=s["seed"], callbacks=[clock],
           augment=image_augmentation(data.image_shape, s["shift"], s["flip"]))
    reached = {}
    for t in THRESHOLDS[dataset]:
        first = next((r for r in clock.rows if r["test_accuracy"] >= t), None)
        reached[f"{t:.3f}"] = None if first is None else {k: first[k] for k in ("epoch", "tflop", "seconds")}
    return {"seed": seed, "final_test_accuracy": clock.rows[-1]["test_accuracy"], "seconds": clock.training,
            "tflop": clock.rows[-1]["tflop"], "flops_per_image_step": flops_per_image(model),
            "training_rows": rows, "reached": reached, "epochs": clock.rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist", choices=list(THRESHOLDS))
    parser.add_argument("--preset", default="best", choices=list(VARIANTS), help="the preset to train (default best)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change one setting as its flag would (repeatable): hidden=512,512, epochs=30, flip")
    parser.add_argument("--note", default="", help="a line for the report (e.g. the machine's load)")
    parser.add_argument("--record", metavar="NAME", help="write results/NAME.{json,md} instead of a run-<time> file")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = settings_for(args.dataset, args.preset, args.data_dir, seeds[0], args.overrides)  # refuse bad --set now
    results = []
    for seed in seeds:
        print(f"{command(args.dataset, args.preset, args.overrides, seed)}", flush=True)
        results.append(run(args.dataset, args.preset, args.data_dir, seed, args.overrides))
    report = {"machine": machine(), "dataset": args.dataset, "preset": args.preset, "overrides": args.overrides,
              "command": command(args.dataset, args.preset, args.overrides), "note": args.note,
              "settings": {**settings, "seed": None}, "results": results}
    write_report(report, args.record or f"run-preset-{args.preset}-{args.dataset}-{_stamp()}")


def _stamp():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _reached(reached):
    if reached is None:
        return "–"
    return f"{reached['epoch']} / {reached['tflop']:.2f} / {reached['seconds']:.0f}"


def write_report(report, name):
    """Print the table and write ``results/NAME.{json,md}``."""
    results, accuracies = report["results"], [r["final_test_accuracy"] for r in report["results"]]
    thresholds = THRESHOLDS[report["dataset"]]
    m = report["machine"]
    first = results[0]
    lines = [f"`{report['command']}`: test accuracy, training arithmetic and time per seed",
             f"machine: {m['cpu']}, {m['cores']} cores, {m['date'][:10]}; BLAS: {describe_blas(m)}"
             + (f"; {report['note']}" if report.get("note") else ""),
             f"arithmetic: {first['flops_per_image_step'] / 1e6:.2f} MFLOP per image per step × "
             f"{first['training_rows']:,} training images per epoch = "
             f"{first['flops_per_image_step'] * first['training_rows'] / 1e12:.3f} TFLOP per epoch", "",
             "| seed | final test accuracy | epochs | TFLOP | training s | "
             + " | ".join(f"{t:.1%}: epoch / TFLOP / s" for t in thresholds) + " |",
             "|---|---|---|---|---|" + "---|" * len(thresholds)]
    for r in results:
        cells = [_reached(r["reached"][f"{t:.3f}"]) for t in thresholds]
        lines.append(f"| {r['seed']} | {r['final_test_accuracy']:.4f} | {len(r['epochs'])} | {r['tflop']:.2f} | "
                     f"{r['seconds']:.0f} | " + " | ".join(cells) + " |")
    if len(results) > 1:
        lines += ["", f"final test accuracy over seeds {', '.join(str(r['seed']) for r in results)}: "
                      f"min {min(accuracies):.4f}, mean {sum(accuracies) / len(accuracies):.4f}, "
                      f"max {max(accuracies):.4f}"]
        for t in thresholds:
            got = [r["reached"][f"{t:.3f}"] for r in results]
            if all(got):
                lines.append(f"{t:.1%} reached by every seed, at most after epoch {max(g['epoch'] for g in got)}, "
                             f"{max(g['tflop'] for g in got):.2f} TFLOP, {max(g['seconds'] for g in got):.0f} s")
            else:
                lines.append(f"{t:.1%} not reached by seed(s) "
                             f"{', '.join(str(r['seed']) for r, g in zip(results, got) if not g)}")
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "results" / f"{name}.json").write_text(json.dumps(report, indent=2))
    (HERE / "results" / f"{name}.md").write_text(text)


if __name__ == "__main__":
    main()
