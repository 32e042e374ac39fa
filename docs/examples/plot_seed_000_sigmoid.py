"""
Seed 000: a sigmoid hidden layer, with L2 on the weights
========================================================

Seed document 000 trains one sigmoid hidden layer and a softmax output with
``L = −log S_y + ½λΣW²``.  Its hidden-layer gradient multiplies in the wrong
factor (``σ_i`` where the output weight belongs) and follows only one score,
while each hidden unit feeds every score.  Here the seed's formula and the
right one are computed side by side for one sample, and the network trains.
"""

# %%
# The network and its objective
# -----------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

import handgrad as hg

lam = 1e-3
model = hg.Sequential(hg.Dense(64, 10), hg.Sigmoid(), hg.Dense(10, 10), seed=0)
loss = hg.SoftmaxCrossEntropy(reduction="sum")      # one sample at a time, as the seed writes L
print(hg.derive(model, loss, l2=lam))

# %%
# The seed's hidden-layer gradient, and the right one
# ---------------------------------------------------
# For one sample ``x`` with label ``y``: ``σ = σ(W₁ᵀx + b₁)``, ``S = softmax(W₂ᵀσ + b₂)``.
# The seed writes ``∂L/∂W_i = (S_i − [i = y]) σ_i² (1 − σ_i) x + λW_i`` for hidden unit
# ``i``; the chain rule gives ``(Σ_k (S_k − [k = y]) W₂[i, k]) σ_i (1 − σ_i) x + λW_i``.
X, y = load_digits(return_X_y=True)
X = X / 16.0
net = model.astype(np.float64)
x, label = X[:1], y[:1]
_, (dW1, db1, dW2, db2) = hg.loss_and_gradients(net, loss, x, label, l2=lam)
W1, b1, W2, b2 = net.parameters()
sigma = 1 / (1 + np.exp(-(x @ W1 + b1)))[0]
S = hg.softmax(net(x))[0]
delta = S - np.eye(10)[label[0]]
seed = np.outer(x[0], delta * sigma ** 2 * (1 - sigma)) + lam * W1
right = np.outer(x[0], (W2 @ delta) * sigma * (1 - sigma)) + lam * W1
print("largest entry of |seed − handgrad| / |handgrad|:", np.abs(seed - dW1).max() / np.abs(dW1).max())
print("largest entry of |right − handgrad| / |handgrad|:", np.abs(right - dW1).max() / np.abs(dW1).max())

# %%
# Training with the L2 term
# -------------------------
model = hg.Sequential(hg.Dense(64, 32), hg.Sigmoid(), hg.Dense(32, 10), seed=0)
history = hg.fit(model, hg.SoftmaxCrossEntropy(), X[:1400], y[:1400], optimizer=hg.Adam(1e-2), epochs=25,
                 batch_size=32, l2=lam, validation_fraction=0.1, seed=0)
print(f"held-out accuracy {np.mean(model.predict(X[1400:]) == y[1400:]):.3f}")

fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
ax.plot(history["epoch"], history["train_loss"], label="training: loss + L2 term")
ax.plot(history["epoch"], history["val_loss"], label="validation: loss")
ax.set(xlabel="epoch", ylabel="objective", title="Seed 000's network on digits")
ax.legend()
plt.show()
