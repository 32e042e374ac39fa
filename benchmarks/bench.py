"""handgrad against scikit-learn, PyTorch CPU and the matmul floor.

    pip install -e ".[bench]"          # PyTorch and psutil, besides handgrad's own dependencies
    python benchmarks/bench.py [--jobs 1,2,3,4] [--quick] [--rounds N] [--threads N] [--record NAME]

Job 2b (not run by default) repeats job 2's race with an Adam recipe.
"handgrad-numpy" is handgrad with ``HANDGRAD_NO_COMPILED=1``: its NumPy code, as
an install without a C compiler runs it.

Each (job, contender) pair runs in a fresh worker process, so that peak
memory is measured per pair and one library's imports and thread pools do
not disturb another's.  The table is printed and written as JSON and
Markdown to ``benchmarks/results/run-<UTC time>.{json,md}`` (git ignores
those), so a run never overwrites the results the repository tracks;
``--record latest`` writes ``results/latest.{json,md}`` on purpose.  Ratios
compare times measured in the same run; on a shared machine only those
ratios are meaningful.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CONTENDERS = {
    "1": ["floor", "handgrad", "handgrad-numpy", "sklearn-float64", "sklearn-float32", "torch"],
    "2": ["floor", "handgrad", "torch"],
    "2b": ["floor", "handgrad", "torch"],
    "3": ["floor", "handgrad", "sklearn-float64", "sklearn-float32", "torch"],
    "4": ["floor", "handgrad", "handgrad-numpy", "sklearn-float64", "sklearn-float32", "torch"],
}


def record_name(text):
    """``--record NAME`` (an argparse type): a plain file name for results/NAME.*, never a path or a hidden file."""
    if not text or text != Path(text).name or text.startswith("."):
        raise argparse.ArgumentTypeError(f"takes a plain file name such as latest, got {text!r}")
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="1,2,3,4", help="comma-separated job numbers (default: all)")
    parser.add_argument("--quick", action="store_true", help="few epochs, one repeat: a smoke run")
    parser.add_argument("--only", default=None, help="comma-separated contenders to run (default: all)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every contender this many times, alternating, and keep the medians (default 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS and PyTorch threads for every contender (default: NumPy's BLAS default)")
    parser.add_argument("--record", metavar="NAME", type=record_name, default=None,
                        help="write results/NAME.{json,md}, replacing a tracked result such as 'latest' on purpose "
                             "(default: a new results/run-<UTC time>.{json,md}, ignored by git)")
    parser.add_argument("--worker", nargs=2, metavar=("JOB", "CONTENDER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(*args.worker, quick=args.quick, threads=args.threads)))
        return
    jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    unknown = [j for j in jobs if j not in CONTENDERS]
    if unknown:
        parser.error(f"unknown job(s) {', '.join(unknown)}; choose from {', '.join(CONTENDERS)}")
    only = set(args.only.split(",")) if args.only else None
    name = args.record or run_name(args.quick)
    report = {"machine": machine(), "quick": args.quick, "name": name, "threads": args.threads or blas_threads(),
              "rounds": args.rounds, "jobs": {}}
    print(describe_machine(report) + "\n", flush=True)
    for job in jobs:
        report["jobs"][job] = run_job(job, args.quick, only, args.threads, args.rounds)
        print(format_job(job, report["jobs"][job]), flush=True)
    write_report(report)


def run_name(quick, now=None):
    """``run-20261202T115835Z`` (``-quick`` for a smoke run): a new file per run, never a tracked one."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return f"run-{now:%Y%m%dT%H%M%SZ}" + ("-quick" if quick else "")


def run_job(job, quick, only, threads, rounds=1):
    """Every contender of ``job`` in its own worker, ``rounds`` times in alternation."""
    import jobs

    definition = jobs.quick(jobs.JOBS[job]) if quick else jobs.JOBS[job]
    contenders = [c for c in CONTENDERS[job] if not only or c in only]
    runs = {c: [] for c in contenders}
    for _ in range(rounds):
        for contender in contenders:
            runs[contender].append(_run_worker_process(job, contender, quick, threads))
    results = {c: _merge(r) for c, r in runs.items()}
    recipe = {k: v for k, v in definition.__dict__.items() if k != "title"}
    report = {"title": definition.title, "recipe": recipe, "results": results}
    if job in COMMAND_JOBS and (not only or "command" in only):
        report["command"] = run_command(quick)
    return report


# The job whose recipe is a preset: the whole command is run once as well.
COMMAND_JOBS = ("2",)


