"""What a model is trained to do: one :class:`Task` per kind of target.

A loss points at its task (``hg.SoftmaxCrossEntropy.task`` is
:data:`CLASSIFICATION`), and everything that depends on the kind of target asks
the task instead of comparing names:

* **targets**: what they are, how they are checked (:meth:`Task.check_targets`),
  where a run may find them (a label column of any dataset, or numeric columns
  of the user's own table), and random examples for gradient checks;
* **figures**: what ``fit`` tallies beside the loss each epoch (:meth:`Task.tally`, on
  the host whatever device the model computes on;
  ``train_<key>``, ``val_<key>`` in the history) and how the console, the
  progress line and the plots name them (:attr:`Task.figures`);
* **held-out data**: the test figures (:meth:`Task.scores`), the ``evaluate``
  summary (:meth:`Task.summary`), the plots that fit (:attr:`Task.test_plots`,
  drawn by :mod:`handgrad.report.plots`) and the predictions file's columns
  (:meth:`Task.prediction_table`).

Predictions themselves are read off the logits by the loss
(:meth:`handgrad.Loss.predict`: the largest logit, the logits, ``e^z``, or
``σ(z) > ½``), which knows its output activation.

Adding a task is one subclass here: it registers itself under its ``name``.
A task compares equal to its name (``hg.SquaredError.task == "regression"``),
so files, settings and user code that spell a task as text keep working.

The three tasks:

* ``"classification"``: integer labels ``y`` of shape (n,) (or a target
  matrix of one-hot rows or class probabilities, shape (n, K)); accuracy.
* ``"regression"``: real targets of shape (n,) or (n, K); R² and RMSE.
* ``"multilabel"``: a target matrix (n, K) in [0, 1], K labels that may be
  present together; label and subset accuracy.
"""

import csv
import io
from dataclasses import dataclass

import numpy as np

from handgrad.arrays import NUMPY, to_numpy
from handgrad.errors import DataError, HandgradError
from handgrad.registry import Registered, Registry
from handgrad.report import metrics

TASKS = Registry("task")


@dataclass(frozen=True)
class Figure:
    """One figure a task reports beside the loss.

    ``key`` names it in the history (``train_<key>``, ``val_<key>``) and in
    the test scores (``test_<key>``); ``label`` is how the console and the
    plots write it; ``short`` is its name on the per-epoch progress line;
    ``format`` its format specification on the console.
    """

    key: str
    label: str
    short: str
    format: str = ".4f"


