"""Wall time of the README's first command, ``handgrad train`` on digits with its defaults, plots included.

    python benchmarks/command_time.py [--runs 5] [--against SRC] [--record NAME]

Each run is a fresh ``python -m handgrad train`` in an empty temporary folder
(as a new user types it), timed by ``/usr/bin/time -f %e`` where it exists,
once with ``--no-progress`` and once with the progress lines on (written to a
pipe, as the benchmark reads them).  The source tree measured is this
checkout's ``src``; ``--against`` adds another one (``/work/main/src``, say),
and the runs then alternate between the two, so that a change in the
machine's load falls on both alike.  Each row is the median of ``--runs``
runs, with the range and the 1-minute load average read before each run.

A run that fails, or leaves no learning curves or confusion matrix behind,
stops the benchmark: the time of a command that skipped its plots says
nothing.  Results go to ``benchmarks/results/run-command-<UTC time>.md``
(ignored by git); ``--record NAME`` writes ``results/NAME.md``.  Run it alone.
"""

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import machine, record_name  # noqa: E402

PLOTS = ("learning_curves.png", "confusion_matrix.png")
VARIANTS = {"--no-progress": ["--no-progress"], "progress on": []}


def one_run(src, flags):
    """Seconds of wall time of ``python -m handgrad train FLAGS`` run from ``src`` in an empty folder."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, "-m", "handgrad", "train", *flags]
    timer = shutil.which("time", path="/usr/bin")
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as notes:
        wall = Path(notes) / "wall"                 # beside the run's folder, which stays as a user's would be
        start = time.perf_counter()
        done = subprocess.run([timer, "-f", "%e", "-o", str(wall), *command] if timer else command,
                              cwd=folder, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        missing = [name for name in PLOTS if not (Path(folder) / "handgrad-out" / "plots" / name).exists()]
        if done.returncode != 0 or missing:
            sys.exit(f"{' '.join(command)} (PYTHONPATH={src}) failed or drew no {', '.join(missing) or 'plots'}:\n"
                     f"{done.stderr[-2000:]}")
        return float(wall.read_text().split()[-1]) if timer else seconds


def load_average():
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def describe(src):
    """The tree's path and commit, with ``+ changes`` when its files differ from the commit."""
    def git(*args):
        out = subprocess.run(["git", "-C", str(src), *args], capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else None
    commit = git("rev-parse", "--short", "HEAD")
    if commit is None:
        return str(src)
    return f"{src} ({commit}{' + changes' if git('status', '--porcelain', '--', '.') else ''})"


def hypervisor():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in out.splitlines()
                 if line.startswith("Hypervisor vendor")), None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per row, their median reported (default 5)")
    parser.add_argument("--against", metavar="SRC", type=Path,
                        help="another source tree to measure too, e.g. /work/main/src (alternating runs)")
    parser.add_argument("--record", metavar="NAME", type=record_name,
                        help="write results/NAME.md instead of a run-<time> file")
    args = parser.parse_args(argv)
    trees = [HERE.parent / "src"] + ([args.against.resolve()] if args.against else [])
    rows = {(tree, variant): {"seconds": [], "load": []} for tree in trees for variant in VARIANTS}
    for _ in range(args.runs):
        for tree in trees:
            for variant, flags in VARIANTS.items():
                row = rows[tree, variant]
                row["load"].append(load_average())
                row["seconds"].append(one_run(tree, flags))

    import matplotlib
    import numpy as np

    m = machine()
    guest = hypervisor()
    timer = "`/usr/bin/time -f %e`" if shutil.which("time", path="/usr/bin") else "the clock around the process"
    loads = [x for row in rows.values() for x in row["load"]]
    lines = ["# `handgrad train` on digits (defaults, plots included): wall time", "",
             f"{m['date']}; machine: {m['cpu']}{f' ({guest} guest)' if guest else ''}, {m['cores']} cores; "
             f"Python {m['python']}, NumPy {np.__version__}, matplotlib {matplotlib.__version__}", "",
             f"Each row: the median of {args.runs} fresh runs of `python -m handgrad train [--no-progress]` in an "
             f"empty temporary folder, timed by {timer}"
             + (", alternating between the source trees" if len(trees) > 1 else "")
             + f"; load average (1 min) before the runs {min(loads):.2f}-{max(loads):.2f}.", "",
             "| source tree | progress | median s | min-max s | load (1 min) |", "|---|---|---|---|---|"]
    for (tree, variant), row in rows.items():
        s = row["seconds"]
        lines.append(f"| {describe(tree)} | {variant} | {statistics.median(s):.2f} | {min(s):.2f}-{max(s):.2f} | "
                     f"{min(row['load']):.2f}-{max(row['load']):.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (HERE / "results" / f"{args.record or f'run-command-{stamp}'}.md").write_text(text)


if __name__ == "__main__":
    main()
