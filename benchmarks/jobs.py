"""The benchmark's four jobs: data, architecture and training recipe of each.

Every runner (handgrad, scikit-learn, PyTorch, the matmul floor) reads the
same ``Job``, so all of them train the same network on the same split with
the same hyperparameters.
"""

import math
from dataclasses import dataclass

import numpy as np

from idx import load_mnist


@dataclass(frozen=True)
class Job:
    name: str
    title: str
    hidden: tuple
    epochs: int
    batch_size: int
    lr: float
    l2: float
    schedule: str = "constant"          # "constant" or "cosine" (per batch, to zero)
    optimizer: str = "adam"             # "adam" or "sgd" (with momentum, nesterov below)
    momentum: float = 0.0
    nesterov: bool = False
    target_accuracy: float = None       # job 2: time to reach this test accuracy
    repeats: int = 3

    def lr_at(self, t):
        """Learning rate at ``t`` epochs (fractional inside an epoch)."""
        if self.schedule == "cosine":
            return 0.5 * self.lr * (1 + math.cos(math.pi * min(1.0, t / self.epochs)))
        return self.lr


# Job 2's recipe was the MNIST preset's until the preset gained random shifts
# (which the peers would need as well) and a smaller network: a race of the
# plain training loop on all 60,000 images.  bench.py runs the preset itself
# as a whole command beside it, and preset_accuracy.py measures its accuracy.
MNIST_RECIPE = dict(hidden=(512, 256), epochs=12, batch_size=128, lr=0.15, l2=5e-5, schedule="cosine",
                    optimizer="sgd", momentum=0.9)

JOBS = {
    "1": Job("mnist5k", "MNIST 4,000/1,000, 784-256-128-10, Adam 1e-3, batch 128, L2 1e-4, 10 epochs",
             hidden=(256, 128), epochs=10, batch_size=128, lr=1e-3, l2=1e-4, repeats=5),
    "2": Job("mnist", "full MNIST 60,000/10,000, 784-512-256-10, SGD momentum 0.9, lr 0.15 cosine, batch 128, "
             "L2 5e-5, 12 epochs: time to 98.5% test accuracy",
             target_accuracy=0.985, repeats=1, **MNIST_RECIPE),
    # Not run by default: the same race with Adam, handgrad's default optimizer.
    "2b": Job("mnist-adam", "full MNIST 60,000/10,000, Adam 1e-3, batch 64, L2 1e-5, cosine, 10 epochs: "
              "time to 98.5% test accuracy", hidden=(512, 256), epochs=10, batch_size=64, lr=1e-3, l2=1e-5,
              schedule="cosine", target_accuracy=0.985, repeats=1),
    "3": Job("inference", "predict_proba on the 10,000 MNIST test images, 784-512-256-10",
             hidden=(512, 256), epochs=1, batch_size=128, lr=1e-3, l2=0.0, repeats=50),
    "4": Job("digits", "scikit-learn digits 1,347/450, 64-100-10, Adam 1e-3, batch 32, L2 1e-4, 30 epochs",
             hidden=(100,), epochs=30, batch_size=32, lr=1e-3, l2=1e-4, repeats=5),
}


def quick(job):
    """A shorter version of ``job`` for a smoke run of the benchmark."""
    epochs = {"mnist5k": 3, "mnist": 2, "mnist-adam": 2, "inference": 1, "digits": 5}[job.name]
    return Job(**{**job.__dict__, "epochs": epochs, "repeats": 1})


def load(job, dtype=np.float32):
    """``(X_train, y_train, X_test, y_test)`` for ``job`` in ``dtype``, labels int64."""
    if job.name == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        X, y = load_digits(return_X_y=True)
        X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, test_size=0.25, random_state=0)
        return X_train.astype(dtype), y_train, X_test.astype(dtype), y_test
    X_train, y_train, X_test, y_test = load_mnist(dtype=dtype)
    if job.name == "mnist5k":
        return X_train[:4000].copy(), y_train[:4000], X_train[4000:5000].copy(), y_train[4000:5000]
    return X_train, y_train, X_test, y_test


def batch_sizes(job, n_train):
    """The minibatch sizes of one epoch (the last one may be short)."""
    full, rest = divmod(n_train, job.batch_size)
    return [job.batch_size] * full + ([rest] if rest else [])