def run_command(quick):
    """``handgrad train --dataset mnist`` as a user runs it: wall time, peak resident memory, test accuracy.

    The command's peak comes from the kernel's own account of that one child
    (``os.wait4``): data loading, training, plots and the model file included.
    """
    from idx import DATA

    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "handgrad", "train", "--dataset", "mnist", "--data-dir", str(DATA),
                   "--out", str(Path(out) / "model.npz"), "--plots", str(Path(out) / "plots")]
        command += ["--epochs", "2"] if quick else []
        with open(Path(out) / "output.txt", "w+") as output:
            start = time.perf_counter()
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=out)
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - start
            output.seek(0)
            text = output.read()
    if process.returncode != 0:
        return {"command": " ".join(command), "error": text.strip().splitlines()[-1] if text else "failed"}
    accuracy = next((float(line.split()[2]) for line in text.splitlines() if line.startswith("test accuracy")),
                    None)
    shown = "handgrad train --dataset mnist --data-dir ../shared/data" + (" --epochs 2" if quick else "")
    return {"command": shown,
            "wall_seconds": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "test_accuracy": accuracy}


def _run_worker_process(job, contender, quick, threads):
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", job, contender]
    command += ["--quick"] if quick else []
    command += ["--threads", str(threads)] if threads else []
    env = dict(os.environ, **NO_COMPILED) if contender == "handgrad-numpy" else None
    done = subprocess.run(command, capture_output=True, text=True, cwd=HERE, env=env)
    if done.returncode != 0:
        print(f"  {contender}: failed\n{done.stderr}", file=sys.stderr)
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# handgrad-numpy: handgrad without its compiled kernels, as an install without a C compiler runs it.
NO_COMPILED = {"HANDGRAD_NO_COMPILED": "1"}

TIMES = ("seconds", "seconds_without_first_input_grad", "update_traffic_seconds", "physical_floor",
         "time_to_target", "total_seconds", "cold_extra_seconds", "wall_seconds")


def _merge(runs):
    """One result from several rounds: median times, the largest peak memory, the rest from round one."""
    import numpy as np

    good = [r for r in runs if "error" not in r]
    if not good:
        return runs[0]
    merged = dict(good[0])
    for key in TIMES:
        values = [r[key] for r in good if r.get(key) is not None]
        merged[key] = float(np.median(values)) if len(values) == len(good) else None
    merged["peak_rss_mb"] = max(r["peak_rss_mb"] for r in good)
    merged["rounds"] = [{key: r.get(key) for key in TIMES if key in r} for r in good]
    return merged


def run_worker(job_key, contender, quick, threads=None):
    """Run one contender on one job in this process; return its results and memory."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    import jobs
    import runners

    if threads:
        threadpool_limits(threads)
    job = jobs.JOBS[job_key]
    job = jobs.quick(job) if quick else job
    runner, dtype = runners.RUNNERS[contender]
    data = jobs.load(job, dtype=np.dtype(dtype).type)
    threads = blas_threads()
    before = _rss_mb()
    _reset_peak_rss()
    called = time.perf_counter()
    result = runner(job, data, threads)
    result.update(rss_before_mb=before, peak_rss_mb=_peak_rss_mb(), threads=threads)
    if "first_fit_done" in result:
        # The first fit in this fresh process, its library's import included,
        # beyond a warm fit of the same job.
        cold = result.pop("first_fit_done") - called
        result["cold_extra_seconds"] = cold - result["seconds"] * job.epochs
    return result


def blas_threads():
    from threadpoolctl import threadpool_info

    return max((p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"), default=1)


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _rss_mb():
    return _status_kb("VmRSS") / 1024


def _reset_peak_rss():
    """Start the peak-RSS count afresh, so the peak is the run's (data included), not the loading's."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss_mb():
    return _status_kb("VmHWM") / 1024


def machine():
    import numpy as np
    from threadpoolctl import threadpool_info

    blas = [{k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "threading_layer")}
            for p in threadpool_info() if p["user_api"] == "blas"]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "blas": blas, "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                                 "OMP_NUM_THREADS", "HANDGRAD_NO_COMPILED")}}


# -- the table ---------------------------------------------------------------------


def rows(job_key, job):
    """Table rows ``(contender, cells...)`` for one job.

    Two rows stand for the floor: the physical floor (the products the job
    needs, without the first layer's ``G Wᵀ``, plus the optimizer step's
    unavoidable memory traffic) and all of the layers' products.
    """
    results = job["results"]
    raced = job["recipe"].get("target_accuracy") is not None
    floor = results.get("floor", {})
    physical, gemms = floor.get("physical_floor"), floor.get("seconds")
    hg = results.get("handgrad", {})
    out = []
    for name, r in results.items():
        if "error" in r:
            out.append([name, "failed: " + r["error"]] + [""] * 9)
            continue
        if name == "floor":
            for label, seconds in (("physical floor", physical), ("all GEMMs", gemms)):
                cells = [label, _fmt(seconds, "{:.4f}"), _ratio(seconds, physical), _ratio(seconds, gemms), ""]
                out.append(cells + [""] * (2 if raced else 1) + ["", "", _fmt(r.get("peak_rss_mb"), "{:.0f}"),
                                                                  _delta_rss(r)])
            continue
        seconds = r["seconds"]
        cells = [name, _fmt(seconds, "{:.4f}"), _ratio(seconds, physical), _ratio(seconds, gemms)]
        key = "time_to_target" if raced else "seconds"
        cells.append(_ratio(r.get(key), hg.get(key)) if name != "handgrad" else "")
        if raced:
            cells.append(_fmt(r.get("time_to_target"), "{:.1f}"))
        cells.append(_fmt(r.get("cold_extra_seconds"), "{:+.2f}"))
        cells.append(_update(r))
        cells.append(_fmt(r.get("test_accuracy"), "{:.4f}"))
        cells.append(_fmt(r.get("peak_rss_mb"), "{:.0f}"))
        cells.append(_delta_rss(r))
        out.append(cells)
    return out


