"""``--device``: where ``handgrad train`` computes.

``cpu`` (the default) trains on NumPy.  ``cuda``, ``cuda:N`` and ``mps``
train on a GPU through an array API library (:mod:`handgrad.arrays`):
PyTorch when it is installed and sees the device, otherwise CuPy for CUDA.
Whichever is missing, the command stops before loading any data, with one
line saying what (the library, array-api-compat, or the GPU itself).

The device changes where the arithmetic runs, not what the model is: the
same seed trains the same weights (to rounding), and the model file is
written from host arrays, so ``handgrad evaluate`` and ``predict`` read it
on any machine.
"""

import re

from handgrad.arrays import NUMPY, ops_for
from handgrad.errors import HandgradError

DEVICES = "cpu, cuda, cuda:N or mps"
_PATTERN = re.compile(r"cpu|cuda(:\d+)?|mps")
_CPU_ADVICE = "drop --device to train on the CPU with NumPy"


def device_name(text):
    """``--device``'s value: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    if not isinstance(text, str) or not _PATTERN.fullmatch(text):
        raise HandgradError(f"must be {DEVICES}, got {text!r}")
    return text


def ops_for_device(name):
    """The ops that compute on device ``name`` (``None`` or ``"cpu"``: NumPy's).

    Raises
    ------
    HandgradError
        One line naming what the device needs and is missing here.
    """
    if name in (None, "cpu"):
        return NUMPY
    try:
        import array_api_compat  # noqa: F401 - names the namespaces of PyTorch's and CuPy's arrays
    except ImportError:
        raise HandgradError(f"--device {name} needs array-api-compat, which is not installed: "
                            f"pip install array-api-compat, or {_CPU_ADVICE}") from None
    if name == "mps":
        return _torch_mps()
    return _cuda(name)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _torch_mps():
    torch = _torch()
    if torch is None:
        raise HandgradError(f"--device mps needs PyTorch, which is not installed: pip install torch, or {_CPU_ADVICE}")
    if not torch.backends.mps.is_available():
        raise HandgradError(f"--device mps: PyTorch is installed but sees no MPS device (Apple GPU) here; "
                            f"{_CPU_ADVICE}")
    return ops_for(torch, "mps")


def _cuda(name):
    index = int(name.partition(":")[2] or 0)
    torch, cupy = _torch(), _cupy()
    if torch is not None and torch.cuda.is_available():
        _check_index(name, index, torch.cuda.device_count())
        return ops_for(torch, f"cuda:{index}")
    if cupy is not None:
        count = _cupy_devices(cupy)
        if count:
            _check_index(name, index, count)
            return ops_for(cupy, cupy.cuda.Device(index))
    if torch is None and cupy is None:
        raise HandgradError(f"--device {name} needs PyTorch or CuPy built for CUDA, and neither is installed: "
                            f"pip install torch (or cupy-cuda12x), or {_CPU_ADVICE}")
    found = " and ".join(library for library, module in (("PyTorch", torch), ("CuPy", cupy)) if module is not None)
    raise HandgradError(f"--device {name}: {found} {'is' if ' and ' not in found else 'are'} installed but "
                        f"see{'s' if ' and ' not in found else ''} no CUDA GPU here; {_CPU_ADVICE}")


def _cupy():
    try:
        import cupy
    except ImportError:
        return None
    return cupy


def _cupy_devices(cupy):
    try:
        return cupy.cuda.runtime.getDeviceCount()
    except Exception:  # no driver, or no GPU: CuPy raises its own runtime error
        return 0


def _check_index(name, index, count):
    if index >= count:
        raise HandgradError(f"--device {name}: this machine has {count} CUDA GPU{'s' if count != 1 else ''} "
                            f"(cuda:0{f'..cuda:{count - 1}' if count > 1 else ''}); pick one of them")
