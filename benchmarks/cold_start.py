"""What the first fit in a fresh process costs beyond a warm one, with and without the compiled kernels.

    python benchmarks/cold_start.py [--repeats 3] [--record NAME]

For each job, a fresh Python process imports handgrad, fits once (cold),
then fits the same network again twice (warm); the cold extra is the first
fit's time minus the faster warm one.  Each job runs with the compiled
kernels (where built) and with ``HANDGRAD_NO_COMPILED=1``; the medians over
``--repeats`` fresh processes are kept.  A last row times ``handgrad train``
on digits as a whole command against the training time it reports, to show
where its wall time goes.

Results go to ``benchmarks/results/run-cold-<UTC time>.{json,md}`` (ignored by
git); ``--record NAME`` writes ``results/NAME.{json,md}``.  Run it alone.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import machine  # noqa: E402

JOBS = {
    "digits 64-100-10, Adam, batch 128, 30 epochs": dict(data="digits", hidden=[100], epochs=30),
    "mnist 4k 784-256-128-10, Adam, batch 128, 10 epochs": dict(data="mnist4k", hidden=[256, 128], epochs=10),
}

WORKER = r"""
import json, sys, time
start = time.perf_counter()
import numpy as np
import handgrad as hg
imported = time.perf_counter() - start
spec = json.loads(sys.argv[1])
if spec["data"] == "digits":
    from handgrad.data.loaders import digits_arrays
    X, y = digits_arrays()
    X = (X / 16).astype(np.float32)
else:
    sys.path.insert(0, spec["here"])
    from idx import load_mnist
    X, y, _, _ = load_mnist()
    X, y = X[:4000].copy(), y[:4000].copy()

def once():
    # seconds of one fit, and whether it ran the compiled update (asked again, prepare repeats the choice)
    model = hg.mlp(X.shape[1], spec["hidden"], 10, seed=0)
    optimizer = hg.Adam(1e-3)
    t = time.perf_counter()
    hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=optimizer, epochs=spec["epochs"],
           batch_size=128, seed=0)
    return time.perf_counter() - t, optimizer.prepare(model.flat_parameters)

runs = [once() for _ in range(3)]
print(json.dumps({"import": imported, "cold": runs[0][0], "warm": min(runs[1][0], runs[2][0]),
                  "compiled": any(compiled for _, compiled in runs)}))
"""


def run_job(spec, compiled, repeats):
    env = dict(os.environ)
    if not compiled:
        env["HANDGRAD_NO_COMPILED"] = "1"
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", WORKER, json.dumps({**spec, "here": str(HERE)})],
                             capture_output=True, text=True, env=env, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    keys = ("import", "cold", "warm")
    result = {k: statistics.median(r[k] for r in runs) for k in keys}
    result["cold_extra"] = statistics.median(r["cold"] - r["warm"] for r in runs)
    result["compiled"] = any(r["compiled"] for r in runs)
    return result


def train_command(repeats):
    """``handgrad train`` on digits: the command's wall time against the training time it prints."""
    walls, trains = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "handgrad.cli", "train", "--dataset", "digits", "--out",
                            str(Path(folder) / "m.npz"), "--no-progress", "--log", str(Path(folder) / "log.jsonl")],
                           capture_output=True, text=True, check=True)
            walls.append(time.perf_counter() - start)
            records = [json.loads(line) for line in (Path(folder) / "log.jsonl").read_text().splitlines()]
            trains.append(sum(r["seconds"] for r in records))
    return {"wall": statistics.median(walls), "training": statistics.median(trains)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per measurement (default 3)")
    parser.add_argument("--record", metavar="NAME", help="write results/NAME.{json,md} instead of a run-<time> file")
    args = parser.parse_args(argv)
    results = {}
    for name, spec in JOBS.items():
        for compiled in (True, False):
            results[f"{name}, {'compiled' if compiled else 'numpy only'}"] = run_job(spec, compiled, args.repeats)
    command = train_command(args.repeats)
    report = {"machine": machine(), "repeats": args.repeats, "jobs": results, "train_digits_command": command}
    lines = [f"cold start: median of {args.repeats} fresh processes per row",
             f"machine: {report['machine']['cpu']}, {report['machine']['cores']} cores", "",
             "| job | import s | cold fit s | warm fit s | cold extra s | compiled kernels |", "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {r['import']:.3f} | {r['cold']:.3f} | {r['warm']:.3f} | {r['cold_extra']:.3f} | "
              f"{'used' if r['compiled'] else 'not used'} |" for name, r in results.items()]
    lines += ["", f"`handgrad train --dataset digits`: {command['wall']:.2f} s wall, of which "
              f"{command['training']:.2f} s training ({command['training'] / command['wall']:.0%})"]
    text = "\n".join(lines) + "\n"
    print(text)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = args.record or f"run-cold-{stamp}"
    (HERE / "results" / f"{name}.json").write_text(json.dumps(report, indent=2))
    (HERE / "results" / f"{name}.md").write_text(text)


if __name__ == "__main__":
    main()
