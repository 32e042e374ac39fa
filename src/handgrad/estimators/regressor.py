"""``MLPRegressor``: scikit-learn's multi-layer perceptron regressor, trained by handgrad.

Losses, by scikit-learn's names (each a registered :class:`~handgrad.Loss`
with a hand-derived gradient, checked against finite differences and torch):

* ``"squared_error"``: :class:`~handgrad.SquaredError`, ``½ Σ_k (z_k − y_k)²``
  per sample on an identity output;
* ``"poisson"``: :class:`~handgrad.PoissonDeviance`, the half Poisson
  deviance on ``μ = e^z`` (``out_activation_ = "exp"``), for counts ``y ≥ 0``.

One difference on purpose, for several outputs: scikit-learn reports
``loss_`` as ``½ mean_k mean_i (z − y)²`` but differentiates
``½ Σ_k mean_i (z − y)²`` (its gradient is ``z − y`` per output), so for
L-BFGS its value and gradient disagree by a factor of the number of
outputs.  handgrad reports and minimises the second, the objective whose
gradient both use: stochastic runs take the same steps as scikit-learn's,
``loss_`` is ``n_outputs_`` times scikit-learn's data term, and L-BFGS
gets a consistent objective.  With one output the two agree.
"""

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import column_or_1d, validate_data

from handgrad.arrays import ops_for
from handgrad.errors import DataError
from handgrad.estimators._base import BaseMLP, _float_dtypes, _on_host
from handgrad.estimators._common import RegistryOptions, data_errors, estimator_losses, output_activation
from handgrad.tasks import REGRESSION


class MLPRegressor(RegressorMixin, BaseMLP):
    """Multi-layer perceptron regressor trained by handgrad's hand-derived backpropagation.

    A drop-in for :class:`sklearn.neural_network.MLPRegressor`; the
    parameters are :class:`~handgrad.MLPClassifier`'s, with ``loss`` first
    (as in scikit-learn) and without ``class_weight``.

    Parameters
    ----------
    loss : {"squared_error", "poisson", ...}, default="squared_error"
        Any regression loss in handgrad's registry (module docstring).
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate, learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, warm_start, momentum, nesterovs_momentum, early_stopping, validation_fraction, beta_1, beta_2, epsilon, n_iter_no_change, max_fun, dropout, batch_norm, dtype : see MLPClassifier
        As for :class:`~handgrad.MLPClassifier`; ``early_stopping`` scores the
        held-out rows by R² (not stratified).

    Attributes
    ----------
    loss_, best_loss_, loss_curve_, validation_scores_, validation_loss_curve_, best_validation_score_, t_, coefs_, intercepts_, n_features_in_, feature_names_in_, n_iter_, n_layers_, n_outputs_, out_activation_ : see MLPClassifier
        As for :class:`~handgrad.MLPClassifier`; ``validation_scores_`` holds
        R² scores, and ``out_activation_`` is ``"identity"`` (squared error)
        or ``"exp"`` (Poisson).

    See Also
    --------
    MLPClassifier : The classifier, which documents each parameter.

    Examples
    --------
    >>> X = np.linspace(-1.0, 1.0, 40).reshape(-1, 1)
    >>> y = 3 * X[:, 0] + 1
    >>> reg = hg.MLPRegressor(hidden_layer_sizes=(), solver="lbfgs", random_state=0).fit(X, y)
    >>> np.round(reg.predict(np.array([[0.0], [0.5]])), 3), np.round(reg.coefs_[0], 3)
    (array([1. , 2.5]), array([[3.]]))
    """

    _parameter_constraints: dict = {
        **BaseMLP._parameter_constraints,
        "loss": [RegistryOptions(lambda: estimator_losses(REGRESSION))],
    }

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dropout=0.0, batch_norm=False,
                 dtype=None):
        self.loss = loss
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
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.dtype = dtype

    def fit(self, X, y, sample_weight=None):
        """Fit to ``X`` (n, n_features; dense or sparse) and targets ``y`` (n,) or (n, n_outputs).

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n, n_features)
            The training inputs, of any array API namespace.
        y : array-like of shape (n,) or (n, n_outputs)
            The targets (non-negative for ``loss="poisson"``).
        sample_weight : array-like of shape (n,), optional
            Weights each sample's loss term.

        Returns
        -------
        MLPRegressor
            The estimator itself, fitted.

        Raises
        ------
        HandgradError
            A parameter out of range, unusable data (:class:`~handgrad.DataError`)
            or a run that diverged (:class:`~handgrad.TrainingDiverged`).
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``(X, y)``, continuing from the current weights (not with ``solver="lbfgs"``)."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _prepare_targets(self, X, y, incremental, first_pass):
        with data_errors():
            X, y = validate_data(self, X, _on_host(y), accept_sparse=["csr", "csc"], multi_output=True,
                                 y_numeric=True, dtype=_float_dtypes(X), reset=first_pass)
            if y.ndim == 2 and y.shape[1] == 1:
                y = column_or_1d(y, warn=True)
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        if first_pass:
            loss_cls = estimator_losses(REGRESSION)[self.loss]
            self._loss = loss_cls()
            self.out_activation_ = output_activation(loss_cls)
            self.n_outputs_ = n_outputs
        elif n_outputs != self.n_outputs_:
            raise DataError(f"y has {n_outputs} output(s) but the network was fitted with {self.n_outputs_}; "
                            "pass the same targets, or fit afresh (warm_start=False)")
        dtype = self._training_dtype(X) if first_pass else self._net.dtype
        with np.errstate(over="ignore"):
            targets = np.ascontiguousarray(y, dtype=dtype)
        if not np.isfinite(targets).all():
            raise DataError(f"y holds values too large for {np.dtype(dtype).name}; rescale the targets or use "
                            "dtype='float64'")
        if self.out_activation_ == "exp" and (targets < 0).any():
            raise DataError("Some value(s) of y are negative which is not allowed for Poisson regression.")
        return X, targets, None, None

    def _score_outputs(self, logits, targets, sample_weight):
        """R² of the predictions on ``logits`` (NaN if a prediction is not finite, as scikit-learn)."""
        predictions = self._loss.predict(logits)
        if not np.isfinite(predictions).all():
            return np.nan
        return float(r2_score(targets, predictions.reshape(targets.shape), sample_weight=sample_weight))

    def predict(self, X):
        """Predicted values: (n,) for one output, (n, n_outputs) otherwise, in ``X``'s namespace (array API dispatch).

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n, n_features)
            The inputs.

        Returns
        -------
        array of shape (n,) or (n, n_outputs)
            The predictions, in the targets' units (``e^z`` for Poisson).
        """
        logits = self._logits(X, "predict")
        predictions = self._loss.predict(logits)
        return ops_for(predictions).reshape(predictions, (-1,)) if self.n_outputs_ == 1 else predictions

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
