"""``BaseMLP``: what MLPClassifier and MLPRegressor share.

The network is a :class:`~handgrad.Sequential` of handgrad's layers
(``Dense``, the hidden activation, and optionally ``BatchNorm`` and
``Dropout``), trained either by one run of :func:`handgrad.fit` with
scikit-learn's per-epoch rules in a callback (``solver="adam"`` or
``"sgd"``), or by SciPy's L-BFGS-B on the network's
flat parameter vector (``solver="lbfgs"``, :mod:`._lbfgs`).  This module
adds scikit-learn's bookkeeping around it, in scikit-learn's order, so that
the same ``random_state`` drives the same run:

1. ``check_random_state(random_state)`` once per call of ``fit`` or
   ``partial_fit``;
2. on a fresh start, for each layer in turn, its weights and then its
   biases drawn uniformly in ``±√(f / (fan_in + fan_out))`` with ``f = 2``
   for the logistic activation and 6 otherwise;
3. with ``early_stopping``, ``train_test_split`` of the training rows;
4. before each epoch, the running sample order reshuffled by
   ``sklearn.utils.shuffle``; minibatches are consecutive slices of it.

The objective on a minibatch ``B`` is scikit-learn's,

    J_B = Σ_{i∈B} w_i L_i / Σ_{i∈B} w_i  +  α / (2 Σ_{i∈B} w_i) · Σ_layers ‖W‖²

(``w_i = 1`` without sample weights): :func:`handgrad.fit` with
``sample_weight=`` and ``alpha=``.  Adam adds ``ε`` to ``√v`` before the bias
correction (``hg.Adam(eps_on="v")``), as scikit-learn does.  SGD's
velocity accumulates gradients (handgrad's convention); when a schedule
changes the rate from ``η`` to ``η'`` the estimator rescales the velocity by
``η/η'``, which keeps the update scikit-learn's, whose velocity accumulates
steps.  In float64 a fit therefore retraces scikit-learn's to rounding.

Fitted state.  ``coefs_[i]`` and ``intercepts_[i]`` are the network's own
weight and bias arrays (views into its flat parameter vector): training
changes them in place, and an array a user writes or assigns is read back
into the network before the next prediction or fit.

Arrays (scikit-learn's array API dispatch).  The network follows the input
of ``fit``: with ``sklearn.config_context(array_api_dispatch=True)`` and an
array of another namespace (a PyTorch tensor on a GPU), it moves there once
(:meth:`handgrad.Sequential.to`) and trains there, and the predictions come
back in that namespace and on that device.  Labels are encoded on the host,
as scikit-learn encodes them (``classes_`` is a NumPy array); L-BFGS
computes the objective and its gradient on the device and hands SciPy a
NumPy vector each iteration.  Without dispatch, or for sparse input, the
network computes on NumPy, and scikit-learn's validation turns any other
input into NumPy arrays as it always does.
"""

import copy
import inspect
import math
import warnings
from itertools import pairwise
from numbers import Integral, Real

import numpy as np
from sklearn import get_config
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._array_api import check_same_namespace, get_namespace
from sklearn.utils._param_validation import Interval, InvalidParameterError, Options, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from handgrad.arrays import is_foreign, ops_for, to_numpy
from handgrad.errors import DataError, HandgradError, TrainingDiverged
from handgrad.estimators import _lbfgs
from handgrad.estimators._common import (
    NotFitted,
    ParameterError,
    RegistryOptions,
    check_sample_weight,
    data_errors,
    estimator_activations,
)
from handgrad.nn.activations import activation as activation_class
from handgrad.nn.batchnorm import BatchNorm
from handgrad.nn.dropout import Dropout
from handgrad.nn.layers import Dense
from handgrad.nn.model import PREDICT_BATCH_SIZE, Sequential
from handgrad.optim.optimizers import SGD, Adam
from handgrad.registry import ESTIMATORS, Registered
from handgrad.training.callbacks import Callback
from handgrad.training.loop import fit as fit_network
from handgrad.validation import is_sparse, resolve_dtype

STOCHASTIC_SOLVERS = ("adam", "sgd")

# scikit-learn's "adaptive" schedule divides the rate by 5 on a plateau and
# stops once the rate is this small.
_ADAPTIVE_FACTOR, _ADAPTIVE_FLOOR = 5.0, 1e-6