def _update(r):
    """The optimizer update a handgrad run used, cold → warm when they differ: ``"compiled"`` or ``"numpy"``."""
    if "kernels" not in r:
        return ""
    return r["kernels"] if r.get("cold_kernels", r["kernels"]) == r["kernels"] else f"{r['cold_kernels']} → {r['kernels']}"


def _delta_rss(r):
    return _fmt(r["peak_rss_mb"] - r["rss_before_mb"] if "rss_before_mb" in r else None, "{:.0f}")


def headers(job_key, job):
    unit = "s/call" if job["recipe"]["name"] == "inference" else "s/epoch"
    head = ["contender", unit, "× physical floor", "× all GEMMs", "peer ÷ handgrad"]
    target = job["recipe"].get("target_accuracy")
    if target is not None:
        head.append(f"s to {target:.1%}")
    return head + ["cold +s", "update", "test acc", "peak RSS MB", "Δ RSS MB"]


def notes(job):
    """Lines under a job's table: what its floor is made of, and the whole command's run."""
    floor = job["results"].get("floor", {})
    lines = []
    if floor.get("update_traffic_seconds") is not None:
        lines.append(f"physical floor = GEMMs without the first layer's G Wᵀ "
                     f"{floor['seconds_without_first_input_grad']:.4f} s + the optimizer step's memory traffic "
                     f"{floor['update_traffic_seconds']:.4f} s per epoch")
    command = job.get("command")
    if command and "error" in command:
        lines.append(f"`{command['command']}` failed: {command['error']}")
    elif command:
        lines.append(f"`{command['command']}` as a whole command (data loading, training, plots, model file): "
                     f"{command['wall_seconds']:.1f} s wall, peak RSS {command['peak_rss_mb']:.0f} MB, "
                     f"test accuracy {_fmt(command['test_accuracy'], '{:.4f}')}")
    return lines


def _fmt(value, pattern):
    return "" if value is None else pattern.format(value)


def _ratio(a, b):
    return f"{a / b:.2f}" if a and b else ""


def format_job(job_key, job, markdown=False):
    head, body = headers(job_key, job), rows(job_key, job)
    if markdown:
        lines = [f"### Job {job_key}: {job['title']}", "", "| " + " | ".join(head) + " |",
                 "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(map(str, r)) + " |" for r in body]
        below = notes(job)
        lines += [""] + below if below else []
        return "\n".join(lines) + "\n"
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([f"Job {job_key}: {job['title']}", line(head)] + [line(r) for r in body] + notes(job)) + "\n"


def describe_blas(machine):
    """``"openblas 0.3.31 (Haswell kernels, 2 threads)"``, for each BLAS library :func:`machine` found."""
    return ", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']} kernels, {b['num_threads']} threads)"
                     for b in machine["blas"])


def describe_machine(report):
    m = report["machine"]
    blas = describe_blas(m)
    env = ", ".join(f"{k}={v}" for k, v in m["env"].items() if v) or "no BLAS overrides"
    return (f"{m['date']} · {m['cpu']}, {m['cores']} cores · Python {m['python']}, NumPy {m['numpy']} · "
            f"BLAS: {blas} · every contender ran with {report['threads']} thread(s), "
            f"{report.get('rounds', 1)} round(s) · environment: {env}")


def write_report(report):
    RESULTS.mkdir(exist_ok=True)
    stem = report["name"]
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    md = [f"# Benchmark results{' (quick run)' if report['quick'] else ''}", "", describe_machine(report), "",
          "Seconds are medians over repeats (and over rounds, which alternate the contenders), in warm "
          "processes (each has fitted once); \"cold +s\" is what the first fit in a fresh process, its library's "
          "import included, took beyond a warm one; \"update\" is the optimizer update handgrad ran (NumPy or "
          "the compiled one), cold → warm.  The physical floor is the products the job needs (without the first "
          "layer's G Wᵀ) plus the optimizer step's memory traffic, both measured in the run.  Peak RSS is the "
          "worker process's high-water mark during the run (data included), Δ RSS its rise above the resident "
          "size after loading the data; \"peer ÷ handgrad\" above 1 means handgrad is faster.", ""]
    md += [format_job(k, j, markdown=True) for k, j in report["jobs"].items()]
    (RESULTS / f"{stem}.md").write_text("\n".join(md))


if __name__ == "__main__":
    main()
