"""Callbacks: what the training loop calls at the start, after each batch and epoch, and at the end.

A callback may stop training by setting ``ctx.stop = True`` in
``on_epoch_end``.  ``ctx`` is the :class:`~handgrad.training.TrainingContext`
of the run: the model, loss, optimizer, history and current epoch.
"""

import sys

import numpy as np

from .errors import HandgradError


class Callback:
    def on_train_begin(self, ctx):
        pass

    def on_batch_end(self, ctx, batch, n_batches, loss):
        """After each optimizer step; ``loss`` is that minibatch's objective.

        Only callbacks that override this method are called per batch, so the
        hook costs nothing to runs that do not use it.
        """

    def on_epoch_end(self, ctx, record):
        pass

    def on_train_end(self, ctx):
        pass


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    ``mode="min"`` for losses, ``"max"`` for accuracies.  With
    ``restore_best=True`` the model ends with the weights of its best epoch.
    """

    def __init__(self, monitor="val_loss", patience=10, min_delta=0.0, mode="min", restore_best=True):
        if mode not in ("min", "max"):
            raise HandgradError(f"mode must be 'min' or 'max', got {mode!r}")
        if patience < 1:
            raise HandgradError(f"patience must be at least 1, got {patience!r}")
        self.monitor, self.patience, self.min_delta = monitor, int(patience), float(min_delta)
        self.mode, self.restore_best = mode, restore_best
        self.best, self.best_epoch, self.best_weights, self.wait = None, None, None, 0

    def _improved(self, value):
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, ctx, record):
        value = record.get(self.monitor)
        if value is None:
            raise HandgradError(f"early stopping monitors {self.monitor!r}, which this run does not record; "
                                f"recorded: {', '.join(record)}")
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, record["epoch"], 0
            if self.restore_best:
                self.best_weights = ctx.model.get_weights()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                ctx.stop = True

    def on_train_end(self, ctx):
        if self.restore_best and self.best_weights is not None:
            ctx.model.set_weights(self.best_weights)

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "best_weights": self.best_weights}

    def load_state_dict(self, state):
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], int(state["wait"])
        weights = state.get("best_weights")
        self.best_weights = None if weights is None else np.array(weights)


class EpochLogger(Callback):
    """One line per epoch on ``stream`` (default stderr): loss, accuracies, time."""

    def __init__(self, stream=None):
        self.stream = stream

    def on_epoch_end(self, ctx, record):
        stream = self.stream or sys.stderr
        parts = [f"epoch {record['epoch'] + 1}/{ctx.epochs}", f"loss {record['train_loss']:.4f}",
                 f"acc {record['train_accuracy']:.4f}"]
        if "val_accuracy" in record:
            parts.append(f"val_loss {record['val_loss']:.4f}")
            parts.append(f"val_acc {record['val_accuracy']:.4f}")
        parts.append(f"{record['seconds']:.2f}s")
        print("  ".join(parts), file=stream, flush=True)