class Task(Registered, registry=TASKS):
    """Base class: what a kind of target needs from the rest of handgrad.

    A subclass sets :attr:`name` and answers each question below; defining it
    registers it (see :func:`get`).

    Attributes
    ----------
    name : str
        How files, settings and messages spell the task.
    figures : tuple of Figure
        What ``fit`` reports per epoch beside the loss, in the console's order.
    output_activation : str
        scikit-learn's name (``out_activation_``) for what turns logits into
        predictions under the task's usual loss (a loss may name its own).
    label_column : bool
        True when the targets are one column of labels (any dataset); False
        when they are numeric columns of the user's own table, one per output,
        so the model's outputs are named after those columns.
    target_columns : str
        What its target columns hold, in words (``"numeric target columns"``).
    target_remedy : str
        What to tell a user whose target column the task cannot read.
    test_plots : tuple of str
        The plots of held-out predictions that fit, drawn by ``train`` and
        ``evaluate`` (names in :data:`handgrad.report.plots.PLOT_FILES`).
    evaluate_plots : tuple of str
        Plots ``evaluate`` draws besides (the misclassified images of a
        classifier; a plot that needs images is skipped without them).
    """

    name = None
    figures = ()
    output_activation = None
    label_column = False
    target_columns = "a class label column"
    target_remedy = ""
    test_plots = ()
    evaluate_plots = ()

    def __eq__(self, other):
        if isinstance(other, Task):
            return self.name == other.name
        return self.name == other if isinstance(other, str) else NotImplemented

    def __hash__(self):
        return hash(self.name)

    def __str__(self):
        return self.name

    def __repr__(self):
        return f"<task {self.name}>"

    # -- targets --

    def check_targets(self, y, n_samples, n_outputs, dtype):
        """``y`` as a loss of this task reads it, or a one-line :class:`~handgrad.DataError` with the remedy."""
        raise NotImplementedError

    def check_table_targets(self, Y, names, source):
        """Refuse target columns a table may hold but this task cannot train on (none by default)."""

    def example_targets(self, rng, n, k):
        """Random valid targets for ``n`` rows and ``k`` outputs, in each form the task reads: ``[(y, form), ...]``."""
        raise NotImplementedError

    def model_targets(self, y, dataset_classes, model_classes, source):
        """A dataset's targets ``y`` as the model's outputs read them, or a one-line DataError."""
        raise NotImplementedError

    # -- figures --

    def tally(self, loss):
        """A fresh accumulator of :attr:`figures` over minibatches: ``add(logits, y)``, then ``figures(prefix)``."""
        raise NotImplementedError

    def scores(self, y_true, predicted):
        """``{figure key: value}`` of held-out targets against predictions (as ``loss.predict`` gives them)."""
        raise NotImplementedError

    def summary(self, y_true, predicted, names):
        """The plain-text report ``handgrad evaluate`` prints: overall figures, then one row per output."""
        raise NotImplementedError

    def figures_text(self, record, prefix):
        """``"accuracy 0.9650"``, ``"R² 0.9412  RMSE 1.234"``: the figures ``record`` holds under ``prefix``."""
        return "  ".join(f"{f.label} {record[f'{prefix}_{f.key}']:{f.format}}" for f in self.figures
                         if record.get(f"{prefix}_{f.key}") is not None)

    # -- outputs --

    def describe_outputs(self, names):
        """What a model of this task outputs, in words: ``"10 classes"``, ``"target price"``, ``"3 labels (a, b)"``."""
        raise NotImplementedError

    def probabilities(self, model, loss, X):
        """What the predictions file adds beside each prediction (class or label probabilities), or None."""
        return None

    def prediction_table(self, classes, names, predicted, probabilities):
        """The predictions file as CSV text: a header row, then one row per sample."""
        raise NotImplementedError

    def export(self, graph, logits, values, classes):
        """Write the graph outputs of a model of this task into an ONNX graph (see :mod:`handgrad.io.onnx`).

        ``logits`` and ``values`` name the network's output and what the loss
        reads it as (probabilities, or values in the target's units);
        ``classes`` holds the output units' labels as int64 or strings.
        """
        raise HandgradError(f"the {self.name} task has no ONNX outputs; define its export(graph, logits, values, "
                            "classes) (see docs/onnx.md)")


