"""
Seed 002: any depth, and a binary cross-entropy per class of the softmax
========================================================================

Seed document 002 derives backpropagation through ``L`` layers with a generic
activation, under a cost that sums, over the classes ``t``, the binary
cross-entropy of the softmax output ``soft(z, t)``.  Its formulas hold (the
tests check them); this example checks the library's gradient for three
activations and compares the loss with the usual cross-entropy in training.
"""

# %%
# Three depths and activations, each checked
# ------------------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

import handgrad as hg

X, y = load_digits(return_X_y=True)
X = X / 16.0
loss = hg.SoftmaxBinaryCrossEntropy(reduction="sum")        # the seed's C sums over samples
for activation, hidden in ((hg.Tanh, [16]), (hg.Sigmoid, [16, 16]), (hg.ReLU, [32, 16, 16])):
    model = hg.mlp(64, hidden, 10, activation=activation.name, seed=0)
    report = hg.gradcheck(model, loss, X[:6], y[:6])
    print(f"{activation.__name__:8s} {hidden}: worst relative error {report.max_error:.1e}")

# %%
# The gradient on the logits, as the seed writes it
# -------------------------------------------------
# ``∂C/∂z_j = K p_j − y_j − Σ_{t≠j} (1 − y_t) soft(z_{≠t}, j)``: the code computes it
# in O(K) per row; here it is spelled out for one row and compared.
z = np.array([[2.0, -1.0, 0.5, 0.0]])
label = np.array([0])
loss.forward(z, label)
library = loss.backward()[0]
p = hg.softmax(z)[0]
Y = np.eye(4)[0]
seed = np.array([4 * p[j] - Y[j] - sum((1 - Y[t]) * p[j] / (1 - p[t]) for t in range(4) if t != j)
                 for j in range(4)])
print("library:", np.round(library, 6), "\nseed:   ", np.round(seed, 6))

# %%
# Training with each loss
# -----------------------
fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
for loss in (hg.SoftmaxBinaryCrossEntropy(), hg.SoftmaxCrossEntropy()):
    model = hg.mlp(64, [64], 10, activation="tanh", seed=0)
    history = hg.fit(model, loss, X[:1400], y[:1400], optimizer=hg.Adam(5e-3), epochs=20, batch_size=32,
                     validation_fraction=0.1, seed=0)
    print(f"{type(loss).__name__}: held-out accuracy {np.mean(model.predict(X[1400:]) == y[1400:]):.3f}")
    ax.plot(history["epoch"], history["val_accuracy"], label=type(loss).__name__)
ax.set(xlabel="epoch", ylabel="validation accuracy", title="Two softmax losses on digits")
ax.legend()
plt.show()
