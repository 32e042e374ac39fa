"""Callbacks: what the training loop calls at the start, after each batch and epoch, and at the end
(``on_train_end``, or ``on_train_abort`` when an exception ends the run).

A callback may stop training by setting ``ctx.stop = True`` in
``on_epoch_end``.  ``ctx`` is the :class:`~handgrad.training.loop.TrainingContext`
of the run: the model, loss, optimizer, history and current epoch.
"""

import os
import sys
import time

import numpy as np

from handgrad.errors import HandgradError
from handgrad.tasks import of as task_of


class Callback:
    """Base class of what :func:`fit` calls during a run; each hook does nothing until a subclass overrides it.

    ``fit`` calls ``on_train_begin`` once, ``on_batch_end`` after each
    optimizer step (only on callbacks that override it), ``on_epoch_end``
    with each epoch's record, and ``on_train_end`` at the end, or
    ``on_train_abort`` instead when an exception ends the run.  Setting
    ``ctx.stop = True`` in ``on_epoch_end`` ends training after that epoch.
    Any object with these methods will do; deriving from ``Callback``
    supplies the ones it does not need.

    See Also
    --------
    EarlyStopping : Stops when a figure stops improving.
    EpochLogger : Prints a line per epoch.
    TrainingContext : What the hooks receive as ``ctx``.

    Examples
    --------
    >>> class StopBelow(hg.Callback):
    ...     def on_epoch_end(self, ctx, record):
    ...         ctx.stop = record["train_loss"] < 0.9
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(40, 4)), np.arange(40) % 2
    >>> model = hg.mlp(4, [8], 2, seed=0)
    >>> history = hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, epochs=50, seed=0, callbacks=[StopBelow()])
    >>> len(history) < 50, history[-1]["train_loss"] < 0.9
    (True, True)
    """

    def on_train_begin(self, ctx):
        """Before the first epoch.

        Parameters
        ----------
        ctx : TrainingContext
            The run: model, loss, optimizer, history and current epoch.
        """

    def on_batch_end(self, ctx, batch, n_batches, loss):
        """After each optimizer step; ``loss`` is that minibatch's objective.

        Only callbacks that override this method are called per batch, so the
        hook costs nothing to runs that do not use it.

        Parameters
        ----------
        ctx : TrainingContext
            The run: model, loss, optimizer, history and current epoch.
        batch : int
            The minibatch's position in the epoch, from 0.
        n_batches : int
            The number of minibatches in the epoch.
        loss : float
            The minibatch's objective (L2 term included).
        """

    def on_epoch_end(self, ctx, record):
        """After each epoch, with its record; set ``ctx.stop = True`` to end training here.

        Parameters
        ----------
        ctx : TrainingContext
            The run: model, loss, optimizer, history and current epoch.
        record : dict
            The epoch's record, as the history stores it (see :func:`fit`).
        """

    def on_train_end(self, ctx):
        """After the last epoch, or after the one a callback stopped at.

        Parameters
        ----------
        ctx : TrainingContext
            The run: model, loss, optimizer, history and current epoch.
        """

    def on_train_abort(self, ctx, error):
        """When training stops by an exception (divergence, Ctrl-C, a failing callback), instead of ``on_train_end``.

        ``fit`` re-raises ``error`` afterwards.

        Parameters
        ----------
        ctx : TrainingContext
            The run: model, loss, optimizer, history and current epoch.
        error : BaseException
            The exception that ended the run.
        """


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    ``mode="min"`` for losses, ``"max"`` for accuracies.  With
    ``restore_best=True`` the model ends with the weights of its best epoch,
    and with that epoch's buffers (a batch norm's running statistics, kept
    in memory: a checkpoint stores the best weights only), whether or not
    the patience ran out.

    After the run, ``best_epoch`` (counted from 1) and ``best`` say which
    epoch that was and what it scored, and ``stopped_epoch`` the epoch
    after which the patience ran out (None if it never did).

    Parameters
    ----------
    monitor : str, default "val_loss"
        The record's column to watch (``"train_loss"``, ``"val_accuracy"``, …).
    patience : int, default 10
        How many epochs without improvement end the run, at least 1.
    min_delta : float, default 0.0
        The least change that counts as an improvement.
    mode : {"min", "max"}, default "min"
        Whether lower or higher values of ``monitor`` are better.
    restore_best : bool, default True
        Whether the model ends with the weights (and buffers) of its best epoch.

    Raises
    ------
    HandgradError
        An unknown ``mode``, or ``patience`` below 1.

    See Also
    --------
    fit : Its ``early_stopping=True`` adds one on ``val_loss``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(60, 4)), rng.integers(0, 3, size=60)      # labels with no pattern
    >>> stopper = hg.EarlyStopping(monitor="val_loss", patience=2)
    >>> history = hg.fit(hg.mlp(4, [16], 3, seed=0), hg.SoftmaxCrossEntropy(), X, y, epochs=200,
    ...                  validation_fraction=0.5, seed=0, callbacks=[stopper])
    >>> stopper.stopped_epoch == len(history) == stopper.best_epoch + 2
    True
    """

    def __init__(self, monitor="val_loss", patience=10, min_delta=0.0, mode="min", restore_best=True):
        if mode not in ("min", "max"):
            raise HandgradError(f"mode must be 'min' or 'max', got {mode!r}")
        if patience < 1:
            raise HandgradError(f"patience must be at least 1, got {patience!r}")
        self.monitor, self.patience, self.min_delta = monitor, int(patience), float(min_delta)
        self.mode, self.restore_best = mode, restore_best
        self.best, self.best_epoch, self.best_weights, self.wait = None, None, None, 0
        self.best_buffers = None
        self.stopped_epoch = None

    def _improved(self, value):
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, ctx, record):
        """Keep the best value of ``monitor`` (and the weights then), or count an epoch of patience.

        Parameters
        ----------
        ctx : TrainingContext
            The run: model, loss, optimizer, history and current epoch.
        record : dict
            The epoch's record.

        Raises
        ------
        HandgradError
            The run does not record ``monitor``.
        """
        value = record.get(self.monitor)
        if value is None:
            raise HandgradError(f"early stopping monitors {self.monitor!r}, which this run does not record; "
                                f"recorded: {', '.join(record)}")
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, record["epoch"], 0
            if self.restore_best:
                self.best_weights = ctx.model.get_weights()
                self.best_buffers = ctx.model.get_buffers() if hasattr(ctx.model, "get_buffers") else None
        else:
            self.wait += 1
            if self.wait >= self.patience:
                ctx.stop = True
                self.stopped_epoch = record["epoch"]

    def on_train_end(self, ctx):
        if self.restore_best and self.best_weights is not None:
            ctx.model.set_weights(self.best_weights)
            if self.best_buffers is not None:
                ctx.model.set_buffers(self.best_buffers)

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "best_weights": self.best_weights, "best_buffers": self.best_buffers,
                "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state):
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], int(state["wait"])
        self.stopped_epoch = state.get("stopped_epoch")
        weights = state.get("best_weights")
        self.best_weights = None if weights is None else np.array(weights)
        buffers = state.get("best_buffers")
        self.best_buffers = None if not buffers else {name: np.array(value) for name, value in buffers.items()}


class EpochLogger(Callback):
    """Progress on ``stream`` (default stderr): a bar per epoch, then a summary line.

    On a terminal, during an epoch a tqdm bar advances per minibatch with
    the running mean loss and the elapsed time (accuracy is known only at
    the epoch's end).  Elsewhere (a log file, a pipe, a job scheduler) there
    is no bar, but an epoch that runs longer than ``heartbeat_seconds`` gets
    a line every ``heartbeat_seconds`` while it runs::

        epoch 3/10  batch 200/469  loss 0.1234  10.0s

    When the epoch ends the bar gives way to one line::

        epoch 3/10  loss 0.1234  acc 0.9650  val_loss 0.1500  val_acc 0.9500  0.41s

    with the figures of the loss's task (``rmse``/``r2`` for regression,
    ``label_acc``/``subset_acc`` for multilabel) where ``acc`` stands.

    Parameters
    ----------
    stream : text stream, optional
        Where to write; None means ``sys.stderr`` as it is when training starts.
    bar : {"auto", True, False}, default "auto"
        ``"auto"`` draws the bar only on a terminal that reports its width
        (:func:`draws_bars`), so logs written to a file or a pipe hold just
        the summary lines (and the heartbeat's); ``True`` always draws it
        (on a non-terminal tqdm writes plain text), ``False`` never.
    refresh_seconds : float, default 0.1
        The least time between two redraws of the bar.
    heartbeat_seconds : float or None, default 10.0
        Without a bar, the time between two lines within a long epoch; None for none.

    Raises
    ------
    HandgradError
        An unknown ``bar``, a negative ``refresh_seconds`` or a non-positive ``heartbeat_seconds``.

    See Also
    --------
    fit : Its ``verbose=True`` adds one on stderr.

    Examples
    --------
    >>> import io
    >>> stream = io.StringIO()
    >>> X, y = np.random.default_rng(0).normal(size=(30, 4)), np.arange(30) % 3
    >>> history = hg.fit(hg.mlp(4, [8], 3, seed=0), hg.SoftmaxCrossEntropy(), X, y, epochs=2, seed=0,
    ...                  callbacks=[hg.EpochLogger(stream, bar=False)])
    >>> print(stream.getvalue())
    epoch 1/2  loss ...  acc ...  ...s
    epoch 2/2  loss ...  acc ...  ...s
    """

    def __init__(self, stream=None, bar="auto", refresh_seconds=0.1, heartbeat_seconds=10.0):
        if bar not in (True, False, "auto"):
            raise HandgradError(f"bar must be True, False or 'auto', got {bar!r}")
        if not refresh_seconds >= 0:
            raise HandgradError(f"refresh_seconds must be a non-negative number, got {refresh_seconds!r}")
        if heartbeat_seconds is not None and not heartbeat_seconds > 0:
            raise HandgradError(f"heartbeat_seconds must be a positive number or None, got {heartbeat_seconds!r}")
        self.stream, self.bar, self.refresh_seconds = stream, bar, float(refresh_seconds)
        self.heartbeat_seconds = heartbeat_seconds
        self._out, self._draw_bar, self._progress = None, False, None
        self._beat, self._epoch_start = None, None

    def on_train_begin(self, ctx):
        self._out = self.stream if self.stream is not None else sys.stderr
        self._draw_bar = self.bar is True or (self.bar == "auto" and draws_bars(self._out))
        self._epoch_start = time.perf_counter()

    def on_batch_end(self, ctx, batch, n_batches, loss):
        if not self._draw_bar:
            if self.heartbeat_seconds is not None:
                self._heartbeat(ctx, batch, n_batches, loss)
            return
        if batch == 0:
            self._close_bar()
            self._progress = _EpochBar(self._out, ctx.epoch, ctx.epochs, n_batches, self.refresh_seconds)
        self._progress.batch_done(loss)

    def _heartbeat(self, ctx, batch, n_batches, loss):
        """A line now and then within a long epoch, where no bar shows that the run is alive."""
        now = time.perf_counter()
        if self._beat is None or self._beat["epoch"] != ctx.epoch:
            start = self._epoch_start if self._epoch_start is not None else now
            self._beat = {"epoch": ctx.epoch, "start": start, "last": start, "loss_sum": 0.0, "batches": 0}
        beat = self._beat
        beat["loss_sum"] += loss
        beat["batches"] += 1
        if now - beat["last"] >= self.heartbeat_seconds and batch + 1 < n_batches:
            beat["last"] = now
            print(f"epoch {ctx.epoch + 1}/{ctx.epochs}  batch {batch + 1}/{n_batches}  "
                  f"loss {beat['loss_sum'] / beat['batches']:.4f}  {now - beat['start']:.1f}s",
                  file=self._out, flush=True)

    def on_epoch_end(self, ctx, record):
        self._close_bar()
        figures = task_of(ctx.loss).figures
        parts = [f"epoch {record['epoch']}/{ctx.epochs}", f"loss {record['train_loss']:.4f}",
                 *_figures(figures, record, "train_", "")]
        if record.get("val_loss") is not None:
            parts.append(f"val_loss {record['val_loss']:.4f}")
            parts.extend(_figures(figures, record, "val_", "val_"))
        parts.append(f"{record['seconds']:.2f}s")
        print("  ".join(parts), file=self._out, flush=True)
        self._epoch_start = time.perf_counter()

    def on_train_end(self, ctx):
        self._close_bar()

    def on_train_abort(self, ctx, error):
        self._close_bar()       # so the error message is not printed over a half-drawn bar

    def _close_bar(self):
        if self._progress is not None:
            self._progress.close()
            self._progress = None


def _figures(figures, record, prefix, shown_prefix):
    """The task's figures as the summary line spells them (``acc 0.9650``), where the record holds them."""
    return [f"{shown_prefix}{f.short} {record[prefix + f.key]:.4f}" for f in figures
            if record.get(prefix + f.key) is not None]


class _EpochBar:
    """One epoch's tqdm bar, redrawn at most every ``refresh_seconds``.

    tqdm is told about finished batches only when a redraw is due, so the
    cost per minibatch is one clock read and two additions.
    """

    def __init__(self, stream, epoch, epochs, n_batches, refresh_seconds):
        from tqdm import tqdm

        self.refresh_seconds = refresh_seconds
        # mininterval=0 and miniters=1: tqdm redraws whenever it is told, the throttling is ours.
        self.bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", file=stream,
                        leave=False, dynamic_ncols=True, mininterval=0, miniters=1)
        self.loss_sum, self.done, self.shown = 0.0, 0, 0
        self.last_draw = time.perf_counter()

    def batch_done(self, loss):
        self.loss_sum += loss
        self.done += 1
        now = time.perf_counter()
        if now - self.last_draw >= self.refresh_seconds or self.done == self.bar.total:
            self.bar.set_postfix_str(f"loss {self.loss_sum / self.done:.4f}", refresh=False)
            self.bar.update(self.done - self.shown)
            self.shown, self.last_draw = self.done, now

    def close(self):
        self.bar.close()


def draws_bars(stream):
    """Whether a progress bar on ``stream`` can be seen: a terminal that reports a width.

    A pseudo-terminal opened by a program (a job runner, ``script``, a test)
    often reports 0 columns, where tqdm draws nothing at all; progress then
    takes the form of plain lines instead.
    """
    try:
        if not stream.isatty():
            return False
    except (AttributeError, ValueError):        # no isatty, or a closed stream
        return False
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, ValueError, OSError):
        return True         # a terminal without a descriptor to ask (an editor's console): take its word
