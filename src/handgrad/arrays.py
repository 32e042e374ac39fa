"""Array operations on any array API namespace: NumPy's own functions, or the standard's.

handgrad's layers, losses and optimizers compute through an *ops* object
instead of calling NumPy directly: ``ops.multiply(G, A, out=out)``,
``ops.sum(G, axis=0, out=self.db)``, ``ops.empty(shape, dtype)``.  There are
two kinds:

* :data:`NUMPY`, whose attributes *are* NumPy's functions (``NUMPY.multiply``
  is ``np.multiply``; the reductions and ``take`` are the ufuncs' ``reduce``
  and the array methods that ``np.sum`` and ``np.take`` end in), so the
  NumPy path writes into its ``out=`` buffers in place and pays nothing for
  the indirection;
* :class:`Ops` for any other namespace of the `array API standard
  <https://data-apis.org/array-api/>`_ (PyTorch and CuPy through
  ``array-api-compat``, ``array-api-strict``), one per namespace and device.
  The standard has no ``out=``: these functions compute the result, then
  write it into ``out`` (``out[...] = result``) and return ``out``, or
  return the new array when ``out`` is None.  Every function takes the
  arguments its NumPy namesake takes in handgrad's code.

:func:`ops_for` gives the ops of an array (its namespace and device), of a
namespace, or of a namespace and a device.  :func:`to_numpy` brings an array
of any namespace to the host.

Where the standard has no function, it is written here once: ``erfc``
(GELU) through the library's own special function, or on the host through
SciPy; ``pick``/``put`` (one entry per row, NumPy's ``A[rows, idx]``)
through ``take_along_axis`` and ``where``; ``errstate`` does nothing off
NumPy, whose floating-point warnings it silences.

A generic namespace must return views for slices and reshapes of
contiguous arrays and let them be written in place (NumPy, CuPy, PyTorch
and array-api-strict do): a model keeps its parameters as views into one
flat buffer.  :func:`ops_for` checks that once per namespace and device and
refuses one that does not (JAX, whose arrays are immutable).
"""

import importlib
from contextlib import nullcontext

import numpy as np

from handgrad.errors import HandgradError

_NUMPY_NAMESPACES = ("numpy", "array_api_compat.numpy", "sklearn.externals.array_api_compat.numpy")
_SCALARS = (bool, int, float, np.generic)


def is_foreign(x):
    """True for an array of a namespace other than NumPy (a torch tensor, an array-api-strict array, …)."""
    if isinstance(x, (np.ndarray, np.generic)):
        return False
    return hasattr(x, "__array_namespace__") or hasattr(x, "__dlpack__")


def to_numpy(x, copy=False):
    """``x`` as a NumPy array on the host: a foreign array is copied from its device, anything else goes
    through ``np.asarray``.  ``copy=True`` always returns a new array."""
    if isinstance(x, np.ndarray):
        return x.copy() if copy else x
    if not is_foreign(x):
        return np.array(x, copy=True) if copy else np.asarray(x)
    kind = type(x).__module__.split(".")[0]
    if kind == "torch":
        host = x.detach().cpu().numpy()
    elif kind == "cupy":
        host = x.get()
    else:
        host = np.from_dlpack(x)
    return np.array(host, copy=True) if copy else host


def _no_errstate(**_):
    return nullcontext()


def _pick(A, idx):
    """``A[i, idx[i]]`` for every row ``i``."""
    return A[np.arange(idx.shape[0]), idx]


def _put(A, idx, values):
    """``A[i, idx[i]] = values[i]`` (or a scalar) for every row ``i``, in place."""
    A[np.arange(idx.shape[0]), idx] = values


def _one_hot(labels, n_classes, dtype):
    """Rows of the identity: ``Y[i, labels[i]] = 1``."""
    Y = np.zeros((labels.shape[0], n_classes), dtype=dtype)
    Y[np.arange(labels.shape[0]), labels] = 1
    return Y


def _vecdot(a, b, axis=-1):
    """``Σ a ⊙ b`` along ``axis`` of 1-D or 2-D arrays, in one pass without a temporary (einsum)."""
    if a.ndim == 1:
        return np.einsum("i,i->", a, b)
    return np.einsum("ij,ij->j" if axis in (0, -2) else "ij,ij->i", a, b)


