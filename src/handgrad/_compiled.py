"""The compiled kernels (``handgrad._kernels``, C in ``csrc/``) and the NumPy code each one equals.

The NumPy code in :mod:`handgrad.nn` and :mod:`handgrad.optim` is the
reference: it carries the derivations and is what the kernels are tested
against.  A kernel does the same work for a whole array in one pass, with
one Python call instead of the five to fifteen NumPy calls it replaces:

==============================  ==============================================  =====================
kernel                          NumPy code it stands for                         agreement
==============================  ==============================================  =====================
``adam``                        ``add_l2_gradient`` + ``Adam.step``              bit for bit
``sgd``                         ``add_l2_gradient`` + ``SGD.step`` (plain,       bit for bit
                                momentum, Nesterov)
``bias_activation``             Dense's ``out += b`` + the activation's          see below
                                ``forward`` (:func:`numpy_bias_activation`)
``activation_gradient_bias``    the activation's ``backward`` + Dense's          see below
                                ``db = Σ_rows`` (:func:`numpy_activation_gradient_bias`)
``softmax_cross_entropy``       ``SoftmaxCrossEntropy`` forward + backward,      a few ulps
                                integer labels (:func:`numpy_softmax_cross_entropy`)
``take_rows``                   ``np.take(X, idx, axis=0, out=...)``             bit for bit
==============================  ==============================================  =====================

"Bit for bit": the kernel rounds after the same operations as the NumPy
code, in the same dtype and order (no fused multiply-add, no reassociation;
the sums follow NumPy's own order, pairwise where NumPy sums pairwise).
Identity, ReLU and LeakyReLU, and every backward that needs no function
from the C library (Identity, Sigmoid, Tanh, ReLU, LeakyReLU, ELU), are
bit for bit too.  Where a kernel calls ``exp``, ``log``, ``tanh``,
``expm1``, ``log1p`` or ``erfc``, the C library's may differ from NumPy's
SIMD versions (or SciPy's ``erfc``) in the last bits: the forward passes of
Sigmoid, Tanh, ELU, Softplus and GELU, the backward passes of Softplus and
GELU, and the softmax cross-entropy agree to a few units in the last place
(``tests/test_compiled.py`` states the bound for each).

When they are used: whenever the extension is built (:func:`for_run`),
on NumPy arrays; it loads in about a millisecond, so short runs use it too.

* The optimizers' ``step_flat`` runs ``adam`` and ``sgd``
  (``Optimizer.prepare``).
* :class:`~handgrad.Sequential` runs a handgrad Dense layer and the
  handgrad activation after it as Dense's product and
  ``bias_activation``, forward, and ``activation_gradient_bias`` and
  Dense's products, backward, where that pays (:data:`FUSED_FORWARDS`,
  :data:`FUSED_BACKWARDS`; ``Sequential.prepare``).
* :class:`~handgrad.SoftmaxCrossEntropy` runs ``softmax_cross_entropy``
  for integer labels without sample weights (``Loss.prepare``); the same
  pass counts the rows whose ``np.argmax`` is the label, which ``fit``'s
  accuracy takes.
* ``fit`` gathers each minibatch of ``X`` and ``y`` with ``take_rows``.

``hg.fit(..., compiled=False)`` passes the choice to all of them and keeps
the NumPy code; ``compiled=True`` refuses to run without the kernels.  The
environment variable ``HANDGRAD_NO_COMPILED`` (or its older name
``HANDGRAD_NO_NUMBA``) makes the automatic choice NumPy's.

Where the extension comes from: ``pip install`` compiles it from ``csrc/``
(``setup.py``); without a C compiler the install still succeeds, without
it, and handgrad runs its NumPy code.
"""

import os
import sys
from pathlib import Path

import numpy as np

from handgrad._csrc_digest import digest
from handgrad.errors import HandgradError

# Each of these, set to anything but the empty string, switches the kernels off.
SWITCHES = ("HANDGRAD_NO_COMPILED", "HANDGRAD_NO_NUMBA")

_UNLOADED = object()
_kernels = _UNLOADED

# Updates of at least this many parameters run on two threads when the process
# may use two CPUs; None: always one.  Measured on the 2-core benchmark machine
# under its usual load (benchmarks/NOTES.md, "Third rung"), two threads ran the
# Adam kernel at 0.63-1.02x the speed of one from 262k to 8.4M parameters, so
# the update stays on one thread until a quiet machine shows a size where two pay.
TWO_THREADS_FROM = None

# The activations the kernels know, by class name (handgrad.nn.activations), numbered as
# csrc/kernels.h numbers them, with the attribute that holds the activation's parameter.
ACTIVATIONS = {
    "Identity": (0, None),
    "Sigmoid": (1, None),
    "Tanh": (2, None),
    "ReLU": (3, None),
    "LeakyReLU": (4, "negative_slope"),
    "ELU": (5, "alpha"),
    "Softplus": (6, None),
    "GELU": (7, None),
}


# Where a fused kernel replaces the NumPy calls in training (Sequential's Dense-activation pairs): only where
# it paid in benchmarks/results/kernels.md (benchmarks/NOTES.md, "Third rung ... phase 1").  The forwards that
# call the C library per element (tanh, exp, expm1, log1p, erfc) ran at 0.2-1.3x NumPy's SIMD loops, and the
# backwards of Softplus and GELU at 0.5-0.9x; those stay NumPy.  Every fused pass here is bit for bit.
FUSED_FORWARDS = frozenset({"Identity", "ReLU", "LeakyReLU"})
FUSED_BACKWARDS = frozenset({"Identity", "Sigmoid", "Tanh", "ReLU", "LeakyReLU", "ELU"})


