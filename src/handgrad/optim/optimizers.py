"""Optimizers: each owns its state and updates parameters in place in ``step``.

``step(params, grads)`` takes matching lists of arrays.  The training loop
calls ``step_flat`` instead, with each model's single flat parameter vector
and the L2 decay, so one update touches the whole model: as one pass of a
compiled kernel (:mod:`handgrad._compiled`) when handgrad was built with
them, otherwise in a few vectorised NumPy operations; both give
bit-identical results, and ``prepare(..., compiled=)``
(``hg.fit(..., compiled=)``) chooses between them.  The NumPy code in
``step`` is the reference the kernels are tested against.
``lr`` is a plain attribute that a learning-rate schedule may change between
steps.

An optimizer is saved as a layer is (see :class:`handgrad.registry.Registered`):
its configuration is its constructor's arguments, so a subclass with
arguments of its own is stored, and rebuilt, as itself.

Scalars enter the NumPy updates as Python floats, so every operation runs in
the parameters' dtype (a NumPy float64 scalar would silently promote a
float32 update to float64 and round it back).

Arrays.  An optimizer updates parameters in their own namespace and on
their device (:mod:`handgrad.arrays`): its state arrays are made beside the
parameters they follow, and moved there if the parameters move (or come
back from a checkpoint, which holds host arrays).  The compiled update is
NumPy's alone.
"""

import math

import numpy as np

from handgrad import _compiled
from handgrad._compiled import check_compiled
from handgrad.arrays import NUMPY, ops_for, to_numpy
from handgrad.constraints import Boolean, Options, Pair, Real
from handgrad.errors import HandgradError
from handgrad.nn.objective import add_l2_gradient
from handgrad.registry import OPTIMIZERS, Registered