# Attributes only the stochastic solvers set (as in scikit-learn); a fresh
# L-BFGS fit removes any a previous stochastic fit left.
_STOCHASTIC_ATTRIBUTES = ("best_loss_", "validation_scores_", "best_validation_score_", "validation_loss_curve_")


class BaseMLP(BaseEstimator, Registered, registry=ESTIMATORS):
    """Parameters, training and prediction shared by the classifier and the regressor.

    Every subclass (``MLPClassifier``, ``MLPRegressor``, a user's own) is
    registered in ``handgrad.registry.ESTIMATORS`` under its class name,
    which is how ``hg.load`` finds it again; it is saved through
    :meth:`to_state` and rebuilt by :meth:`from_state`.
    """

    name = None

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [RegistryOptions(estimator_activations)],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
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
        # hg.SGD keeps momentum below 1: at 1 the velocity never forgets a gradient.
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "batch_norm": ["boolean"],
        # A name or the NumPy type itself, as NumPy's own dtype= arguments take either.
        "dtype": [None, StrOptions({"float32", "float64"}), Options(type, {np.float32, np.float64})],
    }

    # -- what the subclasses provide -------------------------------------------------

    def _prepare_targets(self, X, y, incremental, first_pass):
        """``(X, targets, stratify, class weights)`` after checking; sets ``n_outputs_`` and ``_loss`` on a fresh start.

        ``targets`` is ``y`` as the loss reads it, ``stratify`` what an
        early-stopping split is stratified by (or None), and ``class
        weights`` a weight per sample from ``class_weight`` (or None).
        """
        raise NotImplementedError

    def _score_outputs(self, logits, targets, sample_weight):
        """The validation score (accuracy or R²) of ``logits`` against encoded ``targets``."""
        raise NotImplementedError

    # -- parameters ------------------------------------------------------------------

    def _check_parameters(self):
        try:
            self._validate_params()
        except InvalidParameterError as exc:
            raise ParameterError(str(exc)) from None
        sizes = np.atleast_1d(np.asarray(self.hidden_layer_sizes, dtype=object)).ravel().tolist()
        if not all(isinstance(s, Integral) and not isinstance(s, (bool, np.bool_)) for s in sizes):
            # scikit-learn fails on such a width too (a TypeError); ParameterError is a TypeError and a ValueError.
            raise ParameterError(f"hidden_layer_sizes must hold integers, got {self.hidden_layer_sizes!r}; "
                                 "pass whole numbers of units, e.g. (100,) or (64, 32)")
        if np.any(np.asarray(self._hidden_sizes()) <= 0):
            raise ParameterError(f"hidden_layer_sizes must be > 0, got {list(self._hidden_sizes())}")
        if self.solver == "lbfgs" and self.dropout > 0:
            raise ParameterError("dropout needs a stochastic solver: L-BFGS would see a different objective at "
                                 "every evaluation; use solver='adam' or 'sgd', or dropout=0")

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        return [int(sizes)] if np.ndim(sizes) == 0 else [int(s) for s in sizes]

    def _architecture(self):
        """What the network's shape depends on besides the data: a changed value means a new network."""
        return (tuple(self._hidden_sizes()), self.activation, float(self.dropout), bool(self.batch_norm))

    def _check_solver(self):
        if self.solver not in STOCHASTIC_SOLVERS:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    # -- fitting -----------------------------------------------------------------------

    def _fit(self, X, y, sample_weight, incremental):
        self._check_parameters()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        if not first_pass and self._fitted_architecture != self._architecture():
            if incremental:
                raise HandgradError("hidden_layer_sizes, activation, dropout or batch_norm changed since the "
                                    "network was built; partial_fit continues that network, so restore them "
                                    "(or call fit to start over)")
            first_pass = True           # warm_start with another network: start again, as without warm_start
        X, targets, stratify, class_weights = self._prepare_targets(X, y, incremental, first_pass)
        weights = check_sample_weight(sample_weight, X.shape[0])
        if class_weights is not None:
            weights = class_weights if weights is None else weights * class_weights
        if weights is not None and "sample_weight" not in inspect.signature(type(self._loss).forward).parameters:
            raise HandgradError(f"{type(self._loss).__name__}.forward takes no sample_weight, so this loss cannot "
                                "weight samples (or classes); give its forward a sample_weight=None argument")
        rng = check_random_state(self.random_state)
        if first_pass:
            self._initialize(X.shape[1], rng, self._training_dtype(X))
        self._sync_network()
        self._place_network(X)
        X = _as_dtype(X, self._net.dtype)
        try:
            if self.solver == "lbfgs":
                self._fit_lbfgs(X, targets, weights)
                if not math.isfinite(self.loss_):       # L-BFGS-B stops at once on a non-finite objective
                    raise TrainingDiverged(f"the L-BFGS objective is {self.loss_}", history=self.loss_curve_,
                                           epoch=self.n_iter_)
            else:
                self._fit_stochastic(X, targets, weights, stratify, rng, incremental)
        except TrainingDiverged as exc:
            cause = extreme_inputs(X, targets, weights, self._net.dtype)
            if cause is None:
                raise
            raise TrainingDiverged(f"training diverged because {cause}", history=exc.history,
                                   epoch=exc.epoch) from None
        finally:
            self._release_buffers()
        if not all(self._net.ops.all_finite(a) for a in self.coefs_ + self.intercepts_):
            cause = extreme_inputs(X, targets, weights, self._net.dtype)
            raise HandgradError("the solver produced non-finite weights; " + (
                cause or "the input may need scaling (e.g. sklearn.preprocessing.StandardScaler), or lower "
                         "learning_rate_init"))
        return self

    def _training_dtype(self, X):
        return resolve_dtype(self.dtype) if self.dtype is not None else ops_for(X).numpy_dtype(X.dtype)

    def _initialize(self, n_features, rng, dtype):
        """A fresh network, initialised as scikit-learn initialises its own, and fresh fitted attributes."""
        units = [n_features, *self._hidden_sizes(), self.n_outputs_]
        layers = [cls(*arguments, dtype=dtype) if cls in (Dense, BatchNorm) else cls(*arguments)
                  for cls, arguments in layer_plan(self._architecture(), n_features, self.n_outputs_)]
        net = Sequential(*layers, seed=0)
        factor = 2.0 if estimator_activations()[self.activation] == "sigmoid" else 6.0
        for layer in net.layers:
            if isinstance(layer, Dense):
                bound = math.sqrt(factor / (layer.n_in + layer.n_out))
                layer.W = rng.uniform(-bound, bound, (layer.n_in, layer.n_out))
                layer.b = rng.uniform(-bound, bound, layer.n_out)
        net.eval()
        self._net = net
        self.__dict__.pop("_best_weights", None)
        self.__dict__.pop("_best_buffers", None)
        self._point_attributes_at_network()
        self._fitted_architecture = self._architecture()
        self._mask_seed = int(rng.randint(np.iinfo(np.int32).max)) if self.dropout > 0 else 0
        self._epochs_trained = 0
        self.n_iter_, self.t_ = 0, 0
        self.n_layers_ = len(units)
        if hasattr(self, "_optimizer"):
            del self._optimizer
        if self.solver in STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
                self.validation_loss_curve_ = []
            else:
                self.validation_scores_, self.best_validation_score_, self.best_loss_ = None, None, np.inf
                self.validation_loss_curve_ = None
        else:
            for name in _STOCHASTIC_ATTRIBUTES:
                self.__dict__.pop(name, None)

    # -- L-BFGS ----------------------------------------------------------------------------

    def _fit_lbfgs(self, X, targets, weights):
        net = self._net
        work = net if net.dtype == np.float64 else net.astype(np.float64)
        X = _as_dtype(X, np.float64)
        if targets.dtype.kind == "f":
            targets = targets.astype(np.float64)
        work.train()
        try:
            self.n_iter_, self.loss_, self.loss_curve_ = _lbfgs.minimize(
                work, self._loss, X, targets, sample_weight=weights, alpha=self.alpha, max_iter=self.max_iter,
                max_fun=self.max_fun, tol=self.tol, verbose=self.verbose)
        finally:
            work.eval()
            if work is not net:
                net.set_weights(work.flat_parameters)
                net.set_buffers(work.get_buffers())
        self._epochs_trained += self.n_iter_

    # -- the stochastic solvers ------------------------------------------------------------

    def _new_optimizer(self):
        if self.solver == "adam":
            return Adam(self.learning_rate_init, betas=(self.beta_1, self.beta_2), eps=self.epsilon, eps_on="v")
        return SGD(self.learning_rate_init, momentum=self.momentum,
                   nesterov=self.nesterovs_momentum and self.momentum > 0)

    def _fit_stochastic(self, X, targets, weights, stratify, rng, incremental):
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._new_optimizer()
        if self.early_stopping and incremental:
            raise HandgradError("partial_fit does not support early_stopping=True; set early_stopping=False")
        data = self._split(X, targets, weights, stratify, rng)
        if self.early_stopping and "_best_weights" not in self.__dict__:
            self._best_weights, self._best_buffers = self._net.get_weights(), self._net.get_buffers()
        n = data.X.shape[0]
        batch_size = self._resolved_batch_size(n)
        self.n_iter_ = 0
        epochs = 1 if incremental else self.max_iter
        bookkeeping = _EpochBookkeeping(self, data, n)
        # One run of fit_network for all the epochs, so its checks and set-up happen once, not
        # once an epoch (on a small table an epoch is one minibatch); the callback keeps
        # scikit-learn's per-epoch rules.  Each epoch is judged for divergence against its own
        # first minibatch: a run of scikit-learn's loop may climb a long way before it settles,
        # and scikit-learn stops none.
        try:
            fit_network(self._net, self._loss, data.X, data.targets, optimizer=self._optimizer,
                        epochs=self._epochs_trained + epochs, initial_epoch=self._epochs_trained,
                        batch_size=batch_size, alpha=self.alpha, sample_weight=data.weights,
                        shuffle=self._epoch_orders(n, rng) if self.shuffle else False, seed=self._mask_seed,
                        callbacks=[bookkeeping], divergence_reference="epoch")
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=4)
        except TrainingDiverged as exc:
            if not self.early_stopping:
                raise
            # As scikit-learn's MLPs end such a fit: a warning, and the best validation epoch's
            # weights, so that one bad candidate does not end a whole grid search.
            cause = extreme_inputs(X, targets, weights, self._net.dtype)
            warnings.warn(f"Training diverged after {self.n_iter_} epochs ({cause or exc}); keeping the weights "
                          "of the best validation epoch.", ConvergenceWarning, stacklevel=4)
        if not incremental and not bookkeeping.converged and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                          "optimization hasn't converged yet.", ConvergenceWarning, stacklevel=4)
        if self.early_stopping:
            self._net.set_weights(self._best_weights)
            self._net.set_buffers(self._best_buffers)

    @staticmethod
    def _epoch_orders(n, rng):
        """``epoch -> order``: scikit-learn's shuffle, ``sklearn.utils.shuffle(order, random_state=rng)``
        composed epoch after epoch (without its per-call parameter validation)."""
        order = np.arange(n)

        def next_order(epoch):
            nonlocal order
            permutation = np.arange(n)
            rng.shuffle(permutation)
            order = order[permutation]
            return order

        return next_order

    def _split(self, X, targets, weights, stratify, rng):
        """The training rows, and with ``early_stopping`` a held-out validation set (scikit-learn's split).

        The split is drawn on row numbers, which gives the rows that splitting
        the arrays themselves gives (it depends on their count, ``stratify``
        and ``rng`` only); the rows of ``X`` are then taken where ``X`` is.
        """
        if not self.early_stopping:
            return _TrainingData(X, targets, weights)
        with data_errors():
            train, val = train_test_split(np.arange(X.shape[0]), random_state=rng, test_size=self.validation_fraction,
                                          stratify=stratify)
        if val.shape[0] < 2:
            raise DataError("The validation set is too small. Increase 'validation_fraction' or the size of "
                            "your dataset.")
        w_train, w_val = (None, None) if weights is None else (weights[train], weights[val])
        return _TrainingData(_rows(X, train), targets[train], w_train, _rows(X, val), targets[val], w_val)

    def _resolved_batch_size(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped", stacklevel=5)
        return min(self.batch_size, n)

    def _update_no_improvement_count(self, data):
        """scikit-learn's rule: count epochs that fail to improve the best value by ``tol``."""
        if self.early_stopping:
            logits = to_numpy(self._forward(data.X_val))
            score = self._score_outputs(logits, data.targets_val, data.weights_val)
            self.validation_scores_.append(score)
            weights = {} if data.weights_val is None else {"sample_weight": data.weights_val}
            self.validation_loss_curve_.append(self._loss.forward(logits, data.targets_val, **weights))
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_weights, self._best_buffers = self._net.get_weights(), self._net.get_buffers()
        else:
            if self.loss_ > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(self.best_loss_, self.loss_)

    def _plateau_stops(self):
        """On a plateau: stop, or with the adaptive SGD schedule lower the rate and go on."""
        what = "Validation score" if self.early_stopping else "Training loss"
        message = f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} consecutive epochs."
        if not (self.solver == "sgd" and self.learning_rate == "adaptive"):
            if self.verbose:
                print(message + " Stopping.")
            return True
        if self._optimizer.lr <= _ADAPTIVE_FLOOR:
            if self.verbose:
                print(message + " Learning rate too small. Stopping.")
            return True
        self._set_learning_rate(self._optimizer.lr / _ADAPTIVE_FACTOR)
        self._no_improvement_count = 0
        if self.verbose:
            print(f"{message} Setting learning rate to {self._optimizer.lr:f}")
        return False

    def _set_learning_rate(self, lr):
        """Change SGD's rate, rescaling its velocity so that the step it carries is unchanged (module docstring)."""
        optimizer = self._optimizer
        if optimizer.state and "velocity" in optimizer.state[0]:
            optimizer.state[0]["velocity"] *= optimizer.lr / lr
        optimizer.lr = lr

    # -- the network -----------------------------------------------------------------------

    def _point_attributes_at_network(self):
        dense = [layer for layer in self._net.layers if isinstance(layer, Dense)]
        self.coefs_ = [layer.W for layer in dense]
        self.intercepts_ = [layer.b for layer in dense]

    def _sync_network(self):
        """Read ``coefs_`` and ``intercepts_`` back into the network where a user replaced an array."""
        dense = [layer for layer in self._net.layers if isinstance(layer, Dense)]
        if len(self.coefs_) != len(dense) or len(self.intercepts_) != len(dense):
            raise HandgradError(f"coefs_ and intercepts_ must hold {len(dense)} arrays each, one per layer")
        for layer, W, b in zip(dense, self.coefs_, self.intercepts_):
            if W is not layer.W:
                layer.W = W
            if b is not layer.b:
                layer.b = b

    def _place_network(self, X):
        """Move the network to ``X``'s namespace and device (module docstring); ``coefs_`` follow it."""
        if ops_for(X) is not self._net.ops:
            self._net.to(X)
            self._point_attributes_at_network()

    def _network(self):
        """The fitted :class:`~handgrad.Sequential`, holding the current ``coefs_`` and ``intercepts_``."""
        self._sync_network()
        return self._net

    def _release_buffers(self):
        """Let go of the training data the layers kept for backward (the whole X after L-BFGS)."""
        self._net.release()

    def _forward(self, X):
        """Logits of checked rows ``X`` (dense or CSR, the network's dtype), in inference mode, in chunks, in
        ``X``'s namespace and on its device (the network's, unless it was fitted elsewhere)."""
        net = self._net
        rows, n = net.placed(X), X.shape[0]
        out = net.ops.empty((n, net.n_outputs), dtype=net.dtype)
        with net.inference():
            for start in range(0, n, PREDICT_BATCH_SIZE):
                stop = min(start + PREDICT_BATCH_SIZE, n)
                out[start:stop, ...] = net.forward(rows[start:stop, ...])
        return ops_for(X).asarray(out)

    def _logits(self, X, method):
        """Logits of unchecked ``X`` after scikit-learn's checks (fitted, namespace, features, dtype), in ``X``'s
        namespace; ``method`` is the public method asking, for the error a namespace other than fit's raises."""
        try:
            check_is_fitted(self, "coefs_")
        except Exception as exc:
            raise NotFitted(str(exc)) from None
        check_same_namespace(X, self, attribute="_flat_parameters", method=method)
        with data_errors():
            X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=_float_dtypes(X), reset=False)
        self._sync_network()
        return self._forward(_as_dtype(X, self._net.dtype))

    @property
    def _flat_parameters(self):
        """The network's parameters as one array: where the namespace and device of fit are read from."""
        return self._net.flat_parameters

    def _inference_parts(self):
        """What an ONNX graph of the fitted estimator computes, for ``hg.to_onnx`` and skl2onnx (see :mod:`._onnx`)."""
        try:
            check_is_fitted(self, "coefs_")
        except Exception as exc:
            raise NotFitted(str(exc)) from None
        from handgrad.estimators._onnx import inference_parts

        return inference_parts(self)

    # -- pickling: the network travels as its configuration and arrays ---------------------

    def __getstate__(self):
        state = super().__getstate__()
        if "_net" in state:
            self._sync_network()
            net = state["_net"]
            state = {k: v for k, v in state.items() if k not in ("coefs_", "intercepts_")}
            state["_net"] = {"config": net.config(), "dtype": np.dtype(net.dtype).name,
                             "arrays": {k: to_numpy(v, copy=True) for k, v in net.state_arrays().items()}}
        return state

    def __setstate__(self, state):
        net = state.get("_net")
        if isinstance(net, dict):
            model = Sequential.from_config(net["config"], net["dtype"])
            for name, target in model.state_arrays().items():
                target[...] = net["arrays"][name]
            state = {**state, "_net": model.eval()}
        super().__setstate__(state)
        if "_net" in state:
            self._point_attributes_at_network()

    def __sklearn_array_api_convert__(self, converter):
        """A copy of this estimator whose network computes where ``converter`` puts arrays.

        scikit-learn's ``move_estimator_to(estimator, xp, device)`` calls it:
        the network moves as a whole (its parameters stay views of one
        buffer), and ``classes_`` stays on the host.
        """
        state = self.__getstate__()
        moved = type(self).__new__(type(self))
        moved.__setstate__(copy.deepcopy(state))
        if "_net" in state:
            moved._net.to(converter(self._net.flat_parameters))
            moved._point_attributes_at_network()
        return moved

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.array_api_support = True
        return tags

    # -- persistence (hg.save / hg.load) ------------------------------------------------------

    def config(self):
        """``{"type": class name, **get_params()}``: scikit-learn's constructor arguments (``dtype`` included)."""
        return {"type": type(self).__name__, **self.get_params(deep=False)}

    def to_state(self):
        """What ``hg.save`` writes: an :class:`~handgrad.io.format.EstimatorState`.

        Returns
        -------
        EstimatorState
            The network, loss, optimizer (with its state; None after
            L-BFGS), history, and as ``entry`` the encoded parameters and
            fitted attributes (see :mod:`handgrad.estimators._persist` and
            docs/model-format.md).

        Raises
        ------
        HandgradError
            The estimator is not fitted.
        """
        from handgrad.estimators._persist import estimator_state

        return estimator_state(self)

    @classmethod
    def from_state(cls, state):
        """The fitted estimator that ``hg.load`` rebuilds from an :class:`~handgrad.io.format.EstimatorState`.

        Parameters
        ----------
        state : EstimatorState
            Its network, loss and optimizer as the model-file reader checked
            them; ``state.entry`` as the file holds it, checked here field by
            field.

        Returns
        -------
        BaseMLP
            A fitted instance of ``cls``.

        Raises
        ------
        HandgradError
            A field of the wrong type or range, or parts that disagree.
        """
        from handgrad.estimators._persist import restore_estimator

        return restore_estimator(cls, state)