def check_compiled(compiled):
    """Refuse a ``compiled=`` that is not None (automatic), True or False, in one line."""
    if compiled is not None and not isinstance(compiled, (bool, np.bool_)):
        raise HandgradError(f"compiled must be None (automatic), True or False, got {compiled!r}")


def kernels():
    """The ``handgrad._kernels`` module, or ``None`` when it is not built or is switched off.

    Imported on the first call, so ``import handgrad`` does not load it.
    """
    global _kernels
    if _kernels is _UNLOADED:
        _kernels = None if _switched_off() else _import()
    return _kernels


def _switched_off():
    return next((name for name in SWITCHES if os.environ.get(name)), None)


# Why the kernels are not used although a module was found (a stale build), for required()'s message.
_stale = None


def _import():
    global _stale
    try:
        from handgrad import _kernels as module
    except ImportError:
        return None
    sources = Path(__file__).resolve().parents[2] / "csrc"      # there in a source checkout only
    if sources.is_dir() and getattr(module, "SOURCES", None) != digest(sources):
        _stale = (f"{Path(module.__file__).name} was built from other sources than {sources}; rebuild it "
                  "with pip install -e . (or python setup.py build_ext --inplace)")
        print(f"handgrad: the compiled kernels are not used: {_stale}", file=sys.stderr)
        return None
    return module


def available():
    """Whether the compiled kernels can be used in this process."""
    return kernels() is not None


def required():
    """The kernels, or a one-line :class:`~handgrad.HandgradError` saying why there are none."""
    found = kernels()
    if found is None:
        switch = _switched_off()
        reason = (f"{switch} is set" if switch else _stale if _stale else
                  "handgrad was installed without them (no C compiler when it was built)")
        raise HandgradError(f"compiled=True asks for handgrad's compiled kernels, but {reason}; reinstall "
                            "handgrad where a C compiler is available (pip install -e .), unset the variable, "
                            "or pass compiled=None")
    return found


def for_run(compiled=None):
    """The kernels a run asked for by ``compiled=``, or ``None`` for the NumPy code.

    Parameters
    ----------
    compiled : {None, True, False}
        None: the kernels when they are built and not switched off.
        True: the kernels, or an error.  False: None.

    Raises
    ------
    HandgradError
        ``compiled=True`` without the kernels (:func:`required`).
    """
    if compiled is None:
        return kernels()
    return required() if compiled else None


def loaded():
    """Whether this process has loaded the kernels already."""
    return _kernels is not _UNLOADED and _kernels is not None


def update_threads(size):
    """Threads for an update of ``size`` parameters: 2 from :data:`TWO_THREADS_FROM` on, if two CPUs are ours."""
    if TWO_THREADS_FROM is None or size < TWO_THREADS_FROM:
        return 1
    return 2 if _usable_cpus() >= 2 else 1


def _usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:              # not on Linux
        return os.cpu_count() or 1


def activation_kind(layer):
    """``(kind, parameter)`` of one of handgrad's own activations, for the kernels; ``None`` for any other layer.

    A subclass is not handgrad's own: it may compute something else.
    """
    cls = type(layer)
    entry = ACTIVATIONS.get(cls.__name__)
    if entry is None or cls.__module__ != "handgrad.nn.activations":
        return None
    kind, attribute = entry
    return kind, 0.0 if attribute is None else float(getattr(layer, attribute))


# -- the NumPy code each layer kernel stands for -------------------------------------------

def numpy_bias_activation(activation, Z, b, A):
    """What ``bias_activation(Z, b, A, kind, param, Phi)`` computes, in NumPy.

    Dense's bias add on its GEMM output ``Z`` (``out += b``), then the
    activation's forward into ``A`` (which may be ``Z``); GELU keeps ``Φ``
    on the layer (``_Phi``) where the kernel writes it to ``Phi``.
    """
    Z += b
    return activation.forward(Z, out=A)


def numpy_activation_gradient_bias(activation, G, out, db):
    """What ``activation_gradient_bias(G, S, out, db, kind, param, Phi)`` computes, in NumPy.

    The activation's backward (reading what its forward kept: ``A``, or
    ``Z`` and ``Φ`` for GELU) into ``out``, then the bias gradient of the
    Dense layer before it, ``db = Σ_rows out`` (``np.sum(G, axis=0, out=db)``
    in Dense's backward).
    """
    activation.backward(G, out=out)
    np.sum(out, axis=0, out=db)
    return out


def numpy_softmax_cross_entropy(loss, Z, y, G):
    """What ``softmax_cross_entropy(Z, y, G, scale)`` computes, in NumPy: the loss's value, gradient in ``G``.

    ``loss`` is a :class:`~handgrad.SoftmaxCrossEntropy`; ``scale`` is
    ``1/n`` for its ``"mean"`` reduction and 1 for ``"sum"``.
    """
    value = loss.forward(Z, y)
    loss.backward(out=G)
    return value


def numpy_take_rows(src, idx, out):
    """What ``take_rows(src, idx, out)`` computes, in NumPy: the training loop's minibatch gather."""
    return np.take(src, idx, axis=0, out=out, mode="clip")