# The reductions call the ufuncs' own ``reduce`` (what ``x.sum()`` and ``x.max()`` call), skipping the
# argument handling of ``np.sum``/``np.max``: a step of a small network makes dozens of them.
_add_reduce, _maximum_reduce = np.add.reduce, np.maximum.reduce


def _sum(x, axis=None, dtype=None, keepdims=False, out=None):
    return _add_reduce(x, axis, dtype, out, keepdims)


def _max(x, axis=None, keepdims=False):
    return _maximum_reduce(x, axis, None, None, keepdims)


def _argmax(x, axis=None):
    return x.argmax(axis=axis)


def _mean(x, axis=None):
    return x.mean(axis=axis)


def _take(a, indices, axis=None, out=None, mode="raise"):
    return a.take(indices, axis=axis, out=out, mode=mode)


def _erfc_numpy(x, out=None):
    # SciPy is imported on first use: ``import handgrad`` stays fast.
    from scipy.special import erfc

    return erfc(x, out=out)


class _NumPyOps:
    """The ops of NumPy: its own functions, with ``out=`` written in place (see the module docstring)."""

    name = "numpy"
    is_numpy = True
    xp = np
    device = "cpu"
    supports_float64 = True

    def __init__(self):
        for function in ("add", "subtract", "multiply", "divide", "maximum", "minimum", "greater", "negative", "abs",
                         "exp", "expm1", "log", "log1p", "sqrt", "square", "tanh", "logaddexp", "signbit", "matmul",
                         "dot", "where", "copyto", "reshape", "empty", "zeros", "empty_like", "zeros_like", "errstate"):
            setattr(self, function, getattr(np, function))
        self.sum, self.max, self.argmax, self.mean, self.take = _sum, _max, _argmax, _mean, _take
        self.concat = np.concatenate
        self.vecdot = _vecdot
        self.pick, self.put, self.one_hot = _pick, _put, _one_hot
        self.erfc = _erfc_numpy

    @staticmethod
    def asarray(x, dtype=None, copy=None):
        """``x`` as a NumPy array (from the device for a foreign array), in ``dtype`` if given."""
        if is_foreign(x):
            x = to_numpy(x)
        if copy:
            return np.array(x, dtype=dtype, copy=True)
        return np.asarray(x, dtype=dtype)

    @staticmethod
    def copy(x):
        return x.copy()

    @staticmethod
    def astype(x, dtype, copy=True):
        return x.astype(dtype, copy=copy)

    @staticmethod
    def dtype(dtype):
        return dtype

    @staticmethod
    def numpy_dtype(dtype):
        return np.dtype(dtype).type

    @staticmethod
    def all_finite(x):
        return bool(np.isfinite(x).all())

    def __repr__(self):
        return "<ops numpy>"

    def __reduce__(self):
        return "NUMPY"                  # pickled by name: the one NumPy ops


NUMPY = _NumPyOps()


