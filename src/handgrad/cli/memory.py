"""Memory: what a training run will need, what the machine allows, and a refusal when it cannot fit.

``handgrad train`` estimates, once its data are read and before it makes
the scaled copies, builds the network or starts training, the bytes that
the run will hold at once (:func:`training_bytes`), and compares them with
what this process may still take (:func:`memory_limits`): the smallest of
the machine's available physical memory, what the address-space limit
(``RLIMIT_AS``, as ``ulimit -v`` sets it) leaves beside the process's
present size, and what its cgroup's memory limit (a container's) leaves
beside the group's present use.  A run that cannot fit is refused with one
line giving the estimate, the limit and what to lower, before it has
written or allocated anything large; a ``MemoryError`` that happens anyway
ends the command with one line too (see :mod:`handgrad.cli`).

The estimate counts the arrays the run keeps (it is deliberately a little
generous: the interpreter, NumPy and the BLAS library need room too):

* data: the scaled features of every row in the model's dtype, and the
  validation rows held out of them;
* model and optimizer: ``P`` parameters times ``6 + 3 S`` copies, where
  ``S`` is the number of state arrays the optimizer keeps (Adam 2, SGD with
  momentum 1): the weights and their gradients, the copies that fall back
  on a diverging epoch, that the checkpoint snapshot keeps, that early
  stopping keeps and that a checkpoint write builds, and the optimizer's
  state live, in the fallback and in the snapshot;
* activations: three arrays (output, gradient, dropout mask or
  pre-activation) per layer width for a minibatch, and for the chunks of
  4,096 rows that evaluation pushes through the network.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handgrad.errors import HandgradError
from handgrad.nn.model import PREDICT_BATCH_SIZE

try:
    import resource  # POSIX only
except ImportError:
    resource = None

# The copies of the weights a run holds (module docstring), and of each optimizer state array.
WEIGHT_COPIES = 6
STATE_COPIES = 3
ACTIVATION_ARRAYS = 3


@dataclass
class Estimate:
    """The bytes a run needs, by part."""

    data: int
    model: int
    activations: int
    parameters: int

    @property
    def total(self):
        return self.data + self.model + self.activations


def training_bytes(n_rows, widths, dtype, batch_size, optimizer_states, validation_fraction=0.0, batch_norm=False):
    """An :class:`Estimate` of the memory a training run holds at once.

    Parameters
    ----------
    n_rows : int
        Rows of data, training and test together.
    widths : list of int
        The network's widths, input first, outputs last.
    dtype : numpy dtype
        The model's.
    batch_size : int
    optimizer_states : int
        State arrays the optimizer keeps per parameter (Adam 2).
    validation_fraction : float
        Share of the training rows held out for validation (copied once).
    batch_norm : bool
        Whether each hidden layer has a BatchNorm (four vectors per width).

    Returns
    -------
    Estimate
    """
    size = np.dtype(dtype).itemsize
    parameters = sum((n_in + 1) * n_out for n_in, n_out in zip(widths, widths[1:]))
    if batch_norm:
        parameters += 4 * sum(widths[1:-1])
    data = n_rows * widths[0] * size * (1 + validation_fraction)
    model = parameters * size * (WEIGHT_COPIES + STATE_COPIES * optimizer_states)
    rows = min(batch_size, n_rows) + min(PREDICT_BATCH_SIZE, n_rows)
    activations = ACTIVATION_ARRAYS * rows * sum(widths) * size
    return Estimate(int(data), int(model), int(activations), int(parameters))


def memory_limits():
    """``[(bytes this process may still take, what sets it, how to get more)]``, one entry per limit that applies."""
    limits = []
    available = _meminfo("MemAvailable")
    if available is not None:
        limits.append((available, "available physical memory", "free memory"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS) if resource is not None else (None, None)
    if soft is not None and soft != resource.RLIM_INFINITY:
        limits.append((max(soft - (_own_size() or 0), 0), f"what the address-space limit (RLIMIT_AS, {human(soft)}) "
                                                          "leaves", "raise the limit (ulimit -v)"))
    cgroup = _cgroup_room()
    if cgroup is not None:
        limits.append(cgroup)
    return limits


def check_fits(estimate, lower):
    """Refuse, in one line, a run whose :class:`Estimate` exceeds the tightest memory limit.

    Parameters
    ----------
    estimate : Estimate
    lower : str
        What the user can lower, for the message (``"--hidden or --batch-size"``).

    Raises
    ------
    HandgradError
        The estimate, each part of it, the limit and its source, and ``lower``.
    """
    limits = memory_limits()
    if not limits:
        return
    room, source, more = min(limits)
    if estimate.total <= room:
        return
    raise HandgradError(f"this run needs about {human(estimate.total)} of memory (data {human(estimate.data)}, "
                        f"model and optimizer {human(estimate.model)} for {estimate.parameters:,} weights, "
                        f"activations {human(estimate.activations)}) but only {human(room)} is free ({source}); "
                        f"lower {lower}, or {more}")


def out_of_memory(exc):
    """The one line for a ``MemoryError`` that happened despite the estimate."""
    detail = " ".join(str(exc).split())
    limits = memory_limits()
    room, source, more = min(limits) if limits else (None, None, "free memory")
    free = f"; {human(room)} is free ({source})" if limits else ""
    return (f"out of memory{f' ({detail})' if detail else ''}{free}; nothing was written: {more}, or ask for less "
            "(a smaller --hidden or --batch-size, --dtype float32, fewer rows)")


def human(n):
    """``"1.5 GB"``: a byte count in decimal units."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def _meminfo(key):
    """A ``/proc/meminfo`` entry in bytes (Linux), else the free physical pages where the system tells them."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == key:
                return int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _own_size():
    """This process's virtual size in bytes (what RLIMIT_AS counts), or None where it cannot be read."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room():
    """``(bytes left, source)`` under this process's cgroup memory limit (v2, else v1), or None without one."""
    try:
        entries = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for entry in entries:
        _, controllers, path = entry.split(":", 2)
        path = path.lstrip("/")
        if controllers == "":                                   # cgroup v2
            pairs = ("memory.max", "memory.current")
            roots = [Path("/sys/fs/cgroup") / path, Path("/sys/fs/cgroup")]
        elif "memory" in controllers.split(","):                # cgroup v1
            pairs = ("memory.limit_in_bytes", "memory.usage_in_bytes")
            roots = [Path("/sys/fs/cgroup/memory") / path, Path("/sys/fs/cgroup/memory")]
        else:
            continue
        for root in roots:
            try:
                limit, used = ((root / name).read_text().strip() for name in pairs)
                limit, used = int(limit), int(used)
            except (OSError, ValueError):
                continue
            if limit >= 1 << 60:        # v1 writes "no limit" as a huge number, v2 as "max" (not an int)
                return None
            return (max(limit - used, 0), f"what the cgroup memory limit ({human(limit)}) leaves",
                    "raise the container's memory limit")
    return None
