"""``MLPClassifier``: handgrad's network as a scikit-learn estimator.

A drop-in for :class:`sklearn.neural_network.MLPClassifier` with the
stochastic solvers (``"adam"``, ``"sgd"``): the same parameter names and
meanings, the same fitted attributes and the same stopping rule, so it works
in pipelines, grid searches, cross-validation and, through ``partial_fit``,
in ``dask_ml.wrappers.Incremental``.  The network, loss, optimizers and
minibatch loop are handgrad's own: each epoch is one call of
:func:`handgrad.fit`, and this module adds only scikit-learn's bookkeeping
around it (labels, validation split, convergence, learning-rate schedules).

The objective and ``alpha``
---------------------------
scikit-learn minimises, on each minibatch ``B`` (``_backprop``),

    J_B = (1/|B|) Σ_{i∈B} L_i + (α / (2|B|)) Σ_layers ‖W‖²,

and handgrad's objective is ``mean loss + (λ/2) Σ‖W‖²``, so the estimator
trains with ``λ = α / batch_size``.  Every full batch gets scikit-learn's
objective exactly; the last, shorter batch of an epoch (when ``batch_size``
does not divide the number of samples) gets ``α/batch_size`` where
scikit-learn uses ``α/|B_last|``.

Sample weights.  scikit-learn normalises a batch by its weight total:
``J_B = Σ w_i L_i / Σ_B w + (α / (2 Σ_B w)) Σ‖W‖²``.  The cross-entropy
gradient for a target matrix ``Y`` is ``P ⊙ rowsum(Y) − Y``, so scaling
sample ``i``'s one-hot row by ``w̃_i`` scales its loss and its gradient by
exactly ``w̃_i``.  The estimator trains on rows scaled by ``w̃ = w / mean(w)``
with ``λ = α / (batch_size · mean(w))``: both normalisers equal
scikit-learn's whenever ``Σ_B w = |B| · mean(w)``, which holds for full-batch
training and on average over minibatches.  An integer weight then acts as
that many copies of the sample.
"""

import warnings
from contextlib import contextmanager
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, InvalidParameterError, Options, StrOptions
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from handgrad.errors import DataError, HandgradError
from handgrad.nn.layers import activations
from handgrad.nn.losses import log_softmax, losses
from handgrad.nn.model import mlp
from handgrad.optim.optimizers import SGD, Adam
from handgrad.training.loop import fit as fit_network
from handgrad.validation import one_hot, resolve_dtype

# scikit-learn spells handgrad's "sigmoid" "logistic"; every other name is the
# registry's, with underscores where the command line has hyphens.
SKLEARN_SPELLINGS = {"logistic": "sigmoid"}


def estimator_activations():
    """``{estimator name: handgrad name}`` for every registered activation."""
    names = {name.replace("-", "_"): name for name in activations()}
    names.update({alias: name for alias, name in SKLEARN_SPELLINGS.items() if name in names.values()})
    return names


def estimator_losses():
    """``{estimator name: loss class}`` for every registered classification loss (the estimator is a classifier)."""
    return {name.replace("-", "_"): cls for name, cls in losses(task="classification").items()}


class _RegistryOptions(StrOptions):
    """scikit-learn's ``StrOptions`` over names read from a registry at each check."""

    def __init__(self, names):
        self._names = names
        super().__init__(set(names()))

    @property
    def options(self):
        return set(self._names())

    @options.setter
    def options(self, value):
        pass       # the registry is the one list

# scikit-learn's "adaptive" schedule divides the rate by 5 on a plateau and
# stops once the rate is this small.
_ADAPTIVE_FACTOR, _ADAPTIVE_FLOOR = 5.0, 1e-6


class ParameterError(HandgradError, InvalidParameterError):
    """A constructor parameter is out of range or of the wrong type."""


class NotFitted(HandgradError, NotFittedError):
    """A method that needs a fitted estimator was called before ``fit``."""


class _DataTypeError(DataError, TypeError):
    """Input of an unusable type (sparse matrices, dicts in an array)."""


