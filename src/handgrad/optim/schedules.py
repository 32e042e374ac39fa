"""Learning-rate schedules: callables ``t -> lr``, ``t`` in epochs (fractional mid-epoch).

The training loop calls the schedule before every minibatch with
``t = epoch + batch / batches_per_epoch``, so a schedule changes the rate
smoothly inside an epoch as well as between epochs.
"""

import math

from handgrad.errors import HandgradError


def constant(lr):
    """``lr`` throughout."""
    return lambda t: lr


def cosine(lr, epochs, warmup=0.0, final_lr=0.0):
    """Linear warm-up over ``warmup`` epochs, then half a cosine from ``lr`` to ``final_lr``.

    ``lr(t) = final + (lr − final) · ½ (1 + cos(π (t − warmup) / (epochs − warmup)))``.
    """
    if epochs <= warmup:
        raise HandgradError(f"cosine schedule needs epochs > warmup, got epochs={epochs}, warmup={warmup}")

    def schedule(t):
        if t < warmup:
            return lr * t / warmup
        progress = min(1.0, (t - warmup) / (epochs - warmup))
        return final_lr + (lr - final_lr) * 0.5 * (1 + math.cos(math.pi * progress))

    return schedule


def step_decay(lr, every, factor=0.1):
    """``lr · factor^⌊t / every⌋``."""
    return lambda t: lr * factor ** math.floor(t / every)
