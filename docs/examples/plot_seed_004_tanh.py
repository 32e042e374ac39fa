"""
Seed 004: a tanh hidden layer with the biases folded into the weights
=====================================================================

Seed document 004 writes its network with a constant input ``x₀ = 1`` and a
hidden unit fixed at 1, so each weight matrix carries its biases in column 0.
This example folds handgrad's ``W`` and ``b`` into the seed's matrices, checks
that both give the same outputs and the same gradients, and trains the network.
"""

# %%
# Folding the biases
# ------------------
# ``w1 = [b1 | W1ᵀ]`` and ``w2 = [b2 | W2ᵀ]``: row ``j`` of ``w1`` holds the bias
# and the incoming weights of hidden unit ``j``.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

import handgrad as hg

X, y = load_digits(return_X_y=True)
X = X / 16.0
model = hg.Sequential(hg.Dense(64, 20, dtype=np.float64), hg.Tanh(), hg.Dense(20, 10, dtype=np.float64), seed=0)
W1, b1, W2, b2 = model.parameters()
w1, w2 = np.column_stack([b1, W1.T]), np.column_stack([b2, W2.T])


def seed_logits(x):
    hidden = np.concatenate([[1.0], np.tanh(w1 @ np.concatenate([[1.0], x]))])   # unit 0 fixed at 1
    return w2 @ hidden


print("largest difference in the logits:", np.abs(np.array([seed_logits(x) for x in X[:5]]) - model(X[:5])).max())

# %%
# The seed's gradients, summed over samples, against handgrad's
# -------------------------------------------------------------
# ``∂E/∂w2[k, j] = (y_k − t_k) h_j`` and ``∂E/∂w1[j, i] = Σ_k (y_k − t_k) w2[k, j] (1 − h_j²) x_i``.
loss = hg.SoftmaxCrossEntropy(reduction="sum")               # seed 004's E, summed over the batch
_, (dW1, db1, dW2, db2) = hg.loss_and_gradients(model, loss, X[:4], y[:4])
g1, g2 = np.zeros_like(w1), np.zeros_like(w2)
for x, label in zip(X[:4], y[:4]):
    x1 = np.concatenate([[1.0], x])
    h = np.tanh(w1 @ x1)
    delta = hg.softmax(seed_logits(x)[None, :])[0] - np.eye(10)[label]
    g2 += np.outer(delta, np.concatenate([[1.0], h]))
    g1 += np.outer((w2[:, 1:].T @ delta) * (1 - h ** 2), x1)
print("w2:", np.abs(g2 - np.column_stack([db2, dW2.T])).max(), " w1:", np.abs(g1 - np.column_stack([db1, dW1.T])).max())

# %%
# Training
# --------
history = hg.fit(model, hg.SoftmaxCrossEntropy(), X[:1400], y[:1400], optimizer=hg.Adam(5e-3), epochs=20,
                 batch_size=32, validation_fraction=0.1, seed=0)
print(f"held-out accuracy {np.mean(model.predict(X[1400:]) == y[1400:]):.3f}")
fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
ax.plot(history["epoch"], history["train_loss"], label="training")
ax.plot(history["epoch"], history["val_loss"], label="validation")
ax.set(xlabel="epoch", ylabel="cross-entropy", title="Seed 004's network on digits")
ax.legend()
plt.show()
