"""``MLPClassifier``: scikit-learn's multi-layer perceptron classifier, trained by handgrad.

Outputs, as scikit-learn lays them out:

* two classes: one logistic output (``out_activation_ = "logistic"``,
  ``n_outputs_ = 1``), trained by :class:`~handgrad.SigmoidBinaryCrossEntropy`
  on the logit; ``predict_proba`` returns ``[1 − p, p]``;
* more classes: one softmax output per class, trained by
  :class:`~handgrad.SoftmaxCrossEntropy`;
* a 2-D indicator ``y`` (multilabel): one logistic output per label, each
  with its own binary cross-entropy; ``predict`` returns the indicator
  matrix (label present where ``p > ½``) and ``predict_proba`` ``p`` per label.

``loss="log_loss"`` (the default, scikit-learn's name) means exactly this.
``loss="softmax_bce"`` (or any classification loss a user registers) trains
softmax outputs with that loss instead, binary problems included, and is
refused for multilabel targets.

Log-probabilities come from the logits through the log-sum-exp (softmax) or
``log σ(z) = −softplus(−z)`` (logistic), so ``predict_log_proba`` stays
finite where a probability underflows to 0.

Under scikit-learn's array API dispatch the labels are encoded on the host
(``classes_`` is NumPy), the network trains where ``X`` is, and ``predict``
returns numeric labels in ``X``'s namespace and on its device (string labels
stay NumPy, as scikit-learn's classifiers return them).
"""

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import column_or_1d, validate_data

from handgrad.arrays import ops_for, to_numpy
from handgrad.errors import DataError
from handgrad.estimators._base import BaseMLP, _float_dtypes, _on_host
from handgrad.estimators._common import (
    ParameterError,
    RegistryOptions,
    data_errors,
    estimator_losses,
    output_activation,
)
from handgrad.nn.losses import SigmoidBinaryCrossEntropy, log_softmax
from handgrad.tasks import CLASSIFICATION
from handgrad.validation import is_sparse

# scikit-learn's name for the log-loss; it trains softmax outputs with handgrad's
# "cross_entropy", and logistic ones (binary, multilabel) with "sigmoid_bce".
LOG_LOSS = "log_loss"


