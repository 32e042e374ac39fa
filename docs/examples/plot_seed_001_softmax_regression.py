"""
Seed 001: softmax regression, and the 1/N the seed drops
========================================================

Seed document 001 derives the gradient of softmax regression,
``f(x) = W x + b`` with ``L = −(1/N) Σ_j Σ_i Y'_ji log Y_ji``, and writes
``∂L/∂W = (y − y') x``: one image's term, without the mean over the ``N``
images.  This example builds the network, checks handgrad's gradient, shows
the seed's formula off by exactly ``N``, and trains the model on digits.
"""

# %%
# The network: one Dense layer and the mean cross-entropy
# -------------------------------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

import handgrad as hg

X, y = load_digits(return_X_y=True)
X = X / 16.0
model = hg.Sequential(hg.Dense(64, 10), seed=0)
loss = hg.SoftmaxCrossEntropy()                   # reduction="mean": the seed's 1/N
print(hg.derive(model, loss))

# %%
# The seed's formula against the right gradient
# ---------------------------------------------
# The seed writes ``W`` as (classes × inputs); handgrad's ``Dense.W`` is its
# transpose.  Summed over ``N`` images, ``(y − y') xᵀ`` is ``N`` times the
# gradient of the mean loss.
N = 8
X_batch, y_batch = X[:N], y[:N]
model64 = model.astype(np.float64)
_, (dW, db) = hg.loss_and_gradients(model64, loss, X_batch, y_batch)
P = hg.softmax(model64(X_batch))
Y_true = np.eye(10)[y_batch]
seed_dW = sum(np.outer(p - t, x) for p, t, x in zip(P, Y_true, X_batch))   # Σ_j (y_j − y'_j) x_jᵀ
print("seed's ∂L/∂W ÷ handgrad's ∂L/∂Wᵀ:", np.round(seed_dW.ravel()[:4] / dW.T.ravel()[:4], 6))
print("relative error of the seed's formula with 1/N restored:",
      np.abs(seed_dW / N - dW.T).max() / np.abs(dW).max())

# %%
# Every parameter against central differences
# -------------------------------------------
print(hg.gradcheck(model, loss, X[:8], y[:8]))

# %%
# Training
# --------
history = hg.fit(model, loss, X[:1400], y[:1400], optimizer=hg.Adam(0.05), epochs=30, batch_size=64,
                 validation_fraction=0.1, seed=0)
print(f"held-out accuracy {np.mean(model.predict(X[1400:]) == y[1400:]):.3f}")

fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
ax.plot(history["epoch"], history["train_accuracy"], label="training")
ax.plot(history["epoch"], history["val_accuracy"], label="validation")
ax.set(xlabel="epoch", ylabel="accuracy", title="Softmax regression on digits")
ax.legend()
plt.show()
