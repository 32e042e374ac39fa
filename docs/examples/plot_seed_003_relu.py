"""
Seed 003: a two-layer ReLU network, derived, checked and trained
================================================================

Seed document 003 derives the gradients of ``S = W₂ max(0, W₁X + b₁) + b₂``
with the mean softmax loss.  handgrad builds that network, prints its
derivation with the shapes of a concrete batch, measures every gradient
against central differences, and trains it on scikit-learn's digits.
"""

# %%
# The network and its derivation
# ------------------------------
# ``hg.derive`` reads the declaration each piece carries (its forward and
# backward equations) and fills in this network's widths.
import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import handgrad as hg

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)

model = hg.Sequential(hg.Dense(64, 32), hg.ReLU(), hg.Dense(32, 10), seed=0)
loss = hg.SoftmaxCrossEntropy()          # the mean softmax loss, seed 003's (1/n) Σ L_i
print(hg.derive(model, loss))

# %%
# Every gradient against central differences
# ------------------------------------------
# In float64, on eight rows: the worst relative error per parameter array.
print(hg.gradcheck(model, loss, X_train[:8], y_train[:8]))

# %%
# Training
# --------
history = hg.fit(model, loss, X_train, y_train, optimizer=hg.Adam(1e-2), epochs=15, batch_size=64,
                 validation_fraction=0.1, seed=0)
accuracy = (model.predict(X_test) == y_test).mean()
print(f"test accuracy {accuracy:.3f} after {len(history)} epochs")

fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
ax.plot(history["epoch"], history["train_loss"], label="training loss")
ax.plot(history["epoch"], history["val_loss"], label="validation loss")
ax.set(xlabel="epoch", ylabel="cross-entropy", title="Seed 003's network on digits")
ax.legend()
plt.show()
