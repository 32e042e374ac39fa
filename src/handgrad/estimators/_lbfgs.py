"""``solver="lbfgs"``: SciPy's L-BFGS-B on a network's flat parameter vector.

The optimizer sees one float64 vector ``θ``, which is exactly the model's
``flat_parameters`` (the weights of every layer, then the biases: the order
in which scikit-learn packs ``coefs_ + intercepts_``), and the function

    J(θ) = Σ_i w_i L_i / Σ_i w  +  α / (2 Σ_i w) · Σ_layers ‖W‖²

over the whole training set (``w = 1`` without sample weights), which is
scikit-learn's full-batch objective.  Its value and gradient are handgrad's
own: one forward pass, the loss, and the hand-derived backward pass of
:func:`handgrad.nn.objective.objective_step`, in float64 whatever the
estimator's dtype, so the line search compares values that rounding cannot
blur.  They are computed where the model is (on a GPU for a model moved
there); SciPy gets the host copy of each gradient, a NumPy vector, and its
next point is copied back into the model's parameters.
"""

import warnings

import numpy as np
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning

from handgrad.arrays import to_numpy
from handgrad.nn.objective import objective_step


def minimize(model, loss, X, y, *, sample_weight, alpha, max_iter, max_fun, tol, verbose):
    """Train ``model`` (float64) in place by L-BFGS-B; return ``(n_iter, final loss, loss per iteration)``.

    ``max_iter`` bounds the iterations, ``max_fun`` the evaluations of ``J``,
    and ``tol`` is the projected-gradient tolerance (SciPy's ``gtol``), as in
    scikit-learn.  A run that stops on either limit, or on a failed line
    search, warns :class:`~sklearn.exceptions.ConvergenceWarning`.
    """
    total = float(X.shape[0] if sample_weight is None else sample_weight.sum())
    l2 = alpha / total
    ops, theta = model.ops, model.flat_parameters
    y = ops.asarray(y)                                 # on the model's device once, not at every evaluation
    sample_weight = None if sample_weight is None else ops.asarray(sample_weight)

    def objective(x):
        ops.copyto(theta, x)
        value, _ = objective_step(model, loss, X, y, l2, sample_weight=sample_weight)
        return value, to_numpy(model.flat_gradients, copy=True)

    curve = []

    def callback(intermediate_result):
        curve.append(float(intermediate_result.fun))
        if verbose:
            print(f"Iteration {len(curve)}, loss = {curve[-1]:.8f}")

    with np.errstate(over="ignore", invalid="ignore"):    # a trial step may overshoot; the line search backs off
        result = scipy.optimize.minimize(objective, to_numpy(theta, copy=True), method="L-BFGS-B", jac=True,
                                         callback=callback, options={"maxiter": max_iter, "maxfun": max_fun, "gtol": tol})
    ops.copyto(theta, result.x)
    n_iter = min(int(result.nit), max_iter)
    if result.status != 0:
        message = " ".join(str(result.message).split())
        advice = (f" Increase max_iter (now {max_iter}) or max_fun (now {max_fun}), or scale the data "
                  "(e.g. sklearn.preprocessing.StandardScaler).")
        warnings.warn(f"lbfgs failed to converge after {n_iter} iteration(s) (status={result.status}): "
                      f"{message}.{advice}", ConvergenceWarning, stacklevel=5)   # the caller of fit
    return n_iter, float(result.fun), curve