class Optimizer(Registered, registry=OPTIMIZERS):
    """Base class: ``step``, ``step_flat``, state for checkpoints, and ``prepare``.

    Defining a subclass registers it (:class:`handgrad.registry.Registered`)
    under its class name, which checkpoints store, and its short name
    (``"sgd"``, ``"adam"``: ``--optimizer`` and the estimators' ``solver``).
    Its configuration is its constructor's arguments, kept as attributes of
    the same names; ``constraints`` declares their valid ranges.

    A subclass declares the names of the arrays it keeps per parameter group
    in the class attribute ``state_names`` (an instance may narrow them, as
    SGD without momentum keeps none).  They are what ``state_dict`` saves and
    what a checkpoint must hold (:mod:`handgrad.io.modelfile` checks a file
    against them).

    Parameters
    ----------
    lr : float
        The learning rate ``η``, a positive number.

    Raises
    ------
    HandgradError
        A non-positive or non-finite ``lr`` (``constraints``).

    See Also
    --------
    SGD, Adam : The two optimizers handgrad defines.
    fit : Calls the optimizer's update once per minibatch.

    Examples
    --------
    >>> optimizer = hg.Adam(lr=0.01)
    >>> isinstance(optimizer, hg.Optimizer), optimizer.name, optimizer.config()
    (True, 'adam', {'type': 'Adam', 'lr': 0.01, 'betas': (0.9, 0.999), 'eps': 1e-08, 'eps_on': 'v_hat'})
    >>> hg.SGD(momentum=0.9).state_names, hg.SGD().state_names     # plain SGD keeps no state
    (('velocity',), ())
    """

    name = None
    state_names = ()
    constraints = {"lr": Real(0, closed="neither", remedy="1e-3 is usual for Adam, 0.01 to 0.1 for SGD")}

    def __init__(self, lr):
        self.lr = float(lr)
        self.state = []

    # Per-group working buffers: they live beside the state so each step can
    # reuse them, but carry no information and are never saved.
    _WORK_BUFFERS = ("scratch",)

    # The caller's choice of update (see prepare); None: automatic.
    _compiled_choice = None
    # (param, grad, state list, whether the kernels apply): what step_flat last checked (_compiled_kernels).
    _checked_flat = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_checked_flat", None)        # references to the model's vectors, not the optimizer's state
        return state

    def prepare(self, param, compiled=None):
        """Choose the update :meth:`step_flat` runs on ``param`` (a model's flat parameter vector).

        Loads the compiled kernels now if ``step_flat`` will use them, so
        that loading (about a millisecond, once per process) is not charged
        to the first step.  Optional: without it ``step_flat`` chooses
        automatically.

        Parameters
        ----------
        param : ndarray
            The flat parameter vector ``step_flat`` will update.
        compiled : {None, True, False}
            Which update ``step_flat`` runs; both give bit-identical results.
            None (automatic): the compiled one whenever handgrad was built
            with its kernels (:func:`handgrad._compiled.for_run`) and the
            environment variable ``HANDGRAD_NO_COMPILED`` is not set.  True:
            the compiled one, or an error.  False: NumPy only.  A subclass
            with its own ``step`` is never bypassed.

        Returns
        -------
        bool
            Whether ``step_flat`` will run the compiled kernels.

        Raises
        ------
        HandgradError
            ``compiled=True`` without the kernels (or with ``HANDGRAD_NO_COMPILED`` set),
            or for parameters that are not NumPy arrays.
        """
        check_compiled(compiled)
        self._compiled_choice = compiled
        self._checked_flat = None
        if ops_for(param) is not NUMPY:
            if compiled:
                raise HandgradError(f"compiled=True asks for the compiled optimizer update, which updates NumPy "
                                    f"arrays only, and these parameters are {ops_for(param).name} arrays; "
                                    "pass compiled=None")
            return False
        return _compiled.for_run(compiled) is not None

    def _ensure_state(self, params):
        """The state for ``params``, made (or moved) beside them; returns their ops."""
        names = (*self.state_names, *self._WORK_BUFFERS)
        ops = ops_for(params[0])
        if not self.state:
            self.state = [{n: ops.zeros_like(p) for n in names} for p in params]
        elif [tuple(s[names[0]].shape) for s in self.state] != [tuple(p.shape) for p in params]:
            raise HandgradError("this optimizer was used with other parameters; make a new one for each model")
        elif ops_for(self.state[0][names[0]]) is not ops:     # loaded from a file, or the model has moved
            self.state = [{k: ops.asarray(v, copy=True) for k, v in s.items()} for s in self.state]
        return ops

    def state_dict(self):
        """Hyperparameters and copies of the state arrays, for checkpoints: NumPy arrays on the host.

        The copies do not change as training goes on; working buffers are left out.
        """
        state = [{k: to_numpy(v, copy=True) for k, v in s.items() if k not in self._WORK_BUFFERS} for s in self.state]
        return {"config": self.config(), "state": state, **self._counters()}

    def load_state_dict(self, state):
        self.state = [{k: np.array(v) for k, v in s.items()} for s in state["state"]]
        for group in self.state:            # state_dict leaves the working buffers out: give them back
            if group:
                like = next(iter(group.values()))
                group.update({n: np.zeros_like(like) for n in self._WORK_BUFFERS if n not in group})
        for key, value in self._counters().items():
            setattr(self, key, type(value)(state[key]))

    def _counters(self):
        return {}

    def step_flat(self, param, grad, l2=0.0, n_decayed=0):
        """Add the L2 gradient ``λ θ`` to ``grad[:n_decayed]``, then ``step([param], [grad])``.

        ``param`` and ``grad`` are a model's ``flat_parameters`` and
        ``flat_gradients`` (weights first, see :class:`~handgrad.Sequential`).
        Subclasses fuse the two into one pass where they can.
        """
        if l2 and n_decayed:
            add_l2_gradient(param, grad, n_decayed, l2, self._decay_scratch(param, n_decayed))
        self.step([param], [grad])

    def _decay_scratch(self, param, n_decayed):
        """A private buffer for ``λ θ`` (not optimizer state: never saved)."""
        scratch = getattr(self, "_scratch", None)
        ops = ops_for(param)
        if (scratch is None or tuple(scratch.shape) != (n_decayed,) or ops_for(scratch) is not ops
                or scratch.dtype != param.dtype):
            scratch = self._scratch = ops.empty(n_decayed, dtype=param.dtype)
        return scratch


def _compiled_kernels(optimizer, cls, param, grad):
    """The compiled kernels for ``cls``'s update, unless a subclass has its own ``step``; the state made.

    They take contiguous float32 or float64 NumPy vectors, as a model's flat
    buffers are on NumPy.  Those checks, and the state's, are made once for
    the same vectors and state list and remembered: a small model's step is
    tens of microseconds, and they cost several.
    """
    checked = optimizer._checked_flat
    if checked is None or checked[0] is not param or checked[1] is not grad or checked[2] is not optimizer.state:
        applies = _kernels_apply(optimizer, cls, param, grad)
        if applies and optimizer.state_names:
            optimizer._ensure_state([param])
        checked = optimizer._checked_flat = (param, grad, optimizer.state, applies)
    return _compiled.for_run(optimizer._compiled_choice) if checked[3] else None


