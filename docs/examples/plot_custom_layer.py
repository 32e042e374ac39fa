"""
A layer of your own: a low-rank map, written, checked and trained
=================================================================

A layer is a class with a forward pass and, beside it, the backward pass it
implies.  This one computes ``Z = X U V + b`` with ``U`` (n_in × r) and ``V``
(r × n_out): a Dense layer whose weight matrix ``U V`` has rank ``r``.  It
says what width it takes and gives, and how it initialises itself, so a
:class:`handgrad.Sequential` can put a batch norm after it, check it, train it
and save it, with no change to handgrad.
"""

# %%
# The layer
# ---------
# Backward, for ``G = ∂L/∂Z``: ``∂L/∂V = (XU)ᵀ G``, ``∂L/∂U = Xᵀ (G Vᵀ)``,
# ``∂L/∂b = Σ_rows G`` and ``∂L/∂X = (G Vᵀ) Uᵀ``.
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

import handgrad as hg


class LowRank(hg.Layer):
    """``Z = X U V + b``: a rank-``rank`` map from ``n_in`` to ``n_out`` features."""

    parameter_names = ("U", "V", "b")
    decayed_names = ("U", "V")            # L2 on the factors, not on the bias
    backward_reads_output = False          # backward reads X and XU, never Z: an activation may overwrite Z

    def __init__(self, n_in, n_out, rank, dtype=np.float32):
        self.n_in, self.n_out, self.rank, self.dtype = n_in, n_out, rank, dtype
        self.U = np.zeros((n_in, rank), dtype)
        self.V = np.zeros((rank, n_out), dtype)
        self.b = np.zeros(n_out, dtype)
        self.dU, self.dV, self.db = (np.zeros_like(p) for p in (self.U, self.V, self.b))

    def input_width(self):
        return self.n_in

    def output_width(self, width):
        return self.n_out

    def initialize(self, rng, scheme):
        # Var(x U V) = Var(x) when each factor keeps its input's variance; "he" doubles it for a ReLU after.
        gain = 2.0 if scheme == "he" else 1.0
        self.U[...] = rng.standard_normal(self.U.shape) / np.sqrt(self.n_in)
        self.V[...] = rng.standard_normal(self.V.shape) * np.sqrt(gain / self.rank)

    @classmethod
    def parameter_shapes(cls, config):
        n_in, n_out, rank = config["n_in"], config["n_out"], config["rank"]
        return {"U": (n_in, rank), "V": (rank, n_out), "b": (n_out,)}

    def forward(self, X, out=None):
        self._X, self._XU = X, X @ self.U
        out = np.matmul(self._XU, self.V, out=out)
        out += self.b
        return out

    def backward(self, G, out=None):
        GV = G @ self.V.T
        self.dV[...] = self._XU.T @ G
        self.dU[...] = self._X.T @ GV
        self.db[...] = G.sum(axis=0)
        return np.matmul(GV, self.U.T, out=out)


# %%
# In a network, before a batch norm
# ---------------------------------
X, y = load_digits(return_X_y=True)
X = X / 16.0
model = hg.Sequential(hg.Dense(64, 48), hg.ReLU(), LowRank(48, 32, rank=4), hg.BatchNorm(32), hg.ReLU(),
                      hg.Dense(32, 10), seed=0)
print("widths into each layer:", model.widths)
print(hg.gradcheck(model, hg.SoftmaxCrossEntropy(), X[:8], y[:8]))

# %%
# Trained, saved and loaded
# -------------------------
history = hg.fit(model, hg.SoftmaxCrossEntropy(), X[:1400], y[:1400], optimizer=hg.Adam(5e-3), epochs=20,
                 batch_size=32, validation_fraction=0.1, seed=0)
path = Path(tempfile.mkdtemp()) / "low_rank.npz"
hg.save(model, path, loss=hg.SoftmaxCrossEntropy())      # the class is registered: the file names it
again = hg.load(path)
print("same predictions after loading:", np.array_equal(again.predict(X[1400:]), model.predict(X[1400:])))
print(f"held-out accuracy {np.mean(model.predict(X[1400:]) == y[1400:]):.3f}")

fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
ax.plot(history["epoch"], history["val_accuracy"], label="validation")
ax.plot(history["epoch"], history["train_accuracy"], label="training")
ax.set(xlabel="epoch", ylabel="accuracy", title="64-48-[rank 4]-32-10 on digits")
ax.legend()
plt.show()
