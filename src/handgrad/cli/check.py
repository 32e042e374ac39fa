"""``handgrad check``: gradient checks of every built-in piece, or of a saved model's architecture.

Each analytic gradient is compared with central differences in float64 (see
:mod:`handgrad.nn.gradcheck`); the command prints one row per check and exits
with 1 if any relative error reaches the tolerance.
"""

import argparse
import sys

import numpy as np

import handgrad as hg
from handgrad.cli.common import describe
from handgrad.cli.settings import argument_type, non_negative_int, positive_int
from handgrad.io.modelfile import load_model

# Entries differenced per parameter array of a saved model: every entry costs two
# forward passes, so the MNIST preset's 535,818 weights take over ten minutes in
# full, while 200 per array (at most 1,200 in all) take a few seconds.
DEFAULT_ENTRIES = 200

EXAMPLES = f"""\
examples:
  handgrad check                         every layer, loss, and a small model per activation and loss
  handgrad check --model handgrad-out/model.npz
  handgrad check --model handgrad-out/model.npz --all

With --model, the saved architecture is checked on a float64 copy of its
weights, with random inputs and labels: one row per parameter array.  Each
array is checked on a seeded sample of {DEFAULT_ENTRIES} entries (--entries N), or on
every entry with --all, which costs two forward passes per weight: minutes
for a 784-512-256-10 network.  Progress is shown on stderr.
"""

def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "check", parents=parents, help="check every gradient against finite differences",
        description="Gradient checks: analytic gradients against central differences, in float64.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", metavar="FILE", help="check this saved model's architecture instead")
    sample = p.add_mutually_exclusive_group()
    sample.add_argument("--entries", type=argument_type(positive_int), default=DEFAULT_ENTRIES, metavar="N",
                        help=f"with --model: entries checked per parameter array, a seeded sample "
                             f"(default {DEFAULT_ENTRIES})")
    sample.add_argument("--all", action="store_true", help="with --model: check every entry (slow for large models)")
    p.add_argument("--seed", type=argument_type(non_negative_int), default=0,
                   help="seed of the random inputs and of the sample of entries (default 0)")
    p.set_defaults(run=run_check)


def run_check(args):
    from threadpoolctl import threadpool_limits

    # The checks multiply matrices of a few rows: one BLAS thread is faster, and a
    # second one waiting for a busy core made a model check ten times slower.
    with threadpool_limits(limits=1, user_api="blas"):
        return _run(args)


def _run(args):
    rng = np.random.default_rng(args.seed)
    if args.model:
        return _check_model_file(args, rng)
    rows = list(_built_in_checks(rng))
    width = max(len(name) for name, _ in rows)
    print(f"{'check':<{width}}  {'max rel error':>13}  ok")
    for name, report in rows:
        print(f"{name:<{width}}  {report.max_error:>13.2e}  {'yes' if report.passed else 'NO'}")
    failed = [name for name, report in rows if not report.passed]
    tolerance = rows[0][1].tolerance
    if failed:
        print(f"FAILED: {len(failed)} of {len(rows)} checks reached the tolerance {tolerance:.0e}: {', '.join(failed)}")
        return 1
    print(f"passed: {len(rows)} checks, all below {tolerance:.0e}")
    return 0


def _check_model_file(args, rng):
    loaded = load_model(args.model)
    entries = None if args.all else args.entries
    sizes = [p.size for p in loaded.model.parameters()]
    checked = sum(sizes) if entries is None else sum(min(size, entries) for size in sizes)
    how = "every entry" if entries is None else f"a seeded sample of up to {entries} entries per array; --all for every entry"
    print(f"{args.model}: {describe(loaded.model)}, {type(loaded.loss).__name__}")
    print(f"checking {checked:,} of {sum(sizes):,} parameters ({how})", flush=True)
    with _Progress() as progress:
        report = _check_saved(loaded, rng, entries, progress)
    print(report)
    return 0 if report.passed else 1


def _check_saved(loaded, rng, entries, progress):
    model = loaded.model.astype(np.float64)
    loss = loaded.loss or hg.SoftmaxCrossEntropy()
    X = rng.standard_normal((4, model.n_features))
    y, _ = loss.task.example_targets(rng, 4, model.n_outputs)[0]
    return hg.gradcheck(model, loss, X, y, l2=float(loaded.settings.get("l2", 0.0)),
                        entries=entries, seed=int(rng.integers(2**32)), progress=progress)


class _Progress:
    """Per parameter array: a tqdm bar on a terminal, else one line when the array is done."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.bar, self.name = None, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._close()

    def __call__(self, name, done, total):
        if name != self.name:
            self._close()
            self.name = name
            if self.stream.isatty():
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=f"checking {name}", unit="entry", file=self.stream,
                                leave=False, mininterval=0.2)
        if self.bar is not None:
            self.bar.update(1)
        if done == total:
            self._close()
            print(f"  {name}: {total:,} entries checked", file=self.stream, flush=True)

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _built_in_checks(rng):
    """``(name, GradcheckReport)`` for each layer, each loss, and a small model per activation × loss."""
    X = _away_from_zero(rng.standard_normal((5, 4)))
    yield "layer Dense(4, 3)", hg.gradcheck(hg.Dense(4, 3, dtype=np.float64, seed=1), X)
    for cls in hg.activations().values():
        yield f"layer {cls.__name__}", hg.gradcheck(cls(), X)
    yield "layer Dropout(0.3)", hg.gradcheck(hg.Dropout(0.3).train(), X)
    yield "layer BatchNorm(4)", hg.gradcheck(hg.BatchNorm(4, dtype=np.float64).train(), X)
    Z = 3 * rng.standard_normal((6, 4))
    for name, cls in hg.losses().items():
        for reduction in ("mean", "sum"):
            for y, form in cls.task.example_targets(rng, 6, 4):
                yield f"loss {name} ({reduction}, {form})", hg.gradcheck(cls(reduction=reduction), Z, y)
    X = rng.standard_normal((8, 5))
    for act in hg.activations():
        for name, cls in hg.losses().items():
            model = hg.mlp(5, [6, 4], 3, activation=act, dtype=np.float64, seed=2)
            y = cls.task.example_targets(rng, 8, 3)[0][0]
            yield f"model 5-6-4-3 {act}, {name}, l2", hg.gradcheck(model, cls(), X, y, l2=1e-2)


def _away_from_zero(X):
    """Keep inputs off ReLU's kink at 0, where finite differences straddle two slopes."""
    return np.sign(X) * (0.1 + np.abs(X))
