"""Optional compiled optimizer updates: one pass over memory instead of about ten.

The NumPy updates in :mod:`handgrad.optim.optimizers` sweep the flat parameter
vector once per elementwise operation (Adam: eleven sweeps over 1–2 MB).
These kernels do the same arithmetic for one element at a time, so every
parameter, gradient and moment is read and written once per step.

Each kernel performs the float operations of its NumPy counterpart in the
same order and the same dtype (``float32`` constants for a ``float32`` model;
no fused multiply-add, no fast-math reassociation), so both paths give
bit-identical results and training is equally reproducible with or without
Numba.  The kernels are compiled by Numba, which is optional: ``kernels()``
returns ``None`` when it is not installed (or when the environment variable
``HANDGRAD_NO_NUMBA`` is set when they are first asked for), and the
optimizers then use NumPy.

Which update a run uses is chosen through the public ``compiled=`` argument
of :func:`handgrad.fit` and ``Optimizer.prepare``; :func:`kernels_for` holds
the policy behind it.
"""

import os

import numpy as np

from handgrad.errors import HandgradError

_UNLOADED = object()
_kernels = _UNLOADED

# Loading Numba and its cached machine code costs about a second, once per
# process; the NumPy update of a vector this short takes a few microseconds,
# so small models (and most test suites) never pay for Numba at all.
MIN_SIZE = 1 << 16

# A run short enough is faster without them, loading included: the compiled
# Adam update saves about 2 ns per parameter per step (on this 2-core machine, 775 µs
# against 257 µs per step for 235k float32 parameters), so the second of
# loading pays for itself after about 5e8 parameter-steps.  Below twice that,
# a run keeps the NumPy updates unless the kernels are loaded already (by an
# earlier, longer run in the same process): a cold process then starts as
# fast as a warm one.
WORTH_LOADING = 10**9


def kernels_for(size, steps=None, compiled=None):
    """The compiled kernels for an update of ``size`` parameters, or ``None`` for NumPy's.

    Parameters
    ----------
    size : int
        Parameters per update.
    steps : int, optional
        How many updates the run will make, if known.
    compiled : {None, True, False}
        None: the kernels if they are worth loading: never below
        ``MIN_SIZE`` parameters, and for a run of fewer than
        ``WORTH_LOADING / size`` steps only if they are loaded already.
        True: the kernels, whatever the size.  False: None.

    Raises
    ------
    HandgradError
        ``compiled=True`` when the kernels cannot be had.
    """
    if compiled is not None:
        return required() if compiled else None
    if size < MIN_SIZE:
        return None
    if _kernels is _UNLOADED and steps is not None and size * steps < WORTH_LOADING:
        return None
    return kernels()


def required():
    """The compiled kernels, or a one-line :class:`~handgrad.HandgradError` saying why there are none."""
    found = kernels()
    if found is None:
        reason = ("HANDGRAD_NO_NUMBA was set" if os.environ.get("HANDGRAD_NO_NUMBA")
                  else "Numba is not installed here (or cannot compile)")
        raise HandgradError(f"compiled=True asks for the compiled optimizer update, but {reason}; install numba "
                            "(pip install numba) and unset HANDGRAD_NO_NUMBA, or pass compiled=None")
    return found


def loaded():
    """Whether this process has loaded the compiled kernels (a warm process, as far as updates go)."""
    return _kernels is not _UNLOADED and _kernels is not None


def kernels():
    """The compiled kernels as a namespace, or ``None`` without Numba.

    Numba is imported on the first call only: ``import handgrad`` stays fast.
    """
    global _kernels
    if _kernels is _UNLOADED:
        _kernels = None if os.environ.get("HANDGRAD_NO_NUMBA") else _compile()
    return _kernels


def _compile():
    try:
        import numba
    except ImportError:
        return None
    try:
        return _build(numba)
    except Exception:  # a Numba that cannot compile here: the NumPy updates give the same results
        return None


def _signatures(n_arrays, n_scalars, extra=""):
    """Both float dtypes, C-contiguous vectors: compiled up front, so a failure shows at load time."""
    return [f"void({', '.join([f'{t}[::1]'] * n_arrays)}, int64, {', '.join([t] * n_scalars)}{extra})"
            for t in ("float32", "float64")]


def _build(numba):
    # error_model="numpy": division by zero gives inf/nan as in NumPy instead of
    # raising, which also lets LLVM vectorise the loops.  cache=True keeps the
    # machine code on disk, so only the first run on a machine pays to compile.
    def jit(signatures):
        return numba.njit(signatures, cache=True, error_model="numpy", nogil=True)

    @jit(_signatures(4, 7))
    def adam(p, g, m, v, n_decayed, l2, b1, b2, one_minus_b1, one_minus_b2, step_size, eps_hat):
        """``g[:n_decayed] += l2 p`` (nn.objective.add_l2_gradient); then the update of optimizers.Adam.step.

        All scalars arrive already cast to the dtype of ``p``.
        """
        for i in range(n_decayed):
            g[i] += l2 * p[i]
        for i in range(p.size):
            gi = g[i]
            mi = m[i] * b1 + gi * one_minus_b1              # m ← β₁m + (1−β₁)g
            vi = v[i] * b2 + (gi * gi) * one_minus_b2       # v ← β₂v + (1−β₂)g²
            m[i] = mi
            v[i] = vi
            p[i] -= (mi / (np.sqrt(vi) + eps_hat)) * step_size

    @jit(_signatures(3, 3, ", boolean"))
    def sgd_momentum(p, g, velocity, n_decayed, l2, lr, mu, nesterov):
        """``g[:n_decayed] += l2 p`` (nn.objective.add_l2_gradient); then the update of optimizers.SGD.step."""
        for i in range(n_decayed):
            g[i] += l2 * p[i]
        for i in range(p.size):
            vi = velocity[i] * mu + g[i]                     # v ← μv + g
            velocity[i] = vi
            if nesterov:
                p[i] -= (vi * mu + g[i]) * lr                # θ ← θ − η(g + μv)
            else:
                p[i] -= vi * lr                              # θ ← θ − ηv

    return _Kernels(adam=adam, sgd_momentum=sgd_momentum)


class _Kernels:
    def __init__(self, **functions):
        self.__dict__.update(functions)
