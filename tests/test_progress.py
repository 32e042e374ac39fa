"""The progress display of ``hg.fit``: a bar per epoch on terminals, one summary line per epoch."""

import io
import re
import sys

import numpy as np
import pytest

import handgrad as hg
from handgrad.errors import HandgradError

SUMMARY = re.compile(r"epoch (\d+)/(\d+)  loss (\d+\.\d{4})  acc (\d+\.\d{4})"
                     r"(?:  val_loss (\d+\.\d{4})  val_acc (\d+\.\d{4}))?  (\d+\.\d{2})s$")


@pytest.fixture
def small(digits):
    X, y = digits
    return X[:320], y[:320]


def _fit(data, epochs=3, **kwargs):
    X, y = data
    model = hg.mlp(X.shape[1], [16], 10, seed=0)
    return hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, epochs=epochs, batch_size=32, seed=0, **kwargs)


def _summaries(text):
    """The summary lines of ``text`` (bar frames split off at carriage returns), as matches."""
    return [m for m in map(SUMMARY.match, re.split(r"[\r\n]+", text)) if m]


def test_verbose_fit_writes_one_summary_per_epoch_to_stderr(small, monkeypatch):
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    history = _fit(small, epochs=4, verbose=True, validation_fraction=0.25)
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 4
    matches = [SUMMARY.match(line) for line in lines]
    for record, match in zip(history.records, matches):
        epoch, total, loss, acc, val_loss, val_acc, seconds = match.groups()
        assert (int(epoch), int(total)) == (record["epoch"], 4)
        assert float(loss) == pytest.approx(record["train_loss"], abs=5e-5)
        assert float(acc) == pytest.approx(record["train_accuracy"], abs=5e-5)
        assert float(val_loss) == pytest.approx(record["val_loss"], abs=5e-5)
        assert float(val_acc) == pytest.approx(record["val_accuracy"], abs=5e-5)
        assert float(seconds) == pytest.approx(record["seconds"], abs=5e-3)


def test_summary_lines_follow_early_stopping_and_omit_absent_validation(small):
    stream = io.StringIO()
    stopper = hg.EarlyStopping(monitor="train_accuracy", mode="max", patience=1, min_delta=1.0)
    history = _fit(small, epochs=10, early_stopping=stopper, callbacks=[hg.EpochLogger(stream=stream)])
    matches = _summaries(stream.getvalue())
    assert len(history) == 2 and len(matches) == 2
    assert all(m.group(5) is None for m in matches)


def test_bar_advances_per_batch_with_the_running_loss(small):
    stream = io.StringIO()
    history = _fit(small, epochs=2, callbacks=[hg.EpochLogger(stream=stream, bar=True, refresh_seconds=0)])
    text = stream.getvalue()
    # 320 samples in batches of 32: ten equal batches, so the running mean after the
    # last batch is the epoch's training loss.
    for epoch, record in enumerate(history.records, start=1):
        frames = re.findall(rf"epoch {epoch}/2: +\d+%\|[^|]*\| (\d+)/10 \[[^]]*, loss (\d+\.\d{{4}})\]", text)
        assert [int(done) for done, _ in frames] == list(range(1, 11))
        assert float(frames[-1][1]) == pytest.approx(record["train_loss"], abs=5e-5)
    assert len(_summaries(text)) == 2


def test_bar_redraws_are_throttled(small):
    stream = io.StringIO()
    _fit(small, epochs=1, callbacks=[hg.EpochLogger(stream=stream, bar=True, refresh_seconds=3600)])
    # Only the bar's opening frame and its last batch are drawn within the hour.
    done = re.findall(r"\| (\d+)/10 \[", stream.getvalue())
    assert done == ["0", "10"]


def test_no_bar_on_a_stream_that_is_not_a_terminal(small):
    stream = io.StringIO()
    _fit(small, epochs=2, callbacks=[hg.EpochLogger(stream=stream)])
    text = stream.getvalue()
    assert "\r" not in text and "%|" not in text
    assert len(_summaries(text)) == 2