class MLPClassifier(ClassifierMixin, BaseMLP):
    """Multi-layer perceptron classifier trained by handgrad's hand-derived backpropagation.

    A drop-in for :class:`sklearn.neural_network.MLPClassifier`: the same
    parameters with the same defaults and meanings, the same fitted
    attributes, methods, warnings and errors, and, in float64, the same run
    for the same ``random_state`` (same initial weights, sample order,
    validation split, objective and Adam update).  ``docs/estimator.md``
    tables every parameter and attribute.

    Parameters
    ----------
    hidden_layer_sizes : array-like of int, default=(100,)
        Width of each hidden layer (``()``: no hidden layer).
    activation : {"relu", "tanh", "logistic", "identity", ...}, default="relu"
        Hidden activation: scikit-learn's four (``"logistic"`` is handgrad's
        ``Sigmoid``) and every other activation handgrad's registry holds
        (``"leaky_relu"``, ``"elu"``, ``"gelu"``, ``"softplus"``, user-defined ones).
    solver : {"lbfgs", "sgd", "adam"}, default="adam"
        ``"lbfgs"`` minimises the full-batch objective with SciPy's L-BFGS-B.
    alpha : float, default=1e-4
        L2 penalty: each minibatch adds ``α/(2 Σ_B w) · Σ‖W‖²``.
    batch_size : int or "auto", default="auto"
        ``"auto"`` is ``min(200, n_samples)``; unused by lbfgs.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        Schedule for ``solver="sgd"``.
    learning_rate_init : float, default=1e-3
    power_t : float, default=0.5
    max_iter : int, default=200
        Epochs (sgd, adam) or iterations (lbfgs).
    shuffle : bool, default=True
    random_state : int, RandomState instance or None, default=None
        Initial weights, validation split, sample order (and dropout masks).
    tol : float, default=1e-4
    verbose : bool, default=False
    warm_start : bool, default=False
        ``fit`` continues from the current weights; if ``hidden_layer_sizes``,
        ``activation``, ``dropout`` or ``batch_norm`` changed, it starts afresh.
    momentum : float in [0, 1), default=0.9
        scikit-learn also accepts 1, at which SGD's velocity never decays.
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows (stratified by class,
        except for multilabel targets) and stop when their accuracy stops
        improving; the best epoch's weights are kept.
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's ``β₁``, ``β₂``, ``ε`` (``ε`` added to ``√v``, as scikit-learn).
    n_iter_no_change : int or inf, default=10
    max_fun : int, default=15000
        Most evaluations of the objective for lbfgs.
    loss : {"log_loss", "cross_entropy", "softmax_bce", ...}, default="log_loss"
        handgrad's: the loss on softmax outputs (module docstring).
    class_weight : "balanced", dict, list of dict or None, default=None
        handgrad's: weights per class, exactly as passing
        ``sample_weight=compute_sample_weight(class_weight, y)`` (times any
        ``sample_weight`` given).  ``"balanced"`` needs the whole ``y`` and is
        refused by ``partial_fit``.
    dropout : float in [0, 1), default=0
        handgrad's: a :class:`~handgrad.Dropout` layer after each hidden
        activation (stochastic solvers only).
    batch_norm : bool, default=False
        handgrad's: a :class:`~handgrad.BatchNorm` layer between each hidden
        Dense layer and its activation.
    dtype : {None, "float32", "float64"}, default=None
        handgrad's: precision of the weights and arithmetic.  None follows
        the input, as scikit-learn does (float32 ``X`` trains in float32,
        anything else in float64); "float32" roughly halves the time.

    Attributes
    ----------
    classes_ : ndarray (n_classes,)
    loss_ : float
    best_loss_ : float or None
    loss_curve_ : list
        Per epoch (sgd, adam) and, past scikit-learn, per iteration for lbfgs.
    validation_scores_ : list or None
        Accuracy on the held-out rows per epoch, with ``early_stopping``.
    validation_loss_curve_ : list or None
        handgrad's: the (weighted) mean loss on the held-out rows per epoch,
        without the L2 term, with ``early_stopping``.
    best_validation_score_ : float or None
    t_ : int
    coefs_, intercepts_ : lists of ndarray
        ``coefs_[i]`` of shape (width_i, width_{i+1}): the network's own arrays.
    n_features_in_, feature_names_in_, n_iter_, n_layers_, n_outputs_, out_activation_

    See Also
    --------
    MLPRegressor : The regressor with the same parameters.
    fit : The training loop it runs, for a :class:`Sequential` of one's own.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 2))
    >>> y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    >>> clf = hg.MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", random_state=0).fit(X, y)
    >>> clf.classes_, clf.predict(np.array([[2.0, 2.0], [-2.0, -1.0]]))
    (array(['no', 'yes'], dtype='<U3'), array(['yes', 'no'], dtype='<U3'))
    >>> clf.score(X, y) > 0.95, clf.predict_proba(X[:3]).shape
    (True, (3, 2))
    """

    _parameter_constraints: dict = {
        **BaseMLP._parameter_constraints,
        "loss": [RegistryOptions(lambda: estimator_losses(CLASSIFICATION), extra={LOG_LOSS})],
        "class_weight": [StrOptions({"balanced"}), dict, list, None],
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, max_fun=15000, loss=LOG_LOSS, class_weight=None, dropout=0.0,
                 batch_norm=False, dtype=None):
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
        self.max_fun = max_fun
        self.loss = loss
        self.class_weight = class_weight
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.dtype = dtype

    # -- training ------------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Fit to ``X`` (n, n_features; dense or sparse) and labels ``y`` (n,) or an indicator matrix (n, k).

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n, n_features)
            The training inputs, of any array API namespace.
        y : array-like of shape (n,) or (n, k)
            Labels, or a 0/1 indicator matrix for multilabel targets.
        sample_weight : array-like of shape (n,), optional
            Weights each sample's loss term.

        Returns
        -------
        MLPClassifier
            The estimator itself, fitted.

        Raises
        ------
        HandgradError
            A parameter out of range, unusable data (:class:`~handgrad.DataError`)
            or a run that diverged (:class:`~handgrad.TrainingDiverged`).
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``(X, y)``, continuing from the current weights.

        ``classes`` (every label of the whole problem, e.g. ``np.unique(y_all)``)
        is required on the first call; later batches need not hold every class.
        Not available with ``solver="lbfgs"`` (an ``AttributeError``, as in scikit-learn).
        """
        self._check_parameters()
        first_call = not hasattr(self, "classes_")
        if first_call and classes is None:
            raise DataError("classes must be passed on the first call to partial_fit.")
        y = _on_host(y)
        if classes is not None:
            classes = unique_labels(_on_host(classes))
            if not first_call and not np.array_equal(classes, self.classes_):
                raise DataError(f"`classes={classes!r}` is not the same as on last call to partial_fit, "
                                f"was: {self.classes_!r}")
        if first_call:
            binarizer = LabelBinarizer()
            with data_errors():
                target_type = _target_type(y)
                binarizer.fit(y if target_type.startswith("multilabel") else classes)
            self._set_classes(binarizer)
        return self._fit(X, y, sample_weight, incremental=True)

    def _set_classes(self, binarizer):
        if len(binarizer.classes_) < 2:
            raise DataError(f"y holds one class ({binarizer.classes_[0]!r}); a classifier needs at least 2 classes")
        self._label_binarizer = binarizer
        self.classes_ = binarizer.classes_

    def _prepare_targets(self, X, y, incremental, first_pass):
        with data_errors():
            X, y = validate_data(self, X, _on_host(y), accept_sparse=["csr", "csc"], multi_output=True,
                                 dtype=_float_dtypes(X), reset=first_pass)
            if is_sparse(y):
                y = y.toarray()
            if y.ndim == 2 and y.shape[1] == 1:
                y = column_or_1d(y, warn=True)
            check_classification_targets(y)
        if not hasattr(self, "classes_") or (first_pass and not incremental):
            with data_errors():
                binarizer = LabelBinarizer().fit(y)
            self._set_classes(binarizer)
        else:
            self._check_known_classes(y, incremental)
        if first_pass:
            self._choose_outputs()
        dtype = self._training_dtype(X) if first_pass else self._net.dtype
        if self._encoding == "indicator":
            if y.ndim != 2 or y.shape[1] != self.n_outputs_:
                raise DataError(f"y must be a label indicator matrix with {self.n_outputs_} columns, got shape "
                                f"{y.shape}; pass the same labels as in the first fit")
            targets, stratify = np.ascontiguousarray(y, dtype=dtype), None
        else:
            if y.ndim != 1:
                raise DataError(f"y has shape {y.shape}; this classifier was fitted on one label per sample")
            stratify = np.searchsorted(self.classes_, y)
            if self._encoding == "labels":
                targets = stratify
            else:                                   # one logistic output: 1 for classes_[1]
                targets = (stratify == 1).astype(dtype).reshape(-1, 1)
        return X, targets, stratify, self._class_weights(y, incremental)

    def _check_known_classes(self, y, incremental):
        classes = unique_labels(y)
        if incremental:
            unknown = np.setdiff1d(classes, self.classes_, assume_unique=True)
            if len(unknown):
                raise DataError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                f"'y' has {classes}.")
        elif set(classes) != set(self.classes_):
            raise DataError(f"warm_start can only be used where `y` has the same classes as in the previous call "
                            f"to fit. Previously got {self.classes_}, `y` has {classes}")

    def _choose_outputs(self):
        """Output layout and loss for the fitted classes (module docstring)."""
        y_type = self._label_binarizer.y_type_
        multilabel = y_type.startswith("multilabel")
        log_loss = self.loss in (LOG_LOSS, "cross_entropy")
        if multilabel and not log_loss:
            raise ParameterError(f"multilabel targets train one logistic output per label with the log-loss; "
                                 f"loss={self.loss!r} is a softmax loss: use loss='log_loss'")
        if multilabel or (y_type == "binary" and log_loss):
            loss_cls = SigmoidBinaryCrossEntropy
            self._encoding = "indicator" if multilabel else "binary"
            self.n_outputs_ = len(self.classes_) if multilabel else 1
        else:
            loss_cls = estimator_losses(CLASSIFICATION)["cross_entropy" if log_loss else self.loss]
            self._encoding = "labels"
            self.n_outputs_ = len(self.classes_)
        self._loss = loss_cls()
        self.out_activation_ = output_activation(loss_cls)

    def _class_weights(self, y, incremental):
        """A weight per sample from ``class_weight``: what ``compute_sample_weight(class_weight, y)`` gives."""
        if self.class_weight is None:
            return None
        if self.class_weight == "balanced" and incremental:
            raise DataError("class_weight='balanced' needs the whole of y, which partial_fit does not see; "
                            "pass a dict, or sample_weight=compute_sample_weight('balanced', y_all) to each call")
        if self._encoding == "indicator" or not isinstance(self.class_weight, dict):
            with data_errors():
                return compute_sample_weight(self.class_weight, y)
        unknown = [label for label in self.class_weight if label not in set(self.classes_.tolist())]
        if unknown:
            raise DataError(f"class_weight names labels {unknown} that are not classes of y ({list(self.classes_)})")
        per_class = np.array([float(self.class_weight.get(label, 1.0)) for label in self.classes_.tolist()])
        return per_class[np.searchsorted(self.classes_, y)]

    def _score_outputs(self, logits, targets, sample_weight):
        """Accuracy (subset accuracy for multilabel) of the decisions on ``logits``."""
        if self._encoding == "labels":
            correct = logits.argmax(axis=1) == targets
        else:
            correct = ((logits > 0) == (targets > 0.5)).all(axis=1)
        return float(np.average(correct, weights=sample_weight))

    # -- prediction ------------------------------------------------------------------------

    def predict(self, X):
        """Labels (n,) in the type of ``classes_``, or for multilabel an indicator matrix (n, k).

        Numeric labels come back in ``X``'s namespace (array API dispatch), strings as NumPy.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n, n_features)
            The inputs.

        Returns
        -------
        array of shape (n,) or (n, k)
            The predicted labels.
        """
        logits = self._logits(X, "predict")
        ops = ops_for(logits)
        if self._encoding == "labels":
            labels = self.classes_[to_numpy(ops.argmax(logits, axis=1))]
        elif self._encoding == "binary":
            labels = self.classes_[to_numpy(logits[:, 0] > 0).astype(np.intp)]
        else:
            labels = self._label_binarizer.inverse_transform(to_numpy(logits > 0).astype(np.int64))
        return labels if labels.dtype.kind in "OUS" else ops.asarray(labels)

    def predict_log_proba(self, X):
        """Log-probabilities (n, n_classes), columns in the order of ``classes_``.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n, n_features)
            The inputs.

        Returns
        -------
        array of shape (n, n_classes)
            The logarithms of :meth:`predict_proba`, computed without forming them.
        """
        logits = self._logits(X, "predict_log_proba")
        return ops_for(logits).astype(self._log_proba(logits), self._net.dtype, copy=False)

    def predict_proba(self, X):
        """Probabilities (n, n_classes): per class (rows sum to 1), or per label for multilabel.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n, n_features)
            The inputs.

        Returns
        -------
        array of shape (n, n_classes)
            Columns in the order of ``classes_``, in the network's dtype.
        """
        logits = self._logits(X, "predict_proba")
        ops = ops_for(logits)
        return ops.astype(ops.exp(self._log_proba(logits)), self._net.dtype, copy=False)

    def _log_proba(self, logits):
        ops = ops_for(logits)
        Z = ops.astype(logits, np.float64)
        if self._encoding == "labels":
            return log_softmax(Z)
        if self._encoding == "binary":
            Z = ops.concat([-Z, Z], axis=1)          # log(1 − p) = log σ(−z)
        return -ops.logaddexp(0, -Z)                 # log σ(z) = −softplus(−z)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = self.loss in (LOG_LOSS, "cross_entropy")   # a softmax loss: single-label
        return tags


def _target_type(y):
    from sklearn.utils.multiclass import type_of_target

    return type_of_target(y)
