"""The training objective: a loss on the logits plus L2 decay on the weights.

    J(θ) = loss(model(X), y) + (λ/2) Σ_layers ‖W‖²

(seed 000's ``L = −log S_y + ½λΣW²``; biases are not penalised).  Its
gradient adds ``λ W`` to each weight gradient (seed 000's ``∂L_reg/∂W = λW``).

The L2 term has one owner: :func:`l2_value` and :func:`add_l2_gradient`.
They work on a model's flat vectors, whose first ``n_decayed`` entries are
exactly the decayed weights (see :class:`~handgrad.nn.model.Sequential`).
The optimizers call :func:`add_l2_gradient` inside their update; their
compiled kernels (:mod:`handgrad._compiled`) perform the same
float operations element by element, with bit-identical results.  Both
compute in the namespace and on the device of the model's vectors (the
kernels on NumPy's only).
"""

from handgrad.arrays import ops_for
from handgrad.validation import check_features


def l2_value(params, n_decayed, l2):
    """The penalty ``(λ/2) ‖θ[:n_decayed]‖²`` as a Python float (0.0 without decay).

    ``params`` is a model's ``flat_parameters``; the squared norm is one
    ``np.dot`` in the parameters' dtype.
    """
    if not l2 or not n_decayed:
        return 0.0
    weights = params[:n_decayed]
    return 0.5 * l2 * float(ops_for(params).dot(weights, weights))


def add_l2_gradient(params, grads, n_decayed, l2, scratch=None):
    """``grads[:n_decayed] += λ params[:n_decayed]``: the gradient of :func:`l2_value`, added in place.

    ``λ`` enters as a Python float, so the product is taken in the
    parameters' dtype (float32 stays float32), rounded, then added: the
    order the compiled kernels follow.  ``scratch`` (``n_decayed`` entries
    of the parameters' dtype) holds the product; without it one is allocated.
    """
    if not l2 or not n_decayed:
        return
    ops = ops_for(params)
    if scratch is None:
        scratch = ops.empty(n_decayed, dtype=params.dtype)
    ops.multiply(params[:n_decayed], float(l2), out=scratch)
    grads[:n_decayed] += scratch


def loss_and_gradients(model, loss, X, y, l2=0.0):
    """Return ``(J, grads)``: the objective as a float and its gradients.

    ``grads`` matches ``model.parameters()`` in order, shape and dtype; the
    arrays are fresh copies, in the model's namespace and on its device
    (``X`` and ``y`` are copied there if they are elsewhere).  Input is
    checked before anything is computed (the targets by the loss, which
    knows what its task needs).  The model runs in its current mode: in
    training mode, Dropout draws a new mask and BatchNorm uses batch
    statistics (and updates its running ones).

    The objective is ``J = loss(model(X), y) + (λ/2) Σ‖W‖²``, the L2 term over
    the weights that decay (``decayed_names``: Dense's ``W``, never a bias).

    Parameters
    ----------
    model : Sequential
        The network; its parameters are not changed, its gradients are.
    loss : Loss
        The loss on the logits.
    X : array of shape (n, n_features)
        The inputs, one sample per row.
    y : array
        The targets, as ``loss`` reads them: labels (n,) for classification.
    l2 : float, default 0.0
        ``λ``, the L2 coefficient.

    Returns
    -------
    J : float
        The objective.
    grads : list of arrays
        ``∂J/∂θ`` for each array of ``model.parameters()``, in that order.

    Raises
    ------
    DataError
        ``X`` or ``y`` is unusable (not finite, the wrong width, labels out of range, …).

    See Also
    --------
    gradcheck : Compares these gradients with central differences.
    fit : Trains on the same objective, minibatch by minibatch.

    Examples
    --------
    >>> model = hg.Sequential(hg.Dense(2, 2, init="glorot", seed=0, dtype=np.float64))
    >>> J, grads = hg.loss_and_gradients(model, hg.SoftmaxCrossEntropy(), np.ones((3, 2)), np.array([0, 1, 1]))
    >>> [g.shape for g in grads], round(float(grads[1].sum()), 12)      # each row of P − Y sums to 0
    ([(2, 2), (2,)], 0.0)
    """
    X = check_features(X, model.dtype, model.n_features)
    y = loss.check_targets(y, X.shape[0], model.n_outputs, model.dtype)
    value, _ = objective_step(model, loss, model.placed(X), model.ops.asarray(y), l2)
    return value, [model.ops.copy(g) for g in model.gradients()]


def objective_step(model, loss, X, y, l2, sample_weight=None):
    """Forward, backward and L2 on checked inputs; return ``(J, logits)``.

    Gradients land in ``model.flat_gradients``; ``logits`` is the model's
    reused forward buffer.  ``sample_weight`` (n,), if given, weights each
    sample's loss term (see :class:`handgrad.Loss`).
    """
    value, logits = data_gradient_step(model, loss, X, y, l2, sample_weight)
    add_l2_gradient(model.flat_parameters, model.flat_gradients, model.n_decayed, l2)
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
        value += l2_value(model.flat_parameters, model.n_decayed, l2)
    return value, logits
