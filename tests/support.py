"""What the test modules share besides fixtures: the test profile and a recording callback.

``HANDGRAD_TEST_PROFILE`` chooses how thorough a run is:

``dev`` (the default)
    A quick local run: the fuzz tests try a few dozen mutations per input
    format, the signal test runs four interrupted trainings, and the tests
    whose cost is starting worker processes (the dask cluster, a two-process
    grid search) are skipped.
``ci``
    The full counts (thousands of fuzz examples, 24 signal trials); ``.ci/run``
    sets it.

Modules read the counts through :func:`count`; ``tests/conftest.py`` also
loads the Hypothesis profile of the same name.
"""

import os

import pytest

import handgrad as hg

PROFILES = ("dev", "ci")
PROFILE = os.environ.get("HANDGRAD_TEST_PROFILE", "").strip().lower() or "dev"
if PROFILE not in PROFILES:
    raise RuntimeError(f"HANDGRAD_TEST_PROFILE={PROFILE!r}; use one of {', '.join(PROFILES)}")


def count(*, ci, dev):
    """How many examples or trials to run: ``ci`` under the CI profile, ``dev`` otherwise."""
    return ci if PROFILE == "ci" else dev


# For a test whose cost is mostly starting worker processes: it runs in CI only.
ci_only = pytest.mark.skipif(PROFILE != "ci",
                             reason="starts worker processes (seconds): HANDGRAD_TEST_PROFILE=ci runs it")


class Recorder(hg.Callback):
    """Logs every hook it sees, and the weights at the end of each epoch."""

    def __init__(self, name, log):
        self.name, self.log, self.weights = name, log, []

    def on_train_begin(self, ctx):
        self.log.append((self.name, "begin"))

    def on_batch_end(self, ctx, batch, n_batches, loss):
        self.log.append((self.name, "batch", ctx.epoch, batch, n_batches))

    def on_epoch_end(self, ctx, record):
        self.log.append((self.name, "epoch", record["epoch"]))
        self.weights.append(ctx.model.get_weights())

    def on_train_end(self, ctx):
        self.log.append((self.name, "end"))
