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
blur.
"""

import warnings

import numpy as np
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning

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
    theta = model.flat_parameters

    def objective(x):
        theta[...] = x
        value, _ = objective_step(model, loss, X, y, l2, sample_weight=sample_weight)
        return value, model.flat_gradients.copy()

    curve = []

    def callback(intermediate_result):
        curve.append(float(intermediate_result.fun))
        if verbose:
            print(f"Iteration {len(curve)}, loss = {curve[-1]:.8f}")

    with np.errstate(over="ignore", invalid="ignore"):    # a trial step may overshoot; the line search backs off
        result = scipy.optimize.minimize(objective, theta.copy(), method="L-BFGS-B", jac=True, callback=callback,
                                         options={"maxiter": max_iter, "maxfun": max_fun, "gtol": tol})
    theta[...] = result.x
    n_iter = min(int(result.nit), max_iter)
    if result.status != 0:
        message = " ".join(str(result.message).split())
        advice = (f" Increase max_iter (now {max_iter}) or max_fun (now {max_fun}), or scale the data "
                  "(e.g. sklearn.preprocessing.StandardScaler).")
        warnings.warn(f"lbfgs failed to converge after {n_iter} iteration(s) (status={result.status}): "
                      f"{message}.{advice}", ConvergenceWarning, stacklevel=5)   # the caller of fit
    return n_iter, float(result.fun), curve