def layer_plan(architecture, n_features, n_outputs):
    """``[(layer class, positional arguments), ...]`` of the network an architecture describes.

    ``architecture`` is :meth:`BaseMLP._architecture`'s ``(widths,
    activation, dropout, batch_norm)``: a Dense layer per pair of widths,
    and after each hidden one a BatchNorm (with ``batch_norm``), the
    activation, and a Dropout (when ``dropout > 0``).  Training builds the
    network from it; loading checks a stored network against it.
    """
    widths, activation, dropout, batch_norm = architecture
    hidden = activation_class(estimator_activations()[activation])
    units = [n_features, *widths, n_outputs]
    plan = []
    for i, (fan_in, fan_out) in enumerate(pairwise(units)):
        plan.append((Dense, (fan_in, fan_out)))
        if i < len(widths):
            if batch_norm:
                plan.append((BatchNorm, (fan_out,)))
            plan.append((hidden, ()))
            if dropout > 0:
                plan.append((Dropout, (dropout,)))
    return plan


def extreme_inputs(X, targets, weights, dtype):
    """What in the training data is large enough to overflow ``dtype`` on its own, in words, or None.

    A squared error of targets beyond ``√max`` overflows, as do sums of
    features that large, and a sample weight within a few powers of ten of
    the largest float turns the weighted loss infinite whatever the
    learning rate.
    """
    info = np.finfo(dtype)
    root = math.sqrt(float(info.max))
    if weights is not None:
        largest = float(np.max(weights))
        if not math.isfinite(float(np.sum(weights))) or largest > float(info.max) / 1e4:
            return (f"sample_weight reaches {largest:g}, so the weighted loss overflows {info.dtype}: divide the "
                    "weights by a common factor (only their ratios matter, with alpha scaled alike)")
    if targets.dtype.kind == "f" and targets.size and float(np.max(np.abs(targets))) > root:
        return (f"y reaches {float(np.max(np.abs(targets))):g}, so squared errors overflow {info.dtype}: scale the "
                "targets (e.g. sklearn.compose.TransformedTargetRegressor with a StandardScaler)")
    values = X.data if is_sparse(X) else X
    if values.size and float(np.max(np.abs(values))) > root:
        return (f"X reaches {float(np.max(np.abs(values))):g}, so the network's sums overflow {info.dtype}: the "
                "input may need scaling (e.g. sklearn.preprocessing.StandardScaler)")
    return None


