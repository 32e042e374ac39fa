"""The figures ``fit`` and ``evaluate`` report beside the loss, picked by the loss's ``task``.

Each tally accumulates over minibatches (``add(logits, y)``) and reports
once (``figures(prefix)``), so an epoch's figures cover every sample it saw
without keeping the predictions:

* classification: ``accuracy``, the share of rows whose largest logit is
  the label (or the largest entry of the target row);
* regression: ``rmse = √(mean over all entries of (ŷ − y)²)`` and ``r2``, with
  ``ŷ = loss.predict(z)`` the loss's prediction (``z`` itself for squared
  error, ``e^z`` for the Poisson deviance),
  the coefficient of determination ``1 − SSE_k/SST_k`` averaged over the K
  outputs (scikit-learn's ``r2_score`` default); an output whose targets are
  constant scores 1 when predicted exactly and 0 otherwise, as scikit-learn's;
* multilabel: ``label_accuracy``, the share of (sample, label) entries
  predicted right (``z > 0`` against ``y > ½``), and ``subset_accuracy``,
  the share of samples with every label right (scikit-learn's
  ``accuracy_score`` on label matrices).
"""

import numpy as np

from handgrad.errors import HandgradError


class _Accuracy:
    def __init__(self):
        self.correct, self.n = 0, 0

    def add(self, Z, y):
        truth = y if y.ndim == 1 else y.argmax(axis=1)
        self.correct += int(np.count_nonzero(Z.argmax(axis=1) == truth))
        self.n += Z.shape[0]

    def figures(self, prefix):
        return {f"{prefix}_accuracy": self.correct / self.n}


class _Regression:
    """Squared errors per output, and the targets' mean and spread merged batch by batch (Chan et al.)."""

    def __init__(self, predict):
        self.predict = predict
        self.n, self.sse, self.mean, self.m2 = 0, 0.0, 0.0, 0.0

    def add(self, Z, y):
        Y = np.asarray(y, dtype=np.float64).reshape(Z.shape[0], -1)
        self.sse = self.sse + np.square(self.predict(Z) - Y, dtype=np.float64).sum(axis=0)
        n_b, mean_b = Y.shape[0], Y.mean(axis=0)
        m2_b = np.square(Y - mean_b).sum(axis=0)
        total = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / total)
        self.m2 = self.m2 + m2_b + delta ** 2 * (self.n * n_b / total)
        self.n = total

    def figures(self, prefix):
        sse, sst = np.atleast_1d(self.sse), np.atleast_1d(self.m2)
        constant = sst == 0
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(constant, np.where(sse == 0, 1.0, 0.0), 1 - sse / np.where(constant, 1, sst))
        return {f"{prefix}_rmse": float(np.sqrt(sse.sum() / (self.n * sse.size))),
                f"{prefix}_r2": float(r2.mean())}


class _Multilabel:
    def __init__(self):
        self.entries_right, self.rows_right, self.n, self.k = 0, 0, 0, 1

    def add(self, Z, y):
        right = (Z > 0) == (np.asarray(y).reshape(Z.shape) > 0.5)
        self.entries_right += int(np.count_nonzero(right))
        self.rows_right += int(np.count_nonzero(right.all(axis=1)))
        self.n, self.k = self.n + Z.shape[0], Z.shape[1]

    def figures(self, prefix):
        return {f"{prefix}_label_accuracy": self.entries_right / (self.n * self.k),
                f"{prefix}_subset_accuracy": self.rows_right / self.n}


TALLIES = {"classification": _Accuracy, "regression": _Regression, "multilabel": _Multilabel}


def tally(loss):
    """A fresh accumulator of the figures for ``loss``'s task (classification when it declares none)."""
    task = getattr(loss, "task", "classification")
    if task not in TALLIES:
        raise HandgradError(f"{type(loss).__name__} declares task {task!r}; "
                            f"a loss's task is one of {', '.join(TALLIES)}")
    return TALLIES[task](loss.predict) if task == "regression" else TALLIES[task]()