class Ops:
    """The ops of one array API namespace on one device; get one from :func:`ops_for`.

    Attributes
    ----------
    xp : module
        The namespace (``array_api_compat.torch`` for PyTorch).
    device : object
        The namespace's device object, as its arrays report it.
    name : str
        The library's name (``"torch"``, ``"array_api_strict"``).
    supports_float64 : bool
        Whether the device holds float64 (Apple's MPS does not); sums asked
        for in float64 run in float32 there.
    """

    is_numpy = False

    def __init__(self, xp, device):
        self.xp = xp
        self.device = device
        self.name = xp.__name__.rsplit(".", 1)[-1]
        info = getattr(xp, "__array_namespace_info__", None)
        floats = info().dtypes(kind="real floating", device=device) if info is not None else {"float64": None}
        self.supports_float64 = "float64" in floats
        self._dtypes = [(getattr(np, name), getattr(xp, name)) for name in
                        ("float32", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
                        if hasattr(xp, name)]
        self.errstate = _no_errstate

    def __repr__(self):
        return f"<ops {self.name} on {self.device}>"

    def __reduce__(self):
        # By the namespace's module name and the device: an object holding ops (a loss) pickles and copies.
        return _ops_named, (self.xp.__name__, self.device)

    # -- dtypes and placement ------------------------------------------------------

    def dtype(self, dtype):
        """This namespace's dtype for a NumPy dtype (``np.float32``, ``np.intp``) or one of its own."""
        if not isinstance(dtype, (type, np.dtype, str)):
            return dtype
        name = np.dtype(dtype).name
        if name == "float64" and not self.supports_float64:
            raise HandgradError(f"{self.device} holds no float64 arrays; build the model with dtype=float32")
        return getattr(self.xp, name)

    def numpy_dtype(self, dtype):
        """The NumPy scalar type of one of this namespace's dtypes."""
        for numpy_type, own in self._dtypes:
            if dtype == own:
                return numpy_type
        return np.dtype(dtype).type

    def _accumulator(self, dtype):
        """The dtype a sum asked for in ``dtype`` runs in: float64 becomes float32 on a device without it."""
        if dtype is None:
            return None
        if isinstance(dtype, (type, np.dtype, str)) and np.dtype(dtype) == np.float64 and not self.supports_float64:
            return self.xp.float32
        return self.dtype(dtype)

    def asarray(self, x, dtype=None, copy=None):
        """``x`` on this namespace and device, in ``dtype`` if given: itself when it is there already (unless
        ``copy``), else copied there (through the host from another namespace)."""
        xp = self.xp
        dtype = None if dtype is None else self.dtype(dtype)
        if is_foreign(x) and _namespace(x) is xp:
            if x.device != self.device:
                x = _to_device(x, self.device)
            elif copy:
                x = xp.asarray(x, copy=True)
            return x if dtype is None else xp.astype(x, dtype, copy=False)
        if is_foreign(x):
            x = to_numpy(x)
        return xp.asarray(x, dtype=dtype, device=self.device, copy=copy)

    def copy(self, x):
        return self.xp.asarray(x, copy=True)

    def astype(self, x, dtype, copy=True):
        return self.xp.astype(x, self.dtype(dtype), copy=copy)

    # -- creation ------------------------------------------------------------------

    def empty(self, shape, dtype=None):
        return self.xp.empty(shape, dtype=None if dtype is None else self.dtype(dtype), device=self.device)

    def zeros(self, shape, dtype=None):
        return self.xp.zeros(shape, dtype=None if dtype is None else self.dtype(dtype), device=self.device)

    def empty_like(self, x):
        return self.xp.empty_like(x)

    def zeros_like(self, x):
        return self.xp.zeros_like(x)

    def reshape(self, x, shape):
        return self.xp.reshape(x, shape)

    def concat(self, arrays, axis=0):
        return self.xp.concat(arrays, axis=axis)

    # -- out= the standard's way: compute, then write ---------------------------------

    def _out(self, result, out):
        if out is None:
            return result
        if result.dtype != out.dtype:
            result = self.xp.astype(result, out.dtype)
        out[...] = result
        return out

    def _operand(self, value, like):
        """A Python scalar as a 0-d array of ``like``'s dtype on this device; an array unchanged."""
        if isinstance(value, _SCALARS):
            return self.xp.asarray(value, dtype=like.dtype, device=self.device)
        return value

    def _binary(self, function, a, b, out):
        like = b if isinstance(a, _SCALARS) else a
        return self._out(function(self._operand(a, like), self._operand(b, like)), out)

    def _unary(self, function, x, out, dtype):
        if dtype is not None:
            x = self.xp.astype(x, self.dtype(dtype))
        return self._out(function(x), out)

    def add(self, a, b, out=None):
        return self._binary(self.xp.add, a, b, out)

    def subtract(self, a, b, out=None):
        return self._binary(self.xp.subtract, a, b, out)

    def multiply(self, a, b, out=None):
        return self._binary(self.xp.multiply, a, b, out)

    def divide(self, a, b, out=None):
        return self._binary(self.xp.divide, a, b, out)

    def maximum(self, a, b, out=None):
        return self._binary(self.xp.maximum, a, b, out)

    def minimum(self, a, b, out=None):
        return self._binary(self.xp.minimum, a, b, out)

    def greater(self, a, b, out=None):
        return self._binary(self.xp.greater, a, b, out)

    def logaddexp(self, a, b, out=None):
        return self._binary(self.xp.logaddexp, a, b, out)

    def negative(self, x, out=None, dtype=None):
        return self._unary(self.xp.negative, x, out, dtype)

    def abs(self, x, out=None, dtype=None):
        return self._unary(self.xp.abs, x, out, dtype)

    def exp(self, x, out=None, dtype=None):
        return self._unary(self.xp.exp, x, out, dtype)

    def expm1(self, x, out=None, dtype=None):
        return self._unary(self.xp.expm1, x, out, dtype)

    def log(self, x, out=None, dtype=None):
        return self._unary(self.xp.log, x, out, dtype)

    def log1p(self, x, out=None, dtype=None):
        return self._unary(self.xp.log1p, x, out, dtype)

    def sqrt(self, x, out=None, dtype=None):
        return self._unary(self.xp.sqrt, x, out, dtype)

    def square(self, x, out=None, dtype=None):
        return self._unary(self.xp.square, x, out, dtype)

    def tanh(self, x, out=None, dtype=None):
        return self._unary(self.xp.tanh, x, out, dtype)

    def signbit(self, x, out=None):
        return self._out(self.xp.signbit(x), out)

    def erfc(self, x, out=None):
        """The complementary error function: the library's own (PyTorch, CuPy), else SciPy's on the host."""
        if self.name == "torch":
            import torch

            result = torch.special.erfc(x)
        elif self.name == "cupy":
            from cupyx.scipy.special import erfc

            result = erfc(x)
        else:
            from scipy.special import erfc

            result = self.asarray(erfc(to_numpy(x)))
        return self._out(result, out)

    def where(self, condition, a, b):
        like = b if isinstance(a, _SCALARS) else a
        return self.xp.where(condition, self._operand(a, like), self._operand(b, like))

    def copyto(self, dst, src, where=None):
        """Write ``src`` (an array of any namespace, or a scalar) into ``dst``, cast to its dtype; with ``where``,
        only where it is True."""
        src = src if isinstance(src, _SCALARS) else self.asarray(src, dtype=dst.dtype)
        if where is not None:
            src = self.where(where, src, dst)
        dst[...] = src

    # -- products and reductions -------------------------------------------------------

    def matmul(self, a, b, out=None):
        return self._out(self.xp.matmul(a, b), out)

    def dot(self, a, b):
        """``Σ a ⊙ b`` of two vectors."""
        return self.xp.vecdot(a, b)

    def vecdot(self, a, b, axis=-1):
        return self.xp.vecdot(a, b, axis=axis - a.ndim if axis >= 0 else axis)   # the standard counts from the end

    def sum(self, x, axis=None, dtype=None, keepdims=False, out=None):
        return self._out(self.xp.sum(x, axis=axis, dtype=self._accumulator(dtype), keepdims=keepdims), out)

    def max(self, x, axis=None, keepdims=False):
        return self.xp.max(x, axis=axis, keepdims=keepdims)

    def argmax(self, x, axis=None):
        return self.xp.argmax(x, axis=axis)

    def mean(self, x, axis=None):
        return self.xp.mean(x, axis=axis)

    def all_finite(self, x):
        return bool(self.xp.all(self.xp.isfinite(x)))

    # -- indexing -------------------------------------------------------------------

    def take(self, a, indices, axis=None, out=None, mode=None):
        """``a``'s entries at ``indices`` along ``axis`` (``mode``, NumPy's bounds rule, is not needed: the
        indices handgrad takes are in range)."""
        return self._out(self.xp.take(a, self.asarray(indices), axis=axis), out)

    def pick(self, A, idx):
        """``A[i, idx[i]]`` for every row ``i``."""
        return self.xp.take_along_axis(A, idx[:, None], axis=1)[:, 0]

    def put(self, A, idx, values):
        """``A[i, idx[i]] = values[i]`` (or a scalar) for every row ``i``, in place."""
        values = values[:, None] if not isinstance(values, _SCALARS) else values
        A[...] = self.where(self._row_mask(idx, A.shape[1]), values, A)

    def one_hot(self, labels, n_classes, dtype):
        """Rows of the identity: ``Y[i, labels[i]] = 1``."""
        return self.xp.astype(self._row_mask(labels, n_classes), self.dtype(dtype))

    def _row_mask(self, idx, width):
        return idx[:, None] == self.xp.arange(width, dtype=idx.dtype, device=self.device)[None, :]


_CACHE = []


def ops_for(target=None, device=None):
    """The ops that compute in ``target``'s namespace (on ``device``).

    Parameters
    ----------
    target : array, namespace module, ops, or None
        An array (its namespace, and its device unless ``device`` is given);
        a namespace (``numpy``, ``torch``, ``array_api_strict``, an
        ``array_api_compat`` namespace); or None for NumPy.  A list, a
        SciPy sparse matrix or anything else that is not an array of
        another namespace is NumPy's.
    device : device object or str, optional
        Where arrays live, in the namespace's own terms (``"cuda:0"``,
        ``array_api_strict.Device("device1")``); default: ``target``'s, or the
        namespace's default device.

    Returns
    -------
    NUMPY, or an :class:`Ops`: the same object for the same namespace and device.

    Raises
    ------
    HandgradError
        A namespace handgrad cannot train in (its slices are not writable
        views), a device other than the CPU for NumPy, or a foreign array
        without ``array-api-compat`` installed to name its namespace.
    """
    if device is None and (target is None or type(target) is np.ndarray):
        return NUMPY                # the common case first: no look-up at all
    if isinstance(target, (_NumPyOps, Ops)):
        if device is None:
            return target
        target = target.xp
    if isinstance(target, type(np)):
        xp = _module_namespace(target)
    elif target is None or not is_foreign(target):
        xp = np
    else:
        xp = _namespace(target)
        device = target.device if device is None else device
    if xp is np:
        if device not in (None, "cpu"):
            raise HandgradError(f"NumPy computes on the CPU only, not on {device!r}; pass arrays of a namespace "
                                "with that device (PyTorch, CuPy)")
        return NUMPY
    found = _cached(xp, device)
    if found is not None:
        return found
    probe = xp.zeros(2, device=device) if device is not None else xp.zeros(2)
    found = _cached(xp, probe.device)       # the device as the namespace names it ("cuda" is cuda:0)
    if found is not None:
        return found
    _check_views(xp, probe)
    ops = Ops(xp, probe.device)
    _CACHE.append(ops)
    return ops


def _to_device(x, device):
    """``x`` copied to another device of its namespace (array-api-compat's helper: CuPy's arrays lack the method)."""
    try:
        import array_api_compat
    except ImportError:
        return x.to_device(device)
    return array_api_compat.to_device(x, device)


def _ops_named(module, device):
    """The ops of the array namespace named ``module`` (a pickle's), imported here if it was not yet."""
    if module.split(".")[0] == "handgrad":      # a namespace is another library's: never one of ours
        raise HandgradError(f"{module!r} is not an array namespace")
    return ops_for(importlib.import_module(module), device)


def _cached(xp, device):
    if device is None:
        return None
    for ops in _CACHE:
        if ops.xp is xp and ops.device == device:
            return ops
    return None


def _namespace(x):
    """The array API namespace of a foreign array (``array_api_compat``'s wrapper where the library needs one)."""
    try:
        import array_api_compat
    except ImportError:
        if hasattr(x, "__array_namespace__"):
            return x.__array_namespace__()
        raise HandgradError(f"{type(x).__module__}.{type(x).__name__} arrays need array-api-compat to be used with "
                            "handgrad: pip install array-api-compat") from None
    xp = array_api_compat.array_namespace(x)
    return np if xp.__name__ in _NUMPY_NAMESPACES else xp


def _module_namespace(module):
    """The namespace handgrad computes in for a module a user names (``torch``, ``numpy``, ``array_api_strict``)."""
    if module.__name__ in _NUMPY_NAMESPACES:
        return np
    return _namespace(module.asarray(0.0))


def _check_views(xp, probe):
    """Refuse a namespace whose slices and reshapes are not writable views (a model's parameters are views)."""
    try:
        view = xp.reshape(probe[1:], (1, 1))
        view[...] = 1
        works = bool(probe[1] == 1) and bool(probe[0] == 0)
    except (TypeError, ValueError, AttributeError, NotImplementedError):
        works = False
    if not works:
        raise HandgradError(f"{xp.__name__} returns copies (or immutable arrays) for slices; handgrad keeps a model's "
                            "parameters as views of one buffer, updated in place, and needs a namespace whose slices "
                            "are writable views: NumPy, CuPy, PyTorch or array-api-strict")