def _as_dtype(X, dtype):
    """``X`` (dense, sparse, or of another namespace) in ``dtype``, copied only if needed; sparse input becomes CSR."""
    if is_sparse(X):
        X = X.tocsr()
        return X if X.dtype == dtype else X.astype(dtype)
    if is_foreign(X):
        return ops_for(X).astype(X, dtype, copy=False)
    return np.ascontiguousarray(X, dtype=dtype)


def _rows(X, rows):
    """The rows ``rows`` (host indices) of ``X``, where ``X`` is."""
    if is_sparse(X) or not is_foreign(X):
        return X[rows]
    ops = ops_for(X)
    return ops.take(X, ops.asarray(rows), axis=0)


def _float_dtypes(X):
    """The float dtypes scikit-learn's validation keeps, in ``X``'s namespace (NumPy's without dispatch)."""
    xp, _ = get_namespace(X)
    return (xp.float64, xp.float32)


def _on_host(y):
    """Targets on the host: under array API dispatch they may be in any namespace (labels are encoded on the
    host, as scikit-learn encodes them); without it, scikit-learn's own validation reads them."""
    return to_numpy(y) if get_config()["array_api_dispatch"] and is_foreign(y) else y


class _TrainingData:
    """The training rows (with weights) and, for early stopping, the validation rows."""

    def __init__(self, X, targets, weights, X_val=None, targets_val=None, weights_val=None):
        self.X, self.targets, self.weights = X, targets, weights
        self.X_val, self.targets_val, self.weights_val = X_val, targets_val, weights_val


class _EpochBookkeeping(Callback):
    """scikit-learn's rules after each epoch of a stochastic fit, as a callback of the one training run.

    The loss curve and counters, the plateau count (on the training loss, or
    on the validation score with ``early_stopping``) and the stop it calls
    for, and the SGD rate schedules.  ``converged`` tells whether the run
    stopped on a plateau.
    """

    def __init__(self, estimator, data, n_samples):
        self.estimator, self.data, self.n_samples = estimator, data, n_samples
        self.converged = False

    def on_epoch_end(self, ctx, record):
        est = self.estimator
        est._epochs_trained += 1
        est.n_iter_ += 1
        est.t_ += self.n_samples
        est.loss_ = record["train_loss"]
        est.loss_curve_.append(est.loss_)
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {est.loss_:.8f}")
        est._update_no_improvement_count(self.data)
        if est.solver == "sgd" and est.learning_rate == "invscaling":
            est._set_learning_rate(est.learning_rate_init / (est.t_ + 1) ** est.power_t)
        if est._no_improvement_count > est.n_iter_no_change and est._plateau_stops():
            self.converged = ctx.stop = True