@contextmanager
def _data_errors():
    """Re-raise scikit-learn's input-validation errors as :class:`DataError`, on one line."""
    try:
        yield
    except HandgradError:
        raise
    except ValueError as exc:
        raise DataError(" ".join(str(exc).split())) from None
    except TypeError as exc:
        raise _DataTypeError(" ".join(str(exc).split())) from None


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """Multi-layer perceptron classifier trained by handgrad's hand-derived backpropagation.

    Parameters are scikit-learn's (see
    :class:`sklearn.neural_network.MLPClassifier`) where they mean the same,
    plus two of handgrad's own.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Width of each hidden layer.
    activation : {"relu", "tanh", "logistic", "identity"}, default="relu"
        Hidden activation (``"logistic"`` is handgrad's ``Sigmoid``).
    solver : {"adam", "sgd"}, default="adam"
    alpha : float, default=1e-4
        L2 penalty, scaled as scikit-learn scales it (module docstring).
    batch_size : int or "auto", default="auto"
        ``"auto"`` is ``min(200, n_samples)``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        Schedule for ``solver="sgd"``: ``invscaling`` sets
        ``η = learning_rate_init / (t_ + 1)^power_t`` after each epoch;
        ``adaptive`` divides ``η`` by 5 when the stopping rule fires and stops
        once ``η ≤ 1e-6``.  Adam uses a constant rate.
    learning_rate_init : float, default=1e-3
    power_t : float, default=0.5
    max_iter : int, default=200
        Most epochs per ``fit``.
    shuffle : bool, default=True
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the validation split and the shuffles.
    tol : float, default=1e-4
    verbose : bool, default=False
        Print the loss (and validation score) after each epoch.
    warm_start : bool, default=False
        ``fit`` continues from the current weights.
    momentum : float in [0, 1), default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified) and stop when
        its accuracy stops improving; the best epoch's weights are kept.
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : floats, default=0.9, 0.999, 1e-8
        Adam's ``β₁``, ``β₂`` and ``ε``.
    n_iter_no_change : int, default=10
        Stop after more than this many epochs in a row whose training loss
        (or validation accuracy) did not improve by ``tol``.
    loss : {"cross_entropy", "softmax_bce"}, default="cross_entropy"
        handgrad's loss on the softmax outputs: categorical cross-entropy
        (scikit-learn's log-loss) or per-class binary cross-entropy.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the weights and of the arithmetic.

    Attributes
    ----------
    classes_ : ndarray (n_classes,)
    coefs_, intercepts_ : lists of ndarray
        ``coefs_[i]`` has shape (width_i, width_{i+1}), as in scikit-learn.
    loss_, loss_curve_, best_loss_ : training loss (last, per epoch, best)
    validation_scores_, best_validation_score_ : with ``early_stopping``
    n_iter_, t_ : epochs of the last ``fit``; samples seen in all
    n_features_in_, feature_names_in_, n_layers_, n_outputs_, out_activation_
        ``n_outputs_`` is the number of classes: binary problems also get two
        softmax outputs, so ``out_activation_`` is always ``"softmax"``.
    """

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [_RegistryOptions(estimator_activations)],
        "solver": [StrOptions({"adam", "sgd"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "loss": [_RegistryOptions(estimator_losses)],
        "dtype": [StrOptions({"float32", "float64"}), Options(type, {np.float32, np.float64})],
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=1e-4,
                 batch_size="auto", learning_rate="constant", learning_rate_init=1e-3, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False,
                 warm_start=False, momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, loss="cross_entropy", dtype="float32"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.loss = loss
        self.dtype = dtype

    # -- training ------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Train for up to ``max_iter`` epochs on ``X`` (n, n_features) and labels ``y`` (n,).

        ``sample_weight`` (n,) weights each sample's loss term.
        """
        self._check_parameters()
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``(X, y)``, continuing from the current weights.

        ``classes`` (every label of the whole problem) is required on the
        first call; later batches need not contain every class.
        """
        self._check_parameters()
        if not hasattr(self, "classes_"):
            if classes is None:
                raise DataError("classes must be passed on the first call to partial_fit; "
                                "pass classes=np.unique(y_all)")
            self.classes_ = self._checked_classes(unique_labels(classes))
        elif classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise DataError(f"classes={list(classes)} differs from classes_={list(self.classes_)} "
                            "of the first partial_fit call; pass the same classes or none")
        return self._fit(X, y, sample_weight, incremental=True)

    def _check_parameters(self):
        try:
            self._validate_params()
        except InvalidParameterError as exc:
            raise ParameterError(str(exc)) from None
        if np.any(np.asarray(self._hidden_sizes()) < 1):
            raise ParameterError(f"hidden_layer_sizes must hold positive widths, got {self.hidden_layer_sizes!r}")

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        return [int(sizes)] if np.ndim(sizes) == 0 else [int(s) for s in sizes]

    def _fit(self, X, y, sample_weight, incremental):
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, labels, weights = self._training_data(X, y, sample_weight, incremental, first_pass)
        rng = check_random_state(self.random_state)
        if first_pass:
            self._initialize(X.shape[1], rng)
        else:
            self._check_architecture()
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._new_optimizer()
        model = self._network()
        data = self._split(X, labels, weights, incremental, rng)
        try:
            self._run_epochs(model, data, incremental, seed=int(rng.randint(np.iinfo(np.int32).max)))
        finally:
            self._store(model)
        return self

    def _training_data(self, X, y, sample_weight, incremental, first_pass):
        """Checked features (model dtype), class indices into ``classes_``, and weights."""
        with _data_errors():
            X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), reset=first_pass)
            check_classification_targets(y)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self.classes_ = self._checked_classes(unique_labels(y))
        unknown = np.setdiff1d(unique_labels(y), self.classes_)
        if unknown.size:
            raise DataError(f"y has classes {list(unknown)} not in classes_={list(self.classes_)}; "
                            "pass every class to the first partial_fit (classes=) or refit with warm_start=False")
        labels = np.searchsorted(self.classes_, y)
        weights = _check_sample_weight(sample_weight, X.shape[0])
        if weights is not None and self.loss != "cross_entropy":
            raise HandgradError("sample_weight needs loss='cross_entropy' (weights enter through the target "
                                "matrix, which scales only the cross-entropy linearly)")
        return np.ascontiguousarray(X, dtype=resolve_dtype(self.dtype)), labels, weights

    @staticmethod
    def _checked_classes(classes):
        if len(classes) < 2:
            raise DataError(f"y holds one class ({classes[0]}); a classifier needs at least 2 classes")
        return classes

    def _initialize(self, n_features, rng):
        model = mlp(n_features, self._hidden_sizes(), len(self.classes_), activation=estimator_activations()[self.activation],
                    dtype=resolve_dtype(self.dtype), seed=int(rng.randint(np.iinfo(np.int32).max)))
        self._store(model)
        self._best_weights = model.get_weights()
        self.n_outputs_ = len(self.classes_)
        self.n_layers_ = len(self._hidden_sizes()) + 2
        self.out_activation_ = "softmax"
        self.n_iter_, self.t_ = 0, 0
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
        else:
            self.validation_scores_, self.best_validation_score_, self.best_loss_ = None, None, np.inf

    def _check_architecture(self):
        widths = [W.shape[1] for W in self.coefs_[:-1]]
        if widths != self._hidden_sizes() or self.coefs_[0].dtype != resolve_dtype(self.dtype):
            raise HandgradError(f"the fitted network has hidden widths {widths} and dtype {self.coefs_[0].dtype}, "
                                "which the current parameters change; set warm_start=False to start over")

    def _new_optimizer(self):
        if self.solver == "adam":
            return Adam(self.learning_rate_init, betas=(self.beta_1, self.beta_2), eps=self.epsilon)
        return SGD(self.learning_rate_init, momentum=self.momentum,
                   nesterov=self.nesterovs_momentum and self.momentum > 0)

    def _split(self, X, labels, weights, incremental, rng):
        """Training targets, and with ``early_stopping`` a stratified validation set."""
        if not self.early_stopping:
            return _TrainingData(X, labels, weights)
        if incremental:
            raise HandgradError("partial_fit does not support early_stopping=True; set early_stopping=False")
        extra = [] if weights is None else [weights]
        with _data_errors():
            parts = train_test_split(X, labels, *extra, random_state=rng, test_size=self.validation_fraction,
                                     stratify=labels)
        if parts[1].shape[0] < 2:
            raise DataError("the validation set is too small; increase validation_fraction or the data")
        X_train, X_val, y_train, y_val = parts[:4]
        w_train, w_val = parts[4:] if weights is not None else (None, None)
        return _TrainingData(X_train, y_train, w_train, X_val, y_val, w_val)

    def _run_epochs(self, model, data, incremental, seed):
        """scikit-learn's epoch loop around one :func:`handgrad.fit` epoch at a time."""
        n = data.X.shape[0]
        batch_size = self._resolved_batch_size(n)
        l2 = self.alpha / (batch_size * data.mean_weight)
        loss = estimator_losses()[self.loss]()
        targets = data.targets(model.n_outputs)
        self.n_iter_ = 0
        for epoch in range(self.max_iter):
            record = fit_network(model, loss, data.X, targets, optimizer=self._optimizer,
                                 epochs=epoch + 1, initial_epoch=epoch, batch_size=batch_size, l2=l2,
                                 shuffle=self.shuffle, seed=seed).records[-1]
            self.n_iter_ += 1
            self.t_ += n
            self.loss_ = record["train_loss"]
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            self._update_no_improvement_count(model, data)
            if self.solver == "sgd" and self.learning_rate == "invscaling":
                self._optimizer.lr = self.learning_rate_init / (self.t_ + 1) ** self.power_t
            if self._no_improvement_count > self.n_iter_no_change and self._plateau_stops():
                break
            if incremental:
                break
            if self.n_iter_ == self.max_iter:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                              "optimization hasn't converged yet.", ConvergenceWarning)
        if self.early_stopping:
            model.set_weights(self._best_weights)

    def _resolved_batch_size(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn(f"batch_size={self.batch_size} is larger than the {n} training samples; using {n}")
        return min(self.batch_size, n)

    def _update_no_improvement_count(self, model, data):
        """scikit-learn's rule: count epochs that fail to improve the best value by ``tol``."""
        if self.early_stopping:
            score = data.validation_accuracy(model)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            improved = score >= self.best_validation_score_ + self.tol
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_weights = model.get_weights()
        else:
            improved = self.loss_ <= self.best_loss_ - self.tol
            self.best_loss_ = min(self.best_loss_, self.loss_)
        self._no_improvement_count = 0 if improved else self._no_improvement_count + 1

    def _plateau_stops(self):
        """On a plateau: stop, or with the adaptive SGD schedule lower the rate and go on."""
        what = "Validation score" if self.early_stopping else "Training loss"
        message = f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} consecutive epochs."
        adaptive = self.solver == "sgd" and self.learning_rate == "adaptive"
        if adaptive and self._optimizer.lr > _ADAPTIVE_FLOOR:
            self._optimizer.lr /= _ADAPTIVE_FACTOR
            self._no_improvement_count = 0
            if self.verbose:
                print(f"{message} Setting learning rate to {self._optimizer.lr:f}")
            return False
        if self.verbose:
            print(message + (" Learning rate too small. Stopping." if adaptive else ""))
        return True

    # -- the network as handgrad sees it --------------------------------------

    def _network(self):
        """A :class:`~handgrad.Sequential` holding copies of ``coefs_`` and ``intercepts_``."""
        hidden = [W.shape[1] for W in self.coefs_[:-1]]
        model = mlp(self.coefs_[0].shape[0], hidden, self.coefs_[-1].shape[1],
                    activation=estimator_activations()[self.activation], dtype=self.coefs_[0].dtype, seed=0)
        values = [v for pair in zip(self.coefs_, self.intercepts_) for v in pair]
        for param, value in zip(model.parameters(), values):
            param[...] = value
        return model

    def _store(self, model):
        params = model.parameters()
        self.coefs_ = [W.copy() for W in params[0::2]]
        self.intercepts_ = [b.copy() for b in params[1::2]]

    # -- prediction ------------------------------------------------------------

    def _log_proba(self, X):
        """``log softmax`` of the logits, in float64: (n, n_classes)."""
        try:
            check_is_fitted(self, "coefs_")
        except NotFittedError as exc:
            raise NotFitted(str(exc)) from None
        with _data_errors():
            X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        return log_softmax(self._network()(X).astype(np.float64))

    def predict_log_proba(self, X):
        """Log-probabilities (n, n_classes), columns in the order of ``classes_``."""
        return self._log_proba(X)

    def predict_proba(self, X):
        """Class probabilities (n, n_classes), columns in the order of ``classes_``."""
        return np.exp(self._log_proba(X))

    def predict(self, X):
        """The most probable class of each row of ``X`` (n,)."""
        log_proba = self._log_proba(X)
        return self.classes_[log_proba.argmax(axis=1)]