def _csv(header, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _plural(n, word):
    return f"{word}{'s' if n != 1 else ''}"


# -- classification --------------------------------------------------------------

class Classification(Task):
    """One class per sample: the softmax losses (seeds 000–004).

    Targets are integer labels ``0..K−1`` of shape (n,), or a target matrix
    (n, K) of one-hot rows or class probabilities.  The figure is accuracy:
    the share of rows whose largest logit is the label (or the largest entry
    of the target row).
    """

    name = "classification"
    figures = (Figure("accuracy", "accuracy", "acc"),)
    output_activation = "softmax"
    label_column = True
    test_plots = ("confusion_matrix",)
    evaluate_plots = ("misclassified",)

    def check_targets(self, y, n_samples, n_outputs, dtype):
        """Integer labels of shape (n,) in ``0..n_outputs−1``, or a finite non-negative (n, K) target matrix."""
        try:
            arr = to_numpy(y)
        except Exception as exc:
            raise DataError(f"y cannot be read as an array ({exc}); pass labels of shape (n,) or targets of "
                            "shape (n, C)") from None
        if arr.ndim == 0 or arr.ndim > 2:
            raise DataError(f"y must be labels of shape (n,) or a target matrix (n, C), got shape {arr.shape}")
        if arr.shape[0] != n_samples:
            raise DataError(f"X has {n_samples} samples but y has {arr.shape[0]}; pass one target per sample")
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise DataError(f"y has dtype {arr.dtype}; encode class labels as integers 0..{n_outputs - 1} "
                            "(hg.MLPClassifier accepts strings)")
        if arr.ndim == 1:
            return _check_labels(arr, n_outputs)
        if arr.shape[1] != n_outputs:
            raise DataError(f"target matrix has {arr.shape[1]} columns but the model has {n_outputs} outputs; "
                            "one column per class")
        out = np.ascontiguousarray(arr, dtype=dtype)
        if not np.isfinite(out).all() or (out < 0).any():
            raise DataError("target matrix must be finite and non-negative; use one-hot rows or class probabilities")
        return out

    def example_targets(self, rng, n, k):
        return [(rng.integers(0, k, size=n), "labels"), (rng.dirichlet(np.ones(k), size=n), "probabilities")]

    def model_targets(self, y, dataset_classes, model_classes, source):
        """Labels re-indexed from the dataset's classes to the model's output units."""
        position = {label: i for i, label in enumerate(model_classes)}
        mapping = np.empty(len(dataset_classes), dtype=np.intp)
        for i, label in enumerate(dataset_classes):
            if label not in position:
                raise DataError(f"{source} has class {label!r}, which the model does not know (its classes: "
                                f"{', '.join(map(str, model_classes))}); evaluate on data with the same labels")
            mapping[i] = position[label]
        return mapping[y]

    def tally(self, loss):
        return _Accuracy(loss)

    def scores(self, y_true, predicted):
        return {"accuracy": float(np.mean(np.asarray(predicted) == np.asarray(y_true)))}

    def summary(self, y_true, predicted, names):
        return metrics.format_report(metrics.confusion_matrix(y_true, predicted, len(names)), names)

    def describe_outputs(self, names):
        return f"{len(names)} classes"

    def probabilities(self, model, loss, X):
        return model.predict_proba(X)

    def prediction_table(self, classes, names, predicted, probabilities):
        """``label`` (and ``name`` where names say more than the labels, as Fashion-MNIST's), then ``prob_<class>``.

        The label is the most probable class, read off the probabilities written beside it.
        """
        named = list(names) != [str(c) for c in classes]
        header = ["label"] + (["name"] if named else []) + [f"prob_{c}" for c in classes]
        best = probabilities.argmax(axis=1)
        rows = ([classes[i]] + ([names[i]] if named else []) + [f"{p:.6g}" for p in row]
                for i, row in zip(best, probabilities))
        return _csv(header, rows)

    def export(self, graph, logits, values, classes):
        """``label`` (N,), the class of the largest logit (as ``predict``), and ``probabilities`` (N, K)."""
        index = graph.op("ArgMax", logits, axis=1, keepdims=0)
        graph.output("label", graph.op("Gather", graph.constant(classes, name="classes"), index), classes.dtype)
        graph.output("probabilities", values, shape=(len(classes),))


def _check_labels(arr, n_classes):
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise DataError("y holds non-integer values; pass integer class labels 0..C-1")
    # The range is checked before the cast to intp: 1e30 or 2**63 would not
    # survive the cast (a RuntimeWarning, then a wrapped, misleading value).
    low, high = arr.min(), arr.max()
    if low < 0 or high >= n_classes:
        raise DataError(f"labels must lie in 0..{n_classes - 1} for a model with {n_classes} outputs, "
                        f"found {low:g}..{high:g}")
    return arr.astype(np.intp)


def one_hot(labels, n_classes, dtype):
    """Rows of the identity: ``Y[i, labels[i]] = 1`` (NumPy arrays; ``ops.one_hot`` of :mod:`handgrad.arrays` for
    any namespace)."""
    return NUMPY.one_hot(labels, n_classes, dtype)


class _Accuracy:
    """Rows right, counted by ``argmax``, or taken from the loss where its last forward on these very logits and
    labels counted them (``loss.counted_correct``: the compiled softmax cross-entropy finds each row's largest
    logit anyway)."""

    def __init__(self, loss=None):
        self.correct, self.n = 0, 0
        self._counted = getattr(loss, "counted_correct", None)

    def add(self, Z, y):
        counted = None if self._counted is None else self._counted(Z, y)
        if counted is not None:
            self.correct += counted
            self.n += Z.shape[0]
            return
        Z, y = to_numpy(Z), to_numpy(y)
        truth = y if y.ndim == 1 else y.argmax(axis=1)
        self.correct += int(np.count_nonzero(Z.argmax(axis=1) == truth))
        self.n += Z.shape[0]

    def figures(self, prefix):
        return {f"{prefix}_accuracy": self.correct / self.n}


# -- targets in columns: regression and multilabel ------------------------------

class _ColumnTask(Task):
    """A task whose targets are numeric columns of the user's table, one per output, named after them."""

    name = None         # a kind of task, not a task: not registered

    def model_targets(self, y, dataset_classes, model_classes, source):
        """The (n, K) targets, checked against the model's K outputs."""
        k, found = len(model_classes), [str(name) for name in dataset_classes]
        if y.shape[1] != k:
            raise DataError(f"{source} has {y.shape[1]} target {_plural(y.shape[1], 'column')} ({', '.join(found)}) "
                            f"but the model predicts {k} ({', '.join(map(str, model_classes))}); "
                            f"pass --target naming {k} {_plural(k, 'column')}")
        return y


def _numeric_targets(y, n_samples, expected):
    try:
        arr = to_numpy(y)
    except Exception as exc:
        raise DataError(f"y cannot be read as an array ({exc}); pass {expected}") from None
    if arr.ndim not in (1, 2):
        raise DataError(f"y must be {expected}, got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise DataError(f"X has {n_samples} samples but y has {arr.shape[0]}; pass one target per sample")
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise DataError(f"y has dtype {arr.dtype}; pass {expected} of numbers")
    return arr


def _as_columns(arr, n_outputs, what):
    if arr.ndim == 1:
        if n_outputs != 1:
            raise DataError(f"{what} of shape (n,) need a model with one output, this one has {n_outputs}; "
                            f"pass targets of shape (n, {n_outputs})")
        return arr.reshape(-1, 1)
    if arr.shape[1] != n_outputs:
        raise DataError(f"{what} have {arr.shape[1]} columns but the model has {n_outputs} outputs; "
                        "one column per output")
    return arr


class Regression(_ColumnTask):
    """Real targets, one column per output: squared error and the Poisson deviance.

    The figures are ``rmse = √(mean over all entries of (ŷ − y)²)`` and ``r2``,
    the coefficient of determination ``1 − SSE_k/SST_k`` averaged over the K
    outputs (scikit-learn's ``r2_score`` default); an output whose targets are
    constant scores 1 when predicted exactly and 0 otherwise, as scikit-learn's.
    ``ŷ = loss.predict(z)`` is the loss's prediction (``z`` itself for squared
    error, ``e^z`` for the Poisson deviance).
    """

    name = "regression"
    figures = (Figure("r2", "R²", "r2"), Figure("rmse", "RMSE", "rmse", ".4g"))
    output_activation = "identity"
    target_columns = "numeric target columns"
    target_remedy = ("a regression loss needs numeric targets: name a numeric column with --target, "
                     "or train a classifier with --loss cross-entropy")
    test_plots = ("predicted_vs_true",)

    def check_targets(self, y, n_samples, n_outputs, dtype):
        """Real targets as a finite (n, K) array of ``dtype``; (n,) is read as one column when K is 1."""
        arr = _numeric_targets(y, n_samples, "real targets of shape (n,) or (n, K)")
        arr = _as_columns(arr, n_outputs, "regression targets")
        with np.errstate(over="ignore"):        # values beyond float32's range are reported below
            out = np.ascontiguousarray(arr, dtype=dtype)
        if not np.isfinite(out).all():
            raise DataError(f"regression targets must be finite numbers representable in {np.dtype(dtype).name}; "
                            "remove or impute NaN/inf targets, or rescale them")
        return out

    def example_targets(self, rng, n, k):
        """Non-negative reals: valid for the Poisson deviance's counts too."""
        return [(rng.uniform(0, 3, size=(n, k)), "values")]

    def tally(self, loss):
        return _RegressionTally(loss.predict)

    def scores(self, y_true, predicted):
        scores = metrics.regression_scores(y_true, predicted)
        return {"r2": scores["r2"], "rmse": scores["rmse"]}

    def summary(self, y_true, predicted, names):
        return metrics.format_regression_report(metrics.regression_scores(y_true, predicted), names)

    def describe_outputs(self, names):
        return f"{_plural(len(names), 'target')} {', '.join(map(str, names))}"

    def prediction_table(self, classes, names, predicted, probabilities):
        """One column per target, named as in training, holding the predicted value in the target's units."""
        values = np.asarray(predicted).reshape(len(predicted), -1)
        return _csv([str(name) for name in classes], ([f"{v:.8g}" for v in row] for row in values))

    def export(self, graph, logits, values, classes):
        """``variable`` (N, K): the predicted values, one column per target (skl2onnx's name)."""
        graph.output("variable", values, shape=(len(classes),))


class _RegressionTally:
    """Squared errors per output, and the targets' mean and spread merged batch by batch (Chan et al.)."""

    def __init__(self, predict):
        self.predict = predict
        self.n, self.sse, self.mean, self.m2 = 0, 0.0, 0.0, 0.0

    def add(self, Z, y):
        Z = to_numpy(Z)
        Y = np.asarray(to_numpy(y), dtype=np.float64).reshape(Z.shape[0], -1)
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


class Multilabel(_ColumnTask):
    """K labels per sample that may be present together: the sigmoid binary cross-entropy.

    Targets are a matrix (n, K) in [0, 1] (1 present, 0 absent, or a
    probability).  The figures are ``label_accuracy``, the share of (sample,
    label) entries predicted right (the loss's 0/1 prediction against
    ``y > ½``), and ``subset_accuracy``, the share of samples with every label
    right (scikit-learn's ``accuracy_score`` on label matrices).
    """

    name = "multilabel"
    figures = (Figure("label_accuracy", "label accuracy", "label_acc"),
               Figure("subset_accuracy", "subset accuracy", "subset_acc"))
    output_activation = "logistic"
    target_columns = "0/1 label columns"
    target_remedy = ("a multilabel loss needs 0/1 label columns: name them with --target a,b,c, "
                     "or train a classifier on one label column with --loss cross-entropy")
    test_plots = ("label_scores",)

    def check_targets(self, y, n_samples, n_outputs, dtype):
        """A (n, K) target matrix in [0, 1] (1: label present, 0: absent, or a probability)."""
        arr = _numeric_targets(y, n_samples, "a 0/1 target matrix of shape (n, K)")
        arr = _as_columns(arr, n_outputs, "multilabel targets")
        out = np.ascontiguousarray(arr, dtype=dtype)
        if not np.isfinite(out).all() or (out < 0).any() or (out > 1).any():
            raise DataError("multilabel targets must lie in [0, 1], one column per label (1 present, 0 absent, "
                            "or a probability); rescale or binarise them")
        return out

    def check_table_targets(self, Y, names, source):
        """Refuse a target cell that is neither 0 nor 1, naming its column and row."""
        bad = (Y != 0) & (Y != 1)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise DataError(f"{source}: the label column {names[col]!r} holds {Y[row, col]:g} (data row {row + 1}); "
                            "a multilabel target holds 0 (absent) or 1 (present) in every cell: binarise it, "
                            "or train a regressor with --loss squared-error")

    def example_targets(self, rng, n, k):
        return [(rng.integers(0, 2, size=(n, k)).astype(float), "labels"),
                (rng.uniform(0, 1, size=(n, k)), "probabilities")]

    def tally(self, loss):
        return _MultilabelTally(loss.predict)

    def scores(self, y_true, predicted):
        scores = metrics.multilabel_scores(y_true, predicted)
        return {"label_accuracy": scores["label_accuracy"], "subset_accuracy": scores["subset_accuracy"]}

    def summary(self, y_true, predicted, names):
        return metrics.format_multilabel_report(metrics.multilabel_scores(y_true, predicted), names)

    def describe_outputs(self, names):
        return f"{len(names)} {_plural(len(names), 'label')} ({', '.join(map(str, names))})"

    def probabilities(self, model, loss, X):
        return model.predict_proba(X, loss=loss)

    def prediction_table(self, classes, names, predicted, probabilities):
        """A 0/1 column per label, then each label's probability (``prob_<label>``)."""
        header = [str(name) for name in classes] + [f"prob_{name}" for name in classes]
        rows = ([int(v) for v in row] + [f"{q:.6g}" for q in p] for row, p in zip(predicted, probabilities))
        return _csv(header, rows)

    def export(self, graph, logits, values, classes):
        """``label`` (N, K), 1 where a label's logit is above 0 (as ``predict``), and ``probabilities`` (N, K)."""
        present = graph.op("Greater", logits, graph.constant(0.0, name="zero"))
        graph.output("label", graph.cast(present, np.int64), np.int64, shape=(len(classes),))
        graph.output("probabilities", values, shape=(len(classes),))


class _MultilabelTally:
    """Entries and whole rows right, reading predictions through the loss (``σ(z) > ½`` for the sigmoid BCE)."""

    def __init__(self, predict):
        self.predict = predict
        self.entries_right, self.rows_right, self.n, self.k = 0, 0, 0, 1

    def add(self, Z, y):
        Z = to_numpy(Z)
        right = self.predict(Z) == (to_numpy(y).reshape(Z.shape) > 0.5)
        self.entries_right += int(np.count_nonzero(right))
        self.rows_right += int(np.count_nonzero(right.all(axis=1)))
        self.n, self.k = self.n + Z.shape[0], Z.shape[1]

    def figures(self, prefix):
        return {f"{prefix}_label_accuracy": self.entries_right / (self.n * self.k),
                f"{prefix}_subset_accuracy": self.rows_right / self.n}


# -- looking tasks up ------------------------------------------------------------

CLASSIFICATION, REGRESSION, MULTILABEL = Classification(), Regression(), Multilabel()
_INSTANCES = {}


def get(task):
    """The :class:`Task` named ``task`` (a name or a Task), or a one-line error listing the tasks."""
    if isinstance(task, Task):
        return task
    for cls in TASKS:
        if cls.name == task:
            return _INSTANCES.setdefault(cls, cls())
    raise HandgradError(f"unknown task {task!r}; a task is one of {', '.join(names())}")


def names():
    """The name of every registered task, built-in or user-defined."""
    return [cls.name for cls in TASKS]


def all_tasks():
    """One instance of every registered task."""
    return [get(name) for name in names()]


def of(loss):
    """The task of ``loss`` (classification for None or a loss that declares none)."""
    return get(getattr(loss, "task", None) or CLASSIFICATION) if loss is not None else CLASSIFICATION


_INSTANCES.update({type(task): task for task in (CLASSIFICATION, REGRESSION, MULTILABEL)})
