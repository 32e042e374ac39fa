"""Each compiled kernel against the NumPy code it stands for, on the shapes of the benchmark's jobs.

    python benchmarks/kernels.py [--rounds 5] [--record NAME]

For every case the NumPy code and the kernel run alternately, ``--rounds``
times each; a measurement is the mean time of one call over enough calls
to fill about 20 ms, and the table keeps each side's fastest measurement
(the least disturbed by other processes).  The optimizer rows time
``step_flat`` itself, as ``fit`` calls it (L2 decay 1e-4 on the weights),
with ``compiled=False`` and ``compiled=True`` (on the threads
``handgrad._compiled.update_threads`` chooses); the columns "1 thread" and
"2 threads" call the Adam kernel directly with each thread count.  The
layer rows time the NumPy lines each kernel replaces
(``handgrad._compiled.numpy_*``) against one kernel call.

The load average is recorded before and after: the machine is shared, and a
busy minute slows both sides.  Results go to
``benchmarks/results/run-kernels-<UTC time>.{json,md}`` (ignored by git);
``--record NAME`` writes ``results/NAME.{json,md}`` on purpose.
"""

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import handgrad as hg  # noqa: E402
from bench import describe_blas, machine  # noqa: E402
from handgrad import _compiled  # noqa: E402

FILL_SECONDS = 0.02

# Flat parameter counts: digits 64-100-10 (job 4), MNIST 784-256-128-10 (job 1), 784-512-256-10 (job 2), and larger.
UPDATE_SIZES = {"job 4 (64-100-10)": 7510, "job 1 (784-256-128-10)": 235146, "job 2 (784-512-256-10)": 535818,
                "2M": 2_000_000}
# (rows, units) of a hidden layer's activations: job 4's batch of 32 × 100, job 1's 128 × 256 and 128 × 128.
LAYER_SHAPES = {"job 4 hidden": (32, 100), "job 1 hidden 1": (128, 256), "job 1 hidden 2": (128, 128)}


def per_call(fn):
    """Mean seconds of one call of ``fn``, over enough calls to fill about FILL_SECONDS."""
    fn()
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= FILL_SECONDS:
            return elapsed / calls
        calls = max(calls * 2, int(calls * FILL_SECONDS / max(elapsed, 1e-9)))


