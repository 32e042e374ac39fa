"""``fit``: minibatch training by the hand-derived gradients.

The loop knows a model only through ``forward``, ``backward`` and its flat
parameter and gradient vectors, and an optimizer only through ``step`` (plus,
where the optimizer has them, ``lr``, ``state_dict`` and ``load_state_dict``:
see :func:`fit`).  Everything optional (early stopping, progress,
checkpoints) is a callback.

Determinism: the validation split, each epoch's shuffle and each epoch's
dropout masks come from generators seeded by ``(seed, purpose, epoch)``, so
the same seed (and the same BLAS thread count) gives bit-identical weights,
and a run resumed at epoch k shuffles and drops units exactly as the
uninterrupted run did.

Devices.  ``fit`` trains where the model is (:meth:`Sequential.to
<handgrad.Sequential.to>`): the data is checked where it is given and copied
to the model's device once; each epoch's order, the masks and the shifts are
drawn on the host, by the same generators, and copied there; the losses,
the figures and the divergence check read Python floats.  A seed therefore
trains the same model on every backend, to rounding.
"""

import difflib
import math
import operator
import sys
import time
from dataclasses import dataclass
from numbers import Real

import numpy as np

from handgrad import _compiled
from handgrad.arrays import NUMPY, to_numpy
from handgrad.errors import HandgradError, TrainingDiverged
from handgrad.nn.losses import Loss
from handgrad.nn.model import PREDICT_BATCH_SIZE, Sequential
from handgrad.nn.objective import add_l2_gradient, data_gradient_step, l2_value
from handgrad.optim.optimizers import Adam, Optimizer, check_compiled
from handgrad.tasks import of as task_of
from handgrad.training.callbacks import Callback, EarlyStopping, EpochLogger
from handgrad.validation import check_features, is_sparse

_SPLIT, _SHUFFLE, _MASKS, _AUGMENT = 0, 1, 2, 3

# An epoch whose mean training loss exceeds this many times the run's loss
# scale has diverged.  The scale is the larger of the first minibatch's loss
# (before any update) and ln C, the cross-entropy of a uniform guess, so a
# resumed, well-trained model is judged against chance, not against its own
# small loss.  Measured on digits: lr = 1e3 puts the first epoch 1,600 to
# 2,000,000 times over this scale for ReLU, tanh and sigmoid networks, while
# runs that train, or merely stall, stay under 60 times it.
DIVERGENCE_FACTOR = 100.0

# When the scale is measured (fit's divergence_reference): once, on the run's first
# minibatch, or again on each epoch's first minibatch.
DIVERGENCE_REFERENCES = ("run", "epoch")


