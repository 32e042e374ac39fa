"""Learning-rate schedules: callables ``t -> lr``, ``t`` in epochs (fractional mid-epoch).

The training loop calls the schedule before every minibatch with
``t = epoch + batch / batches_per_epoch``, so a schedule changes the rate
smoothly inside an epoch as well as between epochs.

Each schedule is a small registered class (:class:`handgrad.registry.Registered`),
saved like every other piece: ``config()`` is its constructor's arguments,
``hg.registry.SCHEDULES.build(config)`` rebuilds it (a user's subclass as
itself), and ``constraints`` declares the valid settings.  ``fit`` accepts
any callable, a plain function included.

Examples
--------
>>> schedule = hg.schedules.Cosine(0.1, epochs=10, warmup=1)
>>> schedule(0.5), schedule(1.0), schedule(10)         # half-way up the warm-up, the peak, the end
(0.05, 0.1, 0.0)
>>> schedule.config()
{'type': 'Cosine', 'lr': 0.1, 'epochs': 10, 'warmup': 1, 'final_lr': 0.0}
>>> X, y = np.ones((8, 2)), np.arange(8) % 2
>>> history = hg.fit(hg.mlp(2, [], 2, seed=0), hg.SoftmaxCrossEntropy(), X, y, epochs=3, seed=0,
...                  lr_schedule=hg.schedules.StepDecay(0.1, every=2))
>>> [round(lr, 6) for lr in history["lr"]]
[0.1, 0.1, 0.01]
"""

import math

from handgrad.constraints import Real
from handgrad.errors import HandgradError
from handgrad.registry import SCHEDULES, Registered

_RATE = Real(0, closed="neither", remedy="a learning rate is a positive number")


class Schedule(Registered, registry=SCHEDULES):
    """Base class: ``schedule(t)`` is the learning rate at time ``t`` (epochs).

    A subclass keeps each constructor argument as an attribute of the same
    name and defines ``__call__``.
    """

    name = None

    def __call__(self, t):
        raise NotImplementedError


class Constant(Schedule):
    """``lr`` throughout.

    Parameters
    ----------
    lr : float
        The rate, a positive number.

    Examples
    --------
    >>> Constant(0.03)(7.5)
    0.03
    """

    constraints = {"lr": _RATE}

    def __init__(self, lr):
        self.lr = lr

    def __call__(self, t):
        return self.lr


class Cosine(Schedule):
    """Linear warm-up over ``warmup`` epochs, then half a cosine from ``lr`` to ``final_lr``.

    ``lr(t) = lr · t / warmup`` for ``t < warmup``, then
    ``lr(t) = final + (lr − final) · ½ (1 + cos(π p))`` with
    ``p = min(1, (t − warmup) / (epochs − warmup))``: it stays at ``final_lr``
    after the last epoch.

    Parameters
    ----------
    lr : float
        The peak rate, a positive number.
    epochs : float
        When the cosine reaches ``final_lr``; more than ``warmup``.
    warmup : float, default 0
        Epochs of linear warm-up from 0.
    final_lr : float, default 0
        The rate at the end.

    Raises
    ------
    HandgradError
        A setting out of its range, or ``epochs ≤ warmup``.

    Examples
    --------
    >>> Cosine(0.1, 10)(5)
    0.05
    """

    constraints = {
        "lr": _RATE,
        "epochs": Real(0, closed="neither", remedy="the cosine ends after that many epochs"),
        "warmup": Real(0, remedy="the warm-up lasts that many epochs (0: none)"),
        "final_lr": Real(0, remedy="the rate the cosine ends at (0 is usual)"),
    }

    def __init__(self, lr, epochs, warmup=0.0, final_lr=0.0):
        if epochs <= warmup:
            raise HandgradError(f"cosine schedule needs epochs > warmup, got epochs={epochs}, warmup={warmup}")
        self.lr, self.epochs, self.warmup, self.final_lr = lr, epochs, warmup, final_lr

    def __call__(self, t):
        lr, warmup, final_lr = self.lr, self.warmup, self.final_lr
        if t < warmup:
            return lr * t / warmup
        progress = min(1.0, (t - warmup) / (self.epochs - warmup))
        return final_lr + (lr - final_lr) * 0.5 * (1 + math.cos(math.pi * progress))


class StepDecay(Schedule):
    """``lr · factor^⌊t / every⌋``: the rate multiplied by ``factor`` every ``every`` epochs.

    Parameters
    ----------
    lr : float
        The first rate, a positive number.
    every : float
        Epochs between two steps, a positive number.
    factor : float, default 0.1
        What each step multiplies the rate by, in (0, 1].

    Examples
    --------
    >>> [StepDecay(0.1, every=3, factor=0.5)(t) for t in (0, 3, 6)]
    [0.1, 0.05, 0.025]
    """

    constraints = {
        "lr": _RATE,
        "every": Real(0, closed="neither", remedy="the rate steps down every that many epochs"),
        "factor": Real(0, 1, closed="right", remedy="each step multiplies the rate by it; 0.1 is usual"),
    }

    def __init__(self, lr, every, factor=0.1):
        self.lr, self.every, self.factor = lr, every, factor

    def __call__(self, t):
        return self.lr * self.factor ** math.floor(t / self.every)