def compare(variants, rounds):
    """``{name: fastest seconds per call}``, the variants timed alternately."""
    best = {name: float("inf") for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            best[name] = min(best[name], per_call(fn))
    return best


def update_cases(kernels, rng):
    optimizers = {"Adam": lambda: hg.Adam(1e-3), "SGD momentum": lambda: hg.SGD(0.01, momentum=0.9)}
    for label, size in UPDATE_SIZES.items():
        n_decayed = int(size * 0.98)
        for name, make in optimizers.items():
            variants = {side: _step_flat_call(make(), compiled, size, n_decayed, rng)
                        for side, compiled in (("numpy", False), ("compiled", True))}
            if name == "Adam":
                for threads in (1, 2):
                    key = "1 thread" if threads == 1 else "2 threads"
                    variants[key] = _adam_kernel_call(kernels, size, n_decayed, threads, rng)
            yield f"{name} step_flat, {label}, {size:,} float32", variants


def _step_flat_call(optimizer, compiled, size, n_decayed, rng):
    p = rng.standard_normal(size).astype(np.float32)
    g = 1e-3 * rng.standard_normal(size).astype(np.float32)
    optimizer.prepare(p, compiled=compiled)
    return lambda: optimizer.step_flat(p, g, 1e-4, n_decayed)


def _adam_kernel_call(kernels, size, n_decayed, threads, rng):
    p, g, m, v = (rng.standard_normal(size).astype(np.float32) for _ in range(4))
    v = np.abs(v)
    return lambda: kernels.adam(p, g, m, v, n_decayed, 1e-4, 0.9, 0.999, 0.1, 0.001, 1e-3, 1e-8, threads)


def activation_cases(kernels, rng):
    everything = [hg.ReLU(), hg.Tanh(), hg.Sigmoid(), hg.LeakyReLU(), hg.ELU(), hg.Softplus(), hg.GELU(), hg.Identity()]
    for label, (n, k) in LAYER_SHAPES.items():
        chosen = everything if label == "job 1 hidden 1" else everything[:3]
        for act in chosen:
            kind, param = _compiled.activation_kind(act)
            Z = rng.standard_normal((n, k)).astype(np.float32)
            b = np.zeros(k, dtype=np.float32)             # Z stays as it is from call to call
            A = np.empty_like(Z)
            Phi = np.empty_like(Z) if act.name == "gelu" else None
            yield f"{act.name} forward + bias, {label} {n}×{k}", {
                "numpy": lambda act=act, Z=Z, b=b, A=A: _compiled.numpy_bias_activation(act, Z, b, A),
                "compiled": lambda kind=kind, param=param, Z=Z, b=b, A=A, Phi=Phi:
                    kernels.bias_activation(Z, b, A, kind, param, Phi),
            }
            act.forward(Z, out=A)                           # the state backward reads
            G = rng.standard_normal((n, k)).astype(np.float32)
            out, db = np.empty_like(G), np.empty(k, dtype=np.float32)
            S = act._Z if act.name == "gelu" else getattr(act, "_A", A)
            Phi = getattr(act, "_Phi", None)
            yield f"{act.name} backward + bias gradient, {label} {n}×{k}", {
                "numpy": lambda act=act, G=G, out=out, db=db: _compiled.numpy_activation_gradient_bias(act, G, out, db),
                "compiled": lambda kind=kind, param=param, G=G, S=S, out=out, db=db, Phi=Phi:
                    kernels.activation_gradient_bias(G, S, out, db, kind, param, Phi),
            }


def loss_cases(kernels, rng):
    loss = hg.SoftmaxCrossEntropy()
    for n in (32, 128, 4096):
        Z = rng.standard_normal((n, 10)).astype(np.float32)
        y = rng.integers(0, 10, n)
        G = np.empty_like(Z)
        yield f"softmax cross-entropy, value + gradient, {n}×10", {
            "numpy": lambda Z=Z, y=y, G=G: _compiled.numpy_softmax_cross_entropy(loss, Z, y, G),
            "compiled": lambda Z=Z, y=y, G=G, n=n: kernels.softmax_cross_entropy(Z, y, G, 1.0 / n),
        }


def gather_cases(kernels, rng):
    for label, (rows, width, batch) in {"job 4": (1347, 64, 32), "job 1": (4000, 784, 128)}.items():
        X = rng.standard_normal((rows, width)).astype(np.float32)
        y = rng.integers(0, 10, rows)
        idx = rng.permutation(rows)[:batch]
        Xb, yb = np.empty((batch, width), dtype=np.float32), np.empty(batch, dtype=y.dtype)
        yield f"minibatch gather X and y, {label} ({batch} of {rows}×{width})", {
            "numpy": lambda X=X, y=y, idx=idx, Xb=Xb, yb=yb: (_compiled.numpy_take_rows(X, idx, Xb),
                                                            _compiled.numpy_take_rows(y, idx, yb)),
            "compiled": lambda X=X, y=y, idx=idx, Xb=Xb, yb=yb: (kernels.take_rows(X, idx, Xb),
                                                               kernels.take_rows(y, idx, yb)),
        }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per case (default 5)")
    parser.add_argument("--record", metavar="NAME", help="write results/NAME.{json,md} instead of a run-<time> file")
    args = parser.parse_args(argv)
    kernels = _compiled.required()
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()
    results = []
    for cases in (update_cases, activation_cases, loss_cases, gather_cases):
        for title, variants in cases(kernels, rng):
            best = compare(variants, args.rounds)
            results.append({"case": title, "us_per_call": {k: v * 1e6 for k, v in best.items()}})
            print(title, " ".join(f"{k} {v * 1e6:.1f} µs" for k, v in best.items()), flush=True)
    load_after = os.getloadavg()
    report = {"machine": machine(), "rounds": args.rounds, "load_before": load_before, "load_after": load_after,
              "two_threads_from": _compiled.TWO_THREADS_FROM, "results": results}
    text = markdown(report)
    print(text)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = args.record or f"run-kernels-{stamp}"
    (HERE / "results" / f"{name}.json").write_text(json.dumps(report, indent=2))
    (HERE / "results" / f"{name}.md").write_text(text)


def markdown(report):
    m = report["machine"]
    loads = " / ".join(f"{x:.2f}" for x in report["load_before"]), " / ".join(f"{x:.2f}" for x in report["load_after"])
    lines = ["# Compiled kernels against NumPy", "",
             f"{m['date']} · {m['cpu']}, {m['cores']} cores · Python {m['python']}, NumPy {m['numpy']} · "
             f"BLAS: {describe_blas(m)} · load average (1/5/15 min) {loads[0]} before, {loads[1]} after · "
             f"fastest of {report['rounds']} alternating rounds per case", "",
             "| case | NumPy µs | compiled µs | NumPy ÷ compiled | 1 thread µs | 2 threads µs |",
             "|---|---|---|---|---|---|"]
    for r in report["results"]:
        t = r["us_per_call"]
        threads = [f"{t[k]:.1f}" if k in t else "" for k in ("1 thread", "2 threads")]
        lines.append(f"| {r['case']} | {t['numpy']:.1f} | {t['compiled']:.1f} | {t['numpy'] / t['compiled']:.1f} | "
                     f"{threads[0]} | {threads[1]} |")
    threshold = report["two_threads_from"]
    lines += ["", "step_flat ran the compiled update on one thread at every size" if threshold is None else
              f"step_flat ran the compiled update on two threads from {threshold:,} parameters (with two CPUs)"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