class History:
    """What ``fit`` recorded: a sequence of epoch records that also reads as a table of columns.

    An integer or a slice indexes the **epochs**, a string names a **column**:

    * ``len(history)`` is the number of epochs; ``for record in history``
      visits each epoch's record (a dict, see :func:`fit`) in order;
      ``history[-1]`` is the last one, ``history[2:5]`` a ``History`` of
      three; ``history.records`` is the list itself.
    * ``history["val_accuracy"]`` is that column as a list over the epochs
      (``None`` for an epoch that did not record it); ``"val_accuracy" in
      history`` asks whether any epoch recorded it; ``history.keys()`` lists
      the columns in the order they first appear.

    An epoch that is not there raises :class:`IndexError`, a column that is
    not there :class:`KeyError` naming the columns there are.  ``in`` asks
    about columns only, as ``in`` asks a dict about its keys.

    Parameters
    ----------
    records : list of dict, optional
        The epochs' records, in order; an empty history when None.

    See Also
    --------
    fit : Returns one.

    Examples
    --------
    >>> history = hg.History([{"epoch": 1, "train_loss": 0.9}, {"epoch": 2, "train_loss": 0.5}])
    >>> history["train_loss"], history[-1]["epoch"], "val_loss" in history
    ([0.9, 0.5], 2, False)
    """

    def __init__(self, records=None):
        """Start from ``records``, a list of dicts (one per epoch), or from nothing."""
        self.records = list(records or [])

    def append(self, record):
        self.records.append(record)

    def keys(self):
        """The column names, in the order the records first hold them."""
        return list(dict.fromkeys(key for record in self.records for key in record))

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self:
                raise KeyError(self._missing_column(key))
            return [record.get(key) for record in self.records]
        if isinstance(key, slice):
            return History(self.records[key])
        try:
            position = operator.index(key)
        except TypeError:
            raise TypeError(f"a History is indexed by an epoch position (int or slice) or a column name (str), "
                            f"not {type(key).__name__}") from None
        try:
            return self.records[position]
        except IndexError:
            raise IndexError(f"epoch position {position} is out of range: the history holds {len(self)} "
                             f"epoch{'s' if len(self) != 1 else ''}") from None

    def _missing_column(self, key):
        columns = self.keys()
        if not columns:
            return f"no column {key!r}: the history is empty"
        near = difflib.get_close_matches(key, columns, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        return f"no column {key!r}{hint}; the columns are {', '.join(columns)}"

    def __contains__(self, key):
        return isinstance(key, str) and any(key in record for record in self.records)

    def __iter__(self):
        return iter(self.records)

    def __len__(self):
        return len(self.records)

    def __repr__(self):
        columns = f"; columns {', '.join(self.keys())}" if self.records else ""
        return f"History({len(self)} epoch{'s' if len(self) != 1 else ''}{columns})"


@dataclass
class TrainingContext:
    """What callbacks see of a run.

    :func:`fit` builds one per run and hands it to every hook; a callback
    may set ``stop`` to end training after the current epoch.

    Parameters
    ----------
    model : Sequential
        The network being trained.
    loss : Loss
        Its loss.
    optimizer : Optimizer or object
        What updates the parameters.
    history : History
        The records so far.
    epochs : int
        The epoch the run stops after.
    seed : int
        The run's seed.
    epoch : int, default 0
        The current epoch, counted from 0.
    stop : bool, default False
        Set to True to end training after this epoch.
    loss_scale : float, optional
        The loss the divergence check compares each epoch against (see
        ``divergence_reference`` in :func:`fit`); None until measured.

    See Also
    --------
    Callback : The hooks that receive it.

    Examples
    --------
    >>> class Epochs(hg.Callback):
    ...     seen = []
    ...     def on_epoch_end(self, ctx, record):
    ...         self.seen.append((ctx.epoch, ctx.epochs, len(ctx.history)))
    >>> X, y = np.ones((8, 2)), np.arange(8) % 2
    >>> history = hg.fit(hg.mlp(2, [], 2, seed=0), hg.SoftmaxCrossEntropy(), X, y, epochs=2, seed=0,
    ...                  callbacks=[Epochs()])
    >>> Epochs.seen
    [(0, 2, 1), (1, 2, 2)]
    """

    model: object
    loss: object
    optimizer: object
    history: History
    epochs: int
    seed: int
    epoch: int = 0
    stop: bool = False
    loss_scale: float = None


@dataclass
class _Data:
    """The training rows of ``X``, ``y`` and ``w`` (``rows``: their indices, None for all) and the validation data.

    A validation split held out of ``X`` leaves ``X`` whole and lists the
    training rows, so the training data is never copied (60,000 MNIST images
    are 188 MB in float32); minibatches gather through ``rows``.
    """

    X: np.ndarray
    y: np.ndarray
    X_val: np.ndarray = None
    y_val: np.ndarray = None
    w: np.ndarray = None
    w_val: np.ndarray = None
    rows: np.ndarray = None

    @property
    def n_train(self):
        return self.X.shape[0] if self.rows is None else len(self.rows)


def fit(model, loss, X, y, *, optimizer=None, epochs=10, batch_size=128, l2=0.0, alpha=0.0,
        sample_weight=None, validation_fraction=0.0, validation_data=None, early_stopping=False,
        lr_schedule=None, callbacks=(), shuffle=True, seed=None, verbose=False,
        initial_epoch=0, history=None, augment=None, divergence_reference="run", compiled=None):
    """Train ``model`` on ``(X, y)`` and return its :class:`History`.

    Each epoch visits the training rows in minibatches (a fresh permutation
    per epoch by default); each minibatch runs the forward pass, the loss,
    the backward pass and one optimizer step on the objective
    ``J = loss(model(X_B), y_B) + (λ/2) Σ‖W‖²``.

    Parameters
    ----------
    model : Sequential
        The network; trained in place.
    loss : Loss
        The loss on its logits; its task decides the figures recorded.
    X : array of shape (n, d), or a SciPy sparse matrix or array
        The training inputs.  A sparse ``X``: minibatches are rows sliced
        from its CSR form and the first Dense layer multiplies them
        sparsely, so the data is never densified.  An array of any
        namespace: it is copied once to the model's namespace and device
        (a model on a GPU trains on GPU copies of ``X`` and ``y``); sparse
        data trains a model on NumPy only.
    y : array
        The targets, as ``loss`` reads them: labels (n,) for classification,
        values (n,) or (n, K) for regression, 0/1 rows (n, K) for multilabel.
    optimizer : Optimizer or object, default ``Adam(1e-3)``
        Any object with a method
        ``step(params, grads)`` will do: each minibatch calls it with two
        one-element lists, the model's flat parameter vector and the
        gradient of the whole objective (L2 included), and it updates the
        parameters in place.  If the object also has ``state_dict()`` and
        ``load_state_dict(state)``, its state is rolled back with the weights
        when training diverges (otherwise only the weights are); if it has an
        ``lr`` attribute, the history records it and ``lr_schedule`` sets it
        (a schedule needs one).  handgrad's optimizers (subclasses of
        :class:`~handgrad.optim.optimizers.Optimizer`) have all of these and
        add the L2 gradient inside their own update pass.
    epochs : int, default 10
        The epoch to stop after, counted from 1 (a resumed run continues to it).
    batch_size : int, default 128
        Rows per minibatch; the last one of an epoch may be shorter.
    l2 : float, default 0.0
        λ of the objective ``loss + (λ/2) Σ‖W‖²``.
    alpha : float, default 0.0
        scikit-learn's L2 penalty, per minibatch: on a batch ``B`` the
        decay is ``λ_B = l2 + alpha / W_B`` with ``W_B`` the batch's weight
        total (its size without weights), i.e. the batch minimises
        ``(Σ_B w_i L_i + (alpha/2) Σ‖W‖²) / W_B``.
    sample_weight : array of shape (n,), optional
        Non-negative weights: each minibatch's loss is the
        weighted mean ``Σ_B w_i L_i / Σ_B w_i`` (for a "mean" loss; the
        loss's ``forward`` must take ``sample_weight=``).  A minibatch whose
        weights sum to 0 is skipped.
    validation_fraction : float, default 0.0
        Share of ``(X, y)`` held out (seeded split), in [0, 1).
    validation_data : tuple, optional
        ``(X_val, y_val)`` (or ``(X_val, y_val, w_val)``): a validation set
        given explicitly instead.
    early_stopping : bool or EarlyStopping, default False
        ``True`` for :class:`EarlyStopping` on ``val_loss`` (or
        ``train_loss`` without validation data), or an ``EarlyStopping``.
    lr_schedule : callable, optional
        ``t -> lr``, ``t`` in (fractional) epochs (see :mod:`handgrad.optim.schedules`).
    callbacks : sequence of Callback, default ()
        Objects with ``on_train_begin/on_epoch_end/on_train_end`` (and
        optionally ``on_batch_end``, ``on_train_abort``): see :class:`Callback`.
    shuffle : bool or callable, default True
        True (a permutation per epoch, from ``seed``), False (the
        data's order), or a callable ``epoch -> order``, a permutation of
        the training rows' indices.
    seed : int, optional
        Seeds the split, the shuffles, the dropout masks and the
        augmentation; None draws one.
    verbose : bool or "auto", default False
        ``True`` shows progress on stderr; ``"auto"`` shows it only
        when stderr is a terminal; ``False`` is silent.
    initial_epoch : int, default 0
        The number of epochs already run: continue a run from a checkpoint.
    history : History, optional
        The history to append to, from that checkpoint.
    augment : callable, optional
        ``(Xb, rng) -> array``: transforms each training
        minibatch (a new array of the same shape; ``Xb`` is a reused buffer)
        before the forward pass, e.g. :func:`handgrad.data.augment.shift_images`.
        ``rng`` is a NumPy generator seeded from ``(seed, epoch)``, so a run
        is reproducible and a resumed one exact.  Validation and evaluation
        see the data as it is.  ``Xb`` is a NumPy array: for a model off
        NumPy the batch is brought to the host, transformed there and its
        result copied back to the device.
    divergence_reference : {"run", "epoch"}, default "run"
        Where the
        loss scale that the divergence check compares each epoch against is
        measured.  ``"run"``: on the run's first minibatch, before any
        update (at least ln C, see below), kept for the whole run.
        ``"epoch"``: again on each epoch's first minibatch, so that an epoch
        is judged against where it started; a run that may climb a long way
        before it settles and is not to be stopped for it (the scikit-learn
        estimators, whose own loop stops no run) uses it.
    compiled : bool or None, default None
        Whether the step runs handgrad's compiled kernels
        (:mod:`handgrad._compiled`) where they apply, on a model on NumPy:
        the optimizer update (``Optimizer.prepare``), each Dense layer fused
        with the activation after it (``Sequential.prepare``), the softmax
        cross-entropy on integer labels (``Loss.prepare``) and the minibatch
        gather.  None: the kernels whenever handgrad was built with them;
        True: the kernels (a :class:`~handgrad.errors.HandgradError` without
        them); False: NumPy only.  The environment variable
        ``HANDGRAD_NO_COMPILED`` turns the automatic choice to NumPy.  The
        weights are the same bit for bit either way, except that the float32
        cross-entropy kernel's exp and log may differ from NumPy's in the
        last bit (float64: the same here).  An optimizer that is not
        handgrad's runs its own ``step``.

    Returns
    -------
    History
        One record per epoch.  Every record holds ``epoch`` (counted from 1,
        as the progress display counts), ``train_loss`` (mean of the
        epoch's minibatch objectives, the L2 penalty included), the figures of
        the loss's task (on those minibatches, as they were seen), ``lr``,
        ``seconds`` (training time, evaluation excluded), ``l2_term`` when the
        objective has a penalty (the part of ``train_loss`` that is
        ``(λ/2) Σ‖W‖²``, averaged the same way) and, with validation data,
        ``val_loss`` (the loss alone) and the
        same figures on it (in inference mode).  The figures, by ``loss.task``
        (see :mod:`handgrad.tasks`): ``train_accuracy`` for
        classification; ``train_rmse`` and ``train_r2`` for regression;
        ``train_label_accuracy`` and ``train_subset_accuracy`` for multilabel
        (``val_…`` likewise).

    Raises
    ------
    TrainingDiverged
        After restoring the
        weights of the last finished epoch, if a minibatch loss becomes NaN or
        infinite, if the weights do, or if an epoch's mean loss exceeds
        ``DIVERGENCE_FACTOR`` (100) times the larger of the first minibatch's
        loss (of the run or of the epoch: ``divergence_reference``) and ln C,
        the loss of a uniform guess over C classes.
    HandgradError
        A setting out of range.
    DataError
        ``X``, ``y``, ``sample_weight`` or the validation data is unusable.

    See Also
    --------
    evaluate : The loss and figures of a trained model on other data.
    MLPClassifier, MLPRegressor : The same loop behind scikit-learn's interface.

    Notes
    -----
    Modes: the epochs run in training mode (Dropout drops, BatchNorm uses
    batch statistics); ``fit`` leaves the model in inference mode, also when
    it ends by an exception.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 4))
    >>> y = (X[:, 0] + X[:, 1] > 0).astype(int)
    >>> model = hg.mlp(4, [8], 2, seed=0)
    >>> history = hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=hg.Adam(0.05), epochs=20,
    ...                  batch_size=16, validation_fraction=0.25, seed=0)
    >>> len(history), history["train_loss"][-1] < history["train_loss"][0]
    (20, True)
    >>> sorted(history[-1])
    ['epoch', 'lr', 'seconds', 'train_accuracy', 'train_loss', 'val_accuracy', 'val_loss']
    >>> history[-1]["val_accuracy"] > 0.8
    True
    """
    optimizer = optimizer if optimizer is not None else Adam()
    _check_optimizer(optimizer, lr_schedule)
    _check_settings(epochs, batch_size, l2, validation_fraction, initial_epoch)
    if divergence_reference not in DIVERGENCE_REFERENCES:
        raise HandgradError(f"divergence_reference must be 'run' (the first minibatch of the run) or 'epoch' "
                            f"(the first of each epoch), got {divergence_reference!r}")
    check_compiled(compiled)
    if not np.isfinite(alpha) or alpha < 0:
        raise HandgradError(f"alpha must be a non-negative number, got {alpha!r}")
    seed = int(np.random.SeedSequence().entropy % 2**32) if seed is None else _check_seed(seed)
    data = _prepare_data(model, loss, X, y, validation_fraction, validation_data, seed, sample_weight)
    history = history if history is not None else History()
    ctx = TrainingContext(model, loss, optimizer, history, epochs, seed)
    cbs = _assemble_callbacks(early_stopping, verbose, callbacks, has_validation=data.X_val is not None)
    batch_callbacks = [cb for cb in cbs
                       if getattr(type(cb), "on_batch_end", Callback.on_batch_end) is not Callback.on_batch_end]
    if isinstance(optimizer, Optimizer):
        optimizer.prepare(model.flat_parameters, compiled)      # load the kernels now, not on the epoch clock
    gather = _prepare_compiled(model, loss, compiled)
    for cb in cbs:
        cb.on_train_begin(ctx)
    model.train()
    try:
        for epoch in range(initial_epoch, epochs):
            ctx.epoch = epoch
            if divergence_reference == "epoch":
                ctx.loss_scale = None       # measured again on this epoch's first minibatch
            record = _run_epoch(ctx, data, batch_size, (l2, alpha), lr_schedule, shuffle, batch_callbacks, augment,
                                gather)
            if data.X_val is not None:
                record.update(_evaluate(model, loss, data.X_val, data.y_val, sample_weight=data.w_val))
            history.append(record)
            for cb in cbs:
                cb.on_epoch_end(ctx, record)
            if ctx.stop:
                break
    except BaseException as error:      # KeyboardInterrupt too: a progress bar must not outlive the run
        model.eval()
        for cb in cbs:
            abort = getattr(cb, "on_train_abort", None)
            if abort is not None:
                abort(ctx, error)
        raise
    model.eval()
    for cb in cbs:
        cb.on_train_end(ctx)
    return history


def _prepare_compiled(model, loss, compiled):
    """Pass ``compiled=`` to the model and the loss; return the kernels for the minibatch gather, or None."""
    if isinstance(model, Sequential):
        model.prepare(compiled)
    if isinstance(loss, Loss):
        loss.prepare(compiled)
    return _compiled.for_run(compiled) if getattr(model, "ops", None) is NUMPY else None


def _check_optimizer(optimizer, lr_schedule):
    if not callable(getattr(optimizer, "step", None)):
        raise HandgradError(f"the optimizer {type(optimizer).__name__} has no step(params, grads) method; "
                            "pass hg.Adam(), hg.SGD() or an object with one")
    if lr_schedule is not None and not hasattr(optimizer, "lr"):
        raise HandgradError(f"lr_schedule sets optimizer.lr, but {type(optimizer).__name__} has no lr attribute; "
                            "give it one (and read it in step), or drop the schedule")


def _check_settings(epochs, batch_size, l2, validation_fraction, initial_epoch):
    if not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise HandgradError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise HandgradError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not np.isfinite(l2) or l2 < 0:
        raise HandgradError(f"l2 must be a non-negative number, got {l2!r}")
    if not 0 <= validation_fraction < 1:
        raise HandgradError(f"validation_fraction must lie in [0, 1), got {validation_fraction!r}")
    if not 0 <= initial_epoch <= epochs:
        raise HandgradError(f"initial_epoch must lie in 0..epochs, got {initial_epoch!r}")


def _check_seed(seed):
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise HandgradError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _prepare_data(model, loss, X, y, validation_fraction, validation_data, seed, sample_weight=None):
    """The checked data, on the model's device (targets and weights are checked on the host)."""
    X, y, w = _checked(model, loss, X, y, sample_weight)
    if validation_data is not None:
        X_val, y_val, w_val = _checked(model, loss, *validation_data[:2],
                                       validation_data[2] if len(validation_data) > 2 else None, name="X_val")
        return _Data(X, y, X_val, y_val, w, w_val)
    if not validation_fraction:
        return _Data(X, y, w=w)
    n_val = int(round(validation_fraction * X.shape[0]))
    if n_val < 1 or n_val >= X.shape[0]:
        raise HandgradError(f"validation_fraction={validation_fraction} leaves {n_val} of {X.shape[0]} samples "
                            "for validation; use more data or another fraction")
    train, val = validation_split(X.shape[0], validation_fraction, seed)
    ops = model.ops
    X_val = X[val] if is_sparse(X) else ops.take(X, ops.asarray(val), axis=0)
    y_val, w_val = ops.take(y, ops.asarray(val), axis=0), None if w is None else ops.take(w, ops.asarray(val), axis=0)
    return _Data(X, y, X_val, y_val, w, w_val, rows=train)


def _checked(model, loss, X, y, sample_weight, name="X"):
    """``(X, y, w)`` checked, and placed in the model's namespace and on its device."""
    X = check_features(X, model.dtype, model.n_features, name=name)
    y = loss.check_targets(y, X.shape[0], model.n_outputs, model.dtype)
    w = _check_weights(sample_weight, X.shape[0])
    ops = model.ops
    return model.placed(X), ops.asarray(y), None if w is None else ops.asarray(w)


def validation_split(n, validation_fraction, seed):
    """``(train, val)``: sorted indices of the rows ``fit`` trains on and of those it holds out.

    The split ``fit(validation_fraction=..., seed=seed)`` makes of ``n``
    rows: ``round(validation_fraction · n)`` rows drawn by a generator
    seeded with ``(seed, 0)``, whatever else the run does.
    """
    n_val = int(round(validation_fraction * n))
    order = np.random.default_rng([seed, _SPLIT]).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _check_weights(sample_weight, n):
    """Finite non-negative float64 weights of shape (n,), or None."""
    if sample_weight is None:
        return None
    try:
        w = np.asarray(to_numpy(sample_weight), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise HandgradError(f"sample_weight cannot be read as numbers ({exc}); pass one weight per sample") from None
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any():
        raise HandgradError(f"sample_weight must hold {n} finite non-negative numbers, one per sample; "
                            f"got shape {w.shape}")
    return w


def _assemble_callbacks(early_stopping, verbose, callbacks, has_validation):
    cbs = []
    if early_stopping is True:
        cbs.append(EarlyStopping(monitor="val_loss" if has_validation else "train_loss"))
    elif isinstance(early_stopping, EarlyStopping):
        cbs.append(early_stopping)
    elif early_stopping not in (False, None):
        raise HandgradError("early_stopping must be True, False or an hg.EarlyStopping")
    if verbose is True or (verbose == "auto" and sys.stderr.isatty()):
        cbs.append(EpochLogger())
    cbs.extend(callbacks)
    return cbs


def _augmented(augment, Xb, rng, ops):
    """``augment(Xb, rng)`` on the host batch, checked, on the model's device (for NumPy, the result itself)."""
    Xb = to_numpy(Xb)
    out = augment(Xb, rng)
    if getattr(out, "shape", None) != Xb.shape or getattr(out, "dtype", None) != Xb.dtype:
        raise HandgradError(f"augment(Xb, rng) must return an array of Xb's shape {Xb.shape} and dtype {Xb.dtype}, "
                            f"got {type(out).__name__} {getattr(out, 'shape', '')} {getattr(out, 'dtype', '')}")
    return ops.asarray(out)


def _epoch_order(ctx, shuffle, n):
    if callable(shuffle):
        order = np.asarray(shuffle(ctx.epoch))
        if order.shape != (n,) or order.dtype.kind not in "iu":
            raise HandgradError(f"shuffle(epoch) must return a permutation of range({n}), got an array of "
                                f"shape {order.shape} and dtype {order.dtype}")
        return order
    return np.random.default_rng([ctx.seed, _SHUFFLE, ctx.epoch]).permutation(n) if shuffle else np.arange(n)


def _run_epoch(ctx, data, batch_size, penalties, lr_schedule, shuffle, batch_callbacks, augment=None,
               kernels=None):
    """One pass over the training data in shuffled minibatches (gathered by ``kernels.take_rows`` if given)."""
    model, loss, optimizer = ctx.model, ctx.loss, ctx.optimizer
    ops = model.ops
    l2, alpha = penalties
    n = data.n_train
    batch_size = min(batch_size, n)
    order = _epoch_order(ctx, shuffle, n)
    if data.rows is not None:
        order = data.rows[order]                    # positions among the training rows -> rows of X
    model.reseed(ctx.seed, _MASKS, ctx.epoch)      # this epoch's dropout masks, whatever epoch the run started at
    augment_rng = None if augment is None else np.random.default_rng([ctx.seed, _AUGMENT, ctx.epoch])
    n_batches = -(-n // batch_size)
    snapshot = _Snapshot(model, optimizer)
    sparse = is_sparse(data.X)
    rows = order if sparse else ops.asarray(order)  # the order where the data is (for NumPy, itself)
    take_rows = _compiled_gather(kernels, data, sparse)
    if take_rows is not None:
        rows = np.ascontiguousarray(rows, dtype=np.int64)     # what the kernel reads (a shuffle may give int32)
    X_buf = None if sparse else ops.empty((batch_size, data.X.shape[1]), dtype=data.X.dtype)
    y_buf = ops.empty((batch_size,) + tuple(data.y.shape[1:]), dtype=data.y.dtype)
    total_loss, total_penalty, scores = 0.0, 0.0, task_of(loss).tally(loss)
    per_sample = getattr(loss, "reduction", "mean") == "mean"
    step_gradients, step_optimizer = _step_functions(optimizer)
    start = time.perf_counter()
    for b in range(n_batches):
        idx = rows[b * batch_size:min((b + 1) * batch_size, n)]
        n_b = idx.shape[0]
        yb = y_buf[:n_b, ...]
        # Contiguous gathers into reused buffers: by the compiled kernel (one
        # call per array, which also checks every index), or by np.take with
        # mode="clip" because NumPy buffers `out` under the default
        # mode="raise" (a 10x slower gather); the indices come from a
        # permutation of range(n), so none is clipped.  Sparse rows are sliced
        # from the CSR matrix: a small CSR batch.
        Xb = data.X[idx] if sparse else X_buf[:n_b, ...]
        if take_rows is not None:
            take_rows(data.X, idx, Xb)
            take_rows(data.y, idx, yb)
        else:
            if not sparse:
                ops.take(data.X, idx, axis=0, out=Xb, mode="clip")
            ops.take(data.y, idx, axis=0, out=yb, mode="clip")
        if augment is not None:
            Xb = _augmented(augment, Xb, augment_rng, ops)
        wb = None if data.w is None else ops.take(data.w, idx, axis=0)
        lam = l2
        if alpha or wb is not None:
            batch_weight = n_b if wb is None else float(ops.sum(wb))
            if batch_weight == 0:
                continue                       # nothing to learn from: no loss, no step
            lam = l2 + alpha / batch_weight
        if lr_schedule is not None:
            optimizer.lr = float(lr_schedule(ctx.epoch + b / n_batches))
        value, logits = step_gradients(model, loss, Xb, yb, lam, wb)
        if lam:
            penalty = l2_value(model.flat_parameters, model.n_decayed, lam)
            value += penalty
            total_penalty += penalty * n_b if per_sample else penalty
        if not math.isfinite(value):
            raise snapshot.diverged(ctx, f"training loss became {value} in epoch {ctx.epoch + 1}, batch {b + 1}")
        scores.add(logits, yb)
        # a "mean" objective is per sample, a "sum" one already covers the batch
        batch_total = value * n_b if per_sample else value
        total_loss += batch_total
        if ctx.loss_scale is None:
            ctx.loss_scale = max(batch_total / n_b, np.log(max(model.n_outputs, 2)))
        step_optimizer(model.flat_parameters, model.flat_gradients, lam, model.n_decayed)
        for cb in batch_callbacks:
            cb.on_batch_end(ctx, b, n_batches, value)
    seconds = time.perf_counter() - start
    if not ops.all_finite(model.flat_parameters):
        raise snapshot.diverged(ctx, f"weights became NaN or infinite in epoch {ctx.epoch + 1}")
    if total_loss / n > DIVERGENCE_FACTOR * ctx.loss_scale:
        raise snapshot.diverged(ctx, f"training loss rose to {total_loss / n:.4g} in epoch {ctx.epoch + 1}, over "
                                     f"{DIVERGENCE_FACTOR:g} times its starting scale {ctx.loss_scale:.4g}")
    record = {"epoch": ctx.epoch + 1, "train_loss": total_loss / n, **scores.figures("train"),
              "lr": getattr(optimizer, "lr", None), "seconds": seconds}
    if l2 or alpha:
        record["l2_term"] = total_penalty / n      # the part of train_loss that is the penalty
    return record


def _compiled_gather(kernels, data, sparse):
    """``kernels.take_rows`` when it can gather the minibatches of ``X`` and ``y`` (dense C-contiguous NumPy
    arrays), else None: ``ops.take`` gathers them."""
    if kernels is None or sparse:
        return None
    if not all(type(a) is np.ndarray and a.flags.c_contiguous for a in (data.X, data.y)):
        return None
    return kernels.take_rows


def _step_functions(optimizer):
    """``(gradients, update)`` for one minibatch step with this optimizer.

    ``gradients`` returns the data loss (the loop adds the penalty, so that
    it can also report it) and the logits.  handgrad's optimizers add the
    decay gradient ``λW`` inside their update pass (``step_flat``); any other
    object with ``step(params, grads)`` gets the full objective gradient.
    """
    if isinstance(optimizer, Optimizer):
        def gradients(model, loss, X, y, l2, sample_weight):
            return data_gradient_step(model, loss, X, y, 0.0, sample_weight)

        return gradients, optimizer.step_flat

    def objective_gradients(model, loss, X, y, l2, sample_weight):
        value, logits = data_gradient_step(model, loss, X, y, 0.0, sample_weight)
        add_l2_gradient(model.flat_parameters, model.flat_gradients, model.n_decayed, l2)
        return value, logits

    def update(param, grad, l2, n_decayed):
        optimizer.step([param], [grad])

    return objective_gradients, update


class _Snapshot:
    """Weights, buffers (running statistics) and optimizer state at the start of an epoch, to fall back on.

    An optimizer without ``state_dict`` and ``load_state_dict`` has its
    weights and the model's buffers restored only.
    """

    def __init__(self, model, optimizer):
        self.model, self.optimizer = model, optimizer
        self.weights = model.get_weights()
        self.buffers = model.get_buffers()
        self.stateful = callable(getattr(optimizer, "state_dict", None)) and \
            callable(getattr(optimizer, "load_state_dict", None))
        self.optimizer_state = optimizer.state_dict() if self.stateful else None

    def restore(self):
        self.model.set_weights(self.weights)
        self.model.set_buffers(self.buffers)
        if self.stateful:
            self.optimizer.load_state_dict(self.optimizer_state)

    def diverged(self, ctx, what):
        """Fall back, and return the error that reports ``what`` went wrong."""
        self.restore()
        lr = getattr(self.optimizer, "lr", None)
        remedy = f"lower the learning rate (now {lr:g})" if isinstance(lr, Real) else "lower the learning rate"
        return TrainingDiverged(f"{what}; weights restored to the end of epoch {ctx.epoch}; {remedy}",
                                history=ctx.history, epoch=ctx.epoch)


def evaluate(model, loss, X, y, batch_size=PREDICT_BATCH_SIZE, sample_weight=None):
    """Mean loss (without L2; weighted by ``sample_weight`` if given) and the figures of the loss's task.

    ``X`` and ``y`` are checked as ``fit`` checks them (a 2-D finite array
    with the model's feature count; targets as ``loss.check_targets`` reads
    them); bad input raises a one-line :class:`~handgrad.errors.DataError`.
    Rows go through the model ``batch_size`` at a time, in inference mode;
    the model's mode is left as it was.

    Returns ``{"val_loss": …, "val_accuracy": …}`` for classification
    (``val_rmse`` and ``val_r2`` for regression, ``val_label_accuracy`` and
    ``val_subset_accuracy`` for multilabel).

    Parameters
    ----------
    model : Sequential
        The network.
    loss : Loss
        The loss on its logits, whose task names the figures.
    X : array of shape (n, d), or a SciPy sparse matrix or array
        The inputs.
    y : array
        The targets, as ``loss`` reads them.
    batch_size : int, default 4096
        Rows per forward pass.
    sample_weight : array of shape (n,), optional
        Non-negative weights of the samples.

    Returns
    -------
    dict of str to float
        ``val_loss`` and the task's ``val_…`` figures.

    Raises
    ------
    HandgradError
        A ``batch_size`` that is not a positive integer.
    DataError
        ``X``, ``y`` or ``sample_weight`` is unusable.

    See Also
    --------
    fit : Records the same figures on validation data every epoch.

    Examples
    --------
    >>> model = hg.Sequential(hg.Dense(2, 2, init="glorot", seed=0))
    >>> model.set_weights(np.zeros(6))                      # every logit 0: a uniform guess
    >>> scores = hg.evaluate(model, hg.SoftmaxCrossEntropy(), np.ones((4, 2)), np.array([0, 1, 1, 0]))
    >>> sorted(scores), round(scores["val_loss"], 4)       # ln 2
    (['val_accuracy', 'val_loss'], 0.6931)
    """
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise HandgradError(f"batch_size must be a positive integer, got {batch_size!r}")
    X, y, w = _checked(model, loss, X, y, sample_weight)
    return _evaluate(model, loss, X, y, int(batch_size), sample_weight=w)


def _evaluate(model, loss, X, y, batch_size=PREDICT_BATCH_SIZE, sample_weight=None):
    """:func:`evaluate` on already-checked ``(X, y)`` on the model's device (the validation data of ``fit``)."""
    n, ops = X.shape[0], model.ops
    total, scores = 0.0, task_of(loss).tally(loss)
    with model.inference():
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            Xb, yb = X[start:stop, ...], y[start:stop, ...]
            logits = model.forward(Xb)
            if sample_weight is None:
                total += loss.forward(logits, yb) * (Xb.shape[0] if loss.reduction == "mean" else 1)
            else:
                wb = sample_weight[start:stop]
                weight = float(ops.sum(wb)) if loss.reduction == "mean" else 1
                total += loss.forward(logits, yb, sample_weight=wb) * weight
            scores.add(logits, yb)
    mean_over = n if sample_weight is None else max(float(ops.sum(sample_weight)), np.finfo(float).tiny)
    return {"val_loss": total / mean_over, **scores.figures("val")}