def _check_sample_weight(sample_weight, n):
    """Non-negative finite weights of shape (n,) with a positive sum, or ``None``."""
    if sample_weight is None:
        return None
    with _data_errors():
        weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.ndim == 0:
        weights = np.full(n, float(weights))
    if weights.shape != (n,):
        raise DataError(f"sample_weight has shape {weights.shape}; pass one weight per sample, shape ({n},)")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise DataError("sample_weight must be finite and non-negative")
    if weights.sum() == 0:
        raise DataError("sample_weight sums to zero; give at least one sample a positive weight")
    return weights


class _TrainingData:
    """The training rows (with weights) and, for early stopping, the validation rows."""

    def __init__(self, X, labels, weights, X_val=None, labels_val=None, weights_val=None):
        self.X, self.labels, self.weights = X, labels, weights
        self.X_val, self.labels_val, self.weights_val = X_val, labels_val, weights_val
        self.mean_weight = 1.0 if weights is None else float(weights.mean())

    def targets(self, n_classes):
        """Labels, or one-hot rows scaled by ``w / mean(w)`` when weighted (module docstring)."""
        if self.weights is None:
            return self.labels
        return one_hot(self.labels, n_classes, self.X.dtype) * (self.weights / self.mean_weight)[:, None].astype(
            self.X.dtype)

    def validation_accuracy(self, model):
        correct = model.predict(self.X_val) == self.labels_val
        return float(np.average(correct, weights=self.weights_val))