def test_bar_on_a_terminal_by_default(small):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    _fit(small, epochs=1, callbacks=[hg.EpochLogger(stream=stream)])
    text = stream.getvalue()
    assert re.search(r"\| 10/10 \[", text)
    assert len(_summaries(text)) == 1


@pytest.mark.parametrize("verbose", [False, "auto"])
def test_quiet_unless_asked_when_stderr_is_not_a_terminal(small, monkeypatch, verbose):
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    _fit(small, epochs=1, verbose=verbose)
    assert stderr.getvalue() == ""


@pytest.mark.parametrize("kwargs, match", [({"bar": "yes"}, "bar must be"),
                                           ({"refresh_seconds": -1}, "refresh_seconds"),
                                           ({"refresh_seconds": np.nan}, "refresh_seconds"),
                                           ({"heartbeat_seconds": 0}, "heartbeat_seconds"),
                                           ({"heartbeat_seconds": np.nan}, "heartbeat_seconds")])
def test_logger_refuses_bad_settings(kwargs, match):
    with pytest.raises(HandgradError, match=match):
        hg.EpochLogger(**kwargs)


class _AbortLog(hg.Callback):
    def __init__(self):
        self.events = []

    def on_train_end(self, ctx):
        self.events.append("end")

    def on_train_abort(self, ctx, error):
        self.events.append(type(error).__name__)


class _InterruptAt(hg.Callback):
    """Raises KeyboardInterrupt after the given batch of the given epoch, as Ctrl-C would."""

    def __init__(self, epoch, batch):
        self.epoch, self.batch = epoch, batch

    def on_batch_end(self, ctx, batch, n_batches, loss):
        if (ctx.epoch, batch) == (self.epoch, self.batch):
            raise KeyboardInterrupt


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("failure, expected", [
    (dict(optimizer=hg.SGD(1e3)), hg.TrainingDiverged),
    (dict(callbacks=[_InterruptAt(epoch=1, batch=3)]), KeyboardInterrupt),
])
def test_an_aborted_run_closes_its_bar_and_tells_the_callbacks(small, failure, expected):
    stream, log = io.StringIO(), _AbortLog()
    logger = hg.EpochLogger(stream=stream, bar=True, refresh_seconds=0)
    kwargs = {**failure, "callbacks": [logger, log, *failure.get("callbacks", [])]}
    with pytest.raises(expected):
        _fit(small, epochs=3, **kwargs)
    assert log.events == [expected.__name__]
    assert logger._progress is None
    # tqdm clears a closed bar (leave=False): the stream ends on a cleared line, not on a bar frame
    assert not re.search(r"\d+/\d+ \[", stream.getvalue().rsplit("\r", 1)[-1])


def test_without_a_bar_a_long_epoch_gets_a_line_every_heartbeat(small, monkeypatch):
    from handgrad.training import callbacks

    clock = iter(np.arange(0, 1000, 0.5))                   # every reading of the clock half a second later
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock))
    stream = io.StringIO()
    _fit(small, epochs=2, callbacks=[hg.EpochLogger(stream=stream, bar=False, heartbeat_seconds=2)])
    lines = stream.getvalue().splitlines()
    beats = [line for line in lines if re.fullmatch(r"epoch \d/2  batch \d+/10  loss \d\.\d{4}  \d+\.\ds", line)]
    assert len(beats) >= 4 and len(_summaries(stream.getvalue())) == 2
    assert lines.index(beats[0]) < lines.index(next(line for line in lines if SUMMARY.match(line)))
    quiet = io.StringIO()
    _fit(small, epochs=1, callbacks=[hg.EpochLogger(stream=quiet, bar=False, heartbeat_seconds=None)])
    assert len(quiet.getvalue().splitlines()) == 1
