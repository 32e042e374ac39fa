"""``handgrad check``: gradient checks of every built-in piece, or of a saved model's architecture.

Each analytic gradient is compared with central differences in float64 (see
:mod:`handgrad.nn.gradcheck`); the command prints one row per check and exits
with 1 if any relative error reaches the tolerance.
"""

import sys
import time

import numpy as np

import handgrad as hg
from handgrad.cli import console
from handgrad.cli.common import describe
from handgrad.cli.settings import argument_type, non_negative_int, positive_int
from handgrad.cli.unused_flags import warn_unused
from handgrad.io.modelfile import load_model
from handgrad.training.callbacks import draws_bars

# Entries differenced per parameter array of a saved model: every entry costs two
# forward passes, so the MNIST preset's 235,146 weights take minutes in full,
# while 200 per array (938 in all for that network) take a few seconds.
DEFAULT_ENTRIES = 200


def preset_network(dataset="mnist"):
    """``(widths, parameters)`` of the network a dataset's preset trains: ``[784, 256, 128, 10]``, 235,146."""
    from handgrad.cli.presets import PRESETS

    inputs = 64 if dataset == "digits" else 784        # 8x8 digits, 28x28 images; ten classes each
    widths = [inputs, *PRESETS[dataset]["hidden"], 10]
    return widths, sum((n_in + 1) * n_out for n_in, n_out in zip(widths, widths[1:]))


_WIDTHS, _PARAMETERS = preset_network()
# Without a visible bar, a line this often while one array is checked.
HEARTBEAT_SECONDS = 10.0

EXAMPLES = f"""\
examples:
  handgrad check                         every layer and loss, a small model per activation and loss
  handgrad check --model handgrad-out/model.npz
  handgrad check --model handgrad-out/model.npz --all

With --model, the saved architecture is checked on a float64 copy of its
weights, with random inputs and labels: one row per parameter array.  Each
array is checked on a seeded sample of {DEFAULT_ENTRIES} entries (--entries N), or on
every entry with --all, which costs two forward passes per weight: minutes
for the MNIST preset's {"-".join(map(str, _WIDTHS))} network ({_PARAMETERS:,} weights).  Progress
is shown on stderr: a bar per array on a terminal, else a line per array.
"""

def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "check", parents=parents, help="check every gradient against finite differences",
        description="Gradient checks: analytic gradients against central differences, in float64.",
        epilog=EXAMPLES, formatter_class=console.HelpFormatter)
    p.add_argument("--model", metavar="FILE", help="check this saved model's architecture instead")
    sample = p.add_mutually_exclusive_group()
    sample.add_argument("--entries", type=argument_type(positive_int), metavar="N",
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
    warn_unused("check", args)
    with threadpool_limits(limits=1, user_api="blas"):
        return _run(args)


def _run(args):
    rng = np.random.default_rng(args.seed)
    if args.model:
        return _check_model_file(args, rng)
    checks = list(_built_in_checks(rng))
    width = max(len(name) for name, _ in checks)
    print(f"{'check':<{width}}  {'max rel error':>13}  ok", flush=True)
    failed, tolerance = [], None
    for name, run in checks:            # each row as soon as it is measured: the table is its own progress
        report = run()
        tolerance = report.tolerance
        print(f"{name:<{width}}  {report.max_error:>13.2e}  {'yes' if report.passed else 'NO'}", flush=True)
        if not report.passed:
            failed.append(name)
    if failed:
        print(f"FAILED: {len(failed)} of {len(checks)} checks reached the tolerance {tolerance:.0e}: "
              f"{', '.join(failed)}")
        return 1
    print(f"passed: {len(checks)} checks, all below {tolerance:.0e}")
    return 0


def _check_model_file(args, rng):
    loaded = load_model(args.model)
    entries = None if args.all else args.entries or DEFAULT_ENTRIES
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
    """Per parameter array: a tqdm bar where one can be seen, else a line when the array is done and one
    every :data:`HEARTBEAT_SECONDS` while a large array is checked (``--all``: minutes for MNIST's first layer)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.bar, self.name, self.started, self.last = None, None, None, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._close()

    def __call__(self, name, done, total):
        if name != self.name:
            self._close()
            self.name, self.started = name, time.perf_counter()
            self.last = self.started
            if draws_bars(self.stream):
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=f"checking {name}", unit="entry", file=self.stream,
                                leave=False, mininterval=0.2)
        if self.bar is not None:
            self.bar.update(1)
        elif done < total:
            now = time.perf_counter()
            if now - self.last >= HEARTBEAT_SECONDS:
                self.last = now
                print(f"  {name}: {done:,} of {total:,} entries checked, {now - self.started:.0f} s",
                      file=self.stream, flush=True)
        if done == total:
            self._close()
            print(f"  {name}: {total:,} entries checked", file=self.stream, flush=True)

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _built_in_checks(rng):
    """``(name, check)`` for each layer, each loss, and a small model per activation × loss; ``check()``
    measures it and returns its :class:`~handgrad.GradcheckReport`.

    The inputs are drawn here, in order, so the checks are the same however they are run.
    """
    X = _away_from_zero(rng.standard_normal((5, 4)))
    yield "layer Dense(4, 3)", lambda X=X: hg.gradcheck(hg.Dense(4, 3, dtype=np.float64, seed=1), X)
    for cls in hg.activations().values():
        yield f"layer {cls.__name__}", lambda cls=cls, X=X: hg.gradcheck(cls(), X)
    yield "layer Dropout(0.3)", lambda X=X: hg.gradcheck(hg.Dropout(0.3).train(), X)
    yield "layer BatchNorm(4)", lambda X=X: hg.gradcheck(hg.BatchNorm(4, dtype=np.float64).train(), X)
    Z = 3 * rng.standard_normal((6, 4))
    for name, cls in hg.losses().items():
        for reduction in ("mean", "sum"):
            for y, form in cls.task.example_targets(rng, 6, 4):
                yield (f"loss {name} ({reduction}, {form})",
                       lambda cls=cls, reduction=reduction, y=y: hg.gradcheck(cls(reduction=reduction), Z, y))
    X8 = rng.standard_normal((8, 5))
    for act in hg.activations():
        for name, cls in hg.losses().items():
            y = cls.task.example_targets(rng, 8, 3)[0][0]
            yield (f"model 5-6-4-3 {act}, {name}, l2",
                   lambda act=act, cls=cls, y=y: hg.gradcheck(hg.mlp(5, [6, 4], 3, activation=act, dtype=np.float64,
                                                                    seed=2), cls(), X8, y, l2=1e-2))


def _away_from_zero(X):
    """Keep inputs off ReLU's kink at 0, where finite differences straddle two slopes."""
    return np.sign(X) * (0.1 + np.abs(X))
