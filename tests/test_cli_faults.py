"""Faults during ``handgrad train``: signals at random moments, concurrent writers to one file.

Each trial starts a real training process and sends it SIGINT or SIGTERM at a
seeded random moment, either counted from the launch (which also hits start-up
and data loading) or from the moment training starts.  Afterwards the model
and the checkpoint are each absent or load cleanly, no temporary file is left,
and resuming from the checkpoint ends with exactly the weights of the
uninterrupted run (same seed, one BLAS thread).  CI runs 24 trials; the quick
local profile the first four (see tests/support.py).
"""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from handgrad.io.modelfile import load_checkpoint, load_model
from support import count

# A checkpoint after every epoch, so that signals also land in the middle of writing one.
RUN = ["train", "--hidden", "16", "--epochs", "40", "--seed", "3", "--early-stopping", "5", "--checkpoint-every", "1",
       "--threads", "1", "--no-plots", "--no-progress"]
# The quick profile runs the first four trials: SIGINT and SIGTERM during training, SIGINT during start-up.
TRIALS = count(ci=24, dev=4)
RESUMES = count(ci=5, dev=2)        # resuming costs a full run: check it on the first few interrupted trials


def _command(*args):
    return [sys.executable, "-m", "handgrad.cli", *map(str, args)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: final weights, seconds of training, seconds from launch to exit.

    Signal delays are drawn as fractions of these durations, so the trials hit
    the same phases on a fast machine as on a slow one.
    """
    out = tmp_path_factory.mktemp("reference") / "model.npz"
    start = time.perf_counter()
    result = subprocess.run(_command(*RUN, "--out", out), capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    loaded = load_model(out)
    return {"weights": loaded.model.get_weights(), "training": sum(r["seconds"] for r in loaded.history),
            "wall": wall, "epochs": len(loaded.history)}


def _interrupt(out, signum, delay, after_training_starts):
    """Start a run, signal it after ``delay`` seconds; return (exit code, stderr)."""
    process = subprocess.Popen(_command(*RUN, "--out", out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    if after_training_starts:
        for line in process.stderr:
            if line.startswith("training "):
                break
    time.sleep(delay)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=300)
    return process.returncode, stderr


def _trials(reference):
    rng = np.random.default_rng(20261123)
    for i in range(TRIALS):
        signum = (signal.SIGINT, signal.SIGTERM)[i % 2]
        after_training_starts = i % 3 != 2
        delay = rng.uniform(0, 0.9 * reference["training"]) if after_training_starts else \
            rng.uniform(0, reference["wall"])
        yield signum, float(delay), after_training_starts


def test_signals_at_random_moments_never_leave_a_broken_file_and_resuming_is_exact(tmp_path, reference):
    resumed = 0
    for trial, (signum, delay, after_training_starts) in enumerate(_trials(reference)):
        folder = tmp_path / f"trial{trial}"
        folder.mkdir()
        model, checkpoint = folder / "model.npz", folder / "model.ckpt.npz"
        code, stderr = _interrupt(model, signum, delay, after_training_starts)
        context = f"trial {trial}: {signal.Signals(signum).name} after {delay:.2f}s, exit {code}: {stderr[-300:]}"
        clean_exits = {0, 128 + signum}
        if not after_training_starts:
            # Before handgrad installs its handlers (interpreter start-up), Python's defaults apply:
            # a KeyboardInterrupt traceback (exit 1, or death by SIGINT) or death by SIGTERM; nothing has
            # been written by then.
            clean_exits |= {1, -signum}
        assert code in clean_exits, context
        if code in (0, 128 + signum):
            assert "Traceback" not in stderr, context
        assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")], context
        if code == 128 + signum:
            assert f"interrupted by {signal.Signals(signum).name}" in stderr.splitlines()[-1], context
        if model.exists():
            if code == 0:
                assert load_checkpoint(checkpoint).epoch == len(load_model(model).history), context
            assert np.array_equal(load_model(model).model.get_weights(), reference["weights"]), context
        if checkpoint.exists():
            load_checkpoint(checkpoint)
            if not model.exists() and resumed < RESUMES:
                result = subprocess.run(_command("train", "--resume", checkpoint), capture_output=True, text=True,
                                        timeout=300)
                assert result.returncode == 0, context + result.stderr
                final = load_model(model)
                assert np.array_equal(final.model.get_weights(), reference["weights"]), context
                assert len(final.history) == reference["epochs"], context
                resumed += 1
    assert resumed >= min(3, RESUMES)


def test_two_concurrent_trainings_writing_the_same_files_leave_complete_ones(tmp_path):
    out = tmp_path / "same.npz"
    runs = [subprocess.Popen(_command("train", "--hidden", width, "--epochs", "8", "--checkpoint-every", "1",
                                      "--threads", "1", "--no-plots", "--no-progress", "--out", out,
                                      "--log", tmp_path / "same.jsonl"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for width in (8, 12)]
    for run in runs:
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
    model = load_model(out)
    assert model.model.layers[0].n_out in (8, 12) and len(model.history) == 8
    assert load_checkpoint(tmp_path / "same.ckpt.npz").epoch == 8
    assert len((tmp_path / "same.jsonl").read_text().splitlines()) == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.ckpt.npz", "same.jsonl", "same.npz"]
