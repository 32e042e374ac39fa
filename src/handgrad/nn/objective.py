"""The training objective: a loss on the logits plus L2 decay on the weights.

    J(θ) = loss(model(X), y) + (λ/2) Σ_layers ‖W‖²

(seed 000's ``L = −log S_y + ½λΣW²``; biases are not penalised).  Its
gradient adds ``λ W`` to each weight gradient (seed 000's ``∂L_reg/∂W = λW``).
"""

import numpy as np

from handgrad.validation import check_features


def loss_and_gradients(model, loss, X, y, l2=0.0):
    """Return ``(J, grads)``: the objective as a float and its gradients.

    ``grads`` matches ``model.parameters()`` in order, shape and dtype; the
    arrays are fresh copies.  Input is checked before anything is computed
    (the targets by the loss, which knows what its task needs).  The model
    runs in its current mode: in training mode, Dropout draws a new mask and
    BatchNorm uses batch statistics (and updates its running ones).
    """
    X = check_features(X, model.dtype, model.n_features)
    y = loss.check_targets(y, X.shape[0], model.n_outputs, model.dtype)
    value, _ = objective_step(model, loss, X, y, l2)
    return value, [g.copy() for g in model.gradients()]


def objective_step(model, loss, X, y, l2, sample_weight=None):
    """Forward, backward and L2 on checked inputs; return ``(J, logits)``.

    Gradients land in ``model.flat_gradients``; ``logits`` is the model's
    reused forward buffer.  ``sample_weight`` (n,), if given, weights each
    sample's loss term (see :class:`handgrad.Loss`).
    """
    value, logits = data_gradient_step(model, loss, X, y, l2, sample_weight)
    if l2:
        model.flat_gradients[:model.n_decayed] += l2 * model.flat_parameters[:model.n_decayed]
    return value, logits


def data_gradient_step(model, loss, X, y, l2, sample_weight=None):
    """Like :func:`objective_step`, but leaves out the decay term ``λ W`` of the gradient.

    The training loop lets the optimizer add ``λ W`` in the same pass as its
    update (``Optimizer.step_flat``) instead of sweeping the weights once more.
    """
    logits = model.forward(X)
    if sample_weight is None:
        value = loss.forward(logits, y)
    else:
        value = loss.forward(logits, y, sample_weight=sample_weight)
    model.backward(loss.backward())
    if l2:
        weights = model.flat_parameters[:model.n_decayed]
        value += 0.5 * l2 * float(np.dot(weights, weights))
    return value, logits