def _kernels_apply(optimizer, cls, param, grad):
    if not (isinstance(param, np.ndarray) and isinstance(grad, np.ndarray)):
        return False
    if type(optimizer).step is not cls.step or not (param.flags.c_contiguous and grad.flags.c_contiguous):
        return False
    return param.dtype in (np.float32, np.float64) and grad.dtype == param.dtype


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    Plain:      ``θ ← θ − η g``.
    Momentum:   ``v ← μ v + g``;  ``θ ← θ − η v``.
    Nesterov:   ``v ← μ v + g``;  ``θ ← θ − η (g + μ v)``.

    The velocity accumulates gradients, not steps, so changing ``η`` with a
    schedule rescales every later step at once (PyTorch's convention).

    Parameters
    ----------
    lr : float, default 0.01
        ``η``, a positive number.
    momentum : float, default 0
        ``μ``, in [0, 1).
    nesterov : bool, default False
        Nesterov's form; needs ``momentum > 0``.

    Raises
    ------
    HandgradError
        A setting out of its declared range (``constraints``), or Nesterov without momentum.

    See Also
    --------
    Adam : Per-parameter step sizes from the gradients' moments.

    Examples
    --------
    >>> theta, g = np.array([1.0, 2.0]), np.array([0.5, -0.5])
    >>> hg.SGD(lr=0.1).step([theta], [g])                   # θ ← θ − η g
    >>> theta
    array([0.95, 2.05])
    >>> sgd = hg.SGD(lr=0.1, momentum=0.5)
    >>> sgd.step([theta], [g]); sgd.step([theta], [g])       # v = g, then v = 0.5 g + g
    >>> theta
    array([0.825, 2.175])
    """

    state_names = ("velocity",)
    constraints = {
        "momentum": Real(0, 1, closed="left", remedy="at 1 the velocity never forgets a gradient; 0.9 is usual"),
        "nesterov": Boolean(),
    }

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False):
        super().__init__(lr)
        if nesterov and momentum == 0:
            raise HandgradError("nesterov=True needs momentum > 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        if self.momentum == 0:
            self.state_names = ()           # plain SGD keeps no state

    def step(self, params, grads):
        """Update each parameter in place: ``θ ← θ − η g``, or by the (Nesterov) momentum rule.

        Parameters
        ----------
        params : list of arrays
            The parameters, updated in place.
        grads : list of arrays
            Their gradients ``g``, in the same order and shapes.

        Raises
        ------
        HandgradError
            With momentum: the optimizer already holds state for other parameters.
        """
        if self.momentum == 0:
            for p, g in zip(params, grads):
                p -= self.lr * g
            return
        ops = self._ensure_state(params)
        mu = self.momentum
        for p, g, s in zip(params, grads, self.state):
            v, tmp = s["velocity"], s["scratch"]
            v *= mu
            v += g
            if self.nesterov:
                ops.multiply(v, mu, out=tmp)
                tmp += g
            else:
                ops.copyto(tmp, v)
            tmp *= self.lr
            p -= tmp

    def step_flat(self, param, grad, l2=0.0, n_decayed=0):
        kernels = _compiled_kernels(self, SGD, param, grad)
        if kernels is None:
            super().step_flat(param, grad, l2, n_decayed)
            return
        velocity = self.state[0]["velocity"] if self.momentum else None
        kernels.sgd(param, grad, velocity, n_decayed if l2 else 0, float(l2), self.lr, self.momentum, self.nesterov,
                    _compiled.update_threads(param.size))


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015).

    With ``t`` counting steps from 1:

        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g²
        θ ← θ − η · m̂ / (√v̂ + ε),   m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ).

    Where ``ε`` goes, ``eps_on``:

    * ``"v_hat"`` (default, as PyTorch): ``ε`` is added to ``√v̂``, after the
      bias correction.  The code folds both corrections into one scalar:
      with ``c₁ = 1 − β₁ᵗ`` and ``c₂ = 1 − β₂ᵗ`` the update equals
      ``θ ← θ − (η √c₂ / c₁) · m / (√v + ε √c₂)``, which needs no extra pass
      over ``m`` or ``v``.
    * ``"v"`` (as scikit-learn, and the "efficient version" at the end of
      section 2 of Kingma & Ba): ``ε`` is added to ``√v``, before the
      correction, ``θ ← θ − (η √c₂ / c₁) · m / (√v + ε)``.

    The two differ only while ``√v`` is not large against ``ε``: early
    steps, and parameters whose gradients are tiny.  Both forms run through
    the same update with ``ε̂ = ε √c₂`` or ``ε̂ = ε``, in NumPy and in the
    compiled kernel alike.

    Parameters
    ----------
    lr : float, default 1e-3
        ``η``, a positive number.
    betas : pair of floats, default (0.9, 0.999)
        ``(β₁, β₂)``, each in [0, 1); kept as the tuple ``betas`` (and read as ``beta1``, ``beta2``).
    eps : float, default 1e-8
        ``ε``, a positive number.
    eps_on : {"v_hat", "v"}, default "v_hat"
        Where ``ε`` goes (above).  A checkpoint written before the option
        was stored lacks it, and loads with the default.

    Raises
    ------
    HandgradError
        A setting out of its declared range (``constraints``).

    See Also
    --------
    SGD : Plain and momentum gradient descent.

    Examples
    --------
    The first step moves every parameter by about ``η`` against its gradient's sign
    (``m̂ = g`` and ``v̂ = g²`` after one step):

    >>> theta = np.array([1.0, 2.0])
    >>> adam = hg.Adam(lr=0.1)
    >>> adam.step([theta], [np.array([0.5, -4.0])])
    >>> np.round(theta, 6), adam.t
    (array([0.9, 2.1]), 1)
    """

    state_names = ("m", "v")
    EPS_PLACEMENTS = ("v_hat", "v")
    constraints = {
        # β = 1 would never forget (and divide by 1 − βᵗ = 0 in the correction).
        "betas": Pair(Real(0, 1, closed="left"), remedy="(0.9, 0.999) is usual"),
        "eps": Real(0, closed="neither", in_dtype=True, remedy="it keeps the step finite where v is 0; 1e-8 is usual"),
        "eps_on": Options(*EPS_PLACEMENTS, remedy="'v_hat' adds ε to the corrected √v̂ (as PyTorch), "
                                                  "'v' adds it to √v (as scikit-learn)"),
    }

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, eps_on="v_hat"):
        super().__init__(lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.eps_on = eps_on
        self.t = 0

    @property
    def beta1(self):
        """``β₁``, the first of ``betas``."""
        return self.betas[0]

    @property
    def beta2(self):
        """``β₂``, the second of ``betas``."""
        return self.betas[1]

    def step(self, params, grads):
        """Update each parameter in place by Adam's rule, after counting the step (``t ← t + 1``).

        Parameters
        ----------
        params : list of arrays
            The parameters, updated in place.
        grads : list of arrays
            Their gradients ``g``, in the same order and shapes.

        Raises
        ------
        HandgradError
            The optimizer already holds state for other parameters.
        """
        ops = self._ensure_state(params)
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step_size, eps_hat = self._corrected()
        for p, g, s in zip(params, grads, self.state):
            m, v, tmp = s["m"], s["v"], s["scratch"]
            m *= b1
            ops.multiply(g, 1 - b1, out=tmp)
            m += tmp                        # m ← β₁m + (1−β₁)g
            v *= b2
            ops.multiply(g, g, out=tmp)
            tmp *= 1 - b2
            v += tmp                        # v ← β₂v + (1−β₂)g²
            ops.sqrt(v, out=tmp)
            tmp += eps_hat                  # √v + ε̂
            ops.divide(m, tmp, out=tmp)
            tmp *= step_size
            p -= tmp

    def _corrected(self):
        """``(η √c₂ / c₁, ε̂)`` for the current ``t``, as Python floats: ``ε̂ = ε √c₂`` or ``ε`` (``eps_on``)."""
        c1, c2 = 1 - self.beta1 ** self.t, 1 - self.beta2 ** self.t
        eps_hat = self.eps * math.sqrt(c2) if self.eps_on == "v_hat" else self.eps
        return self.lr * math.sqrt(c2) / c1, eps_hat

    def step_flat(self, param, grad, l2=0.0, n_decayed=0):
        kernels = _compiled_kernels(self, Adam, param, grad)
        if kernels is None:
            super().step_flat(param, grad, l2, n_decayed)
            return
        self.t += 1
        step_size, eps_hat = self._corrected()
        state = self.state[0]
        # Python floats, rounded to the parameters' dtype inside, as NumPy rounds them in step.
        kernels.adam(param, grad, state["m"], state["v"], n_decayed if l2 else 0, float(l2), self.beta1, self.beta2,
                     1 - self.beta1, 1 - self.beta2, step_size, eps_hat, _compiled.update_threads(param.size))

    def _counters(self):
        return {"t": self.t}


def optimizer_from_config(config):
    """Rebuild an optimizer (without its state) from ``Optimizer.config()`` output."""
    return OPTIMIZERS.build(config)
