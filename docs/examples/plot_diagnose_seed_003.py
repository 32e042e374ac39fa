"""
A wrong derivation, diagnosed: seed 003's output layer
======================================================

Seed document 003 factors its output-layer gradient into a matrix of softmax
probabilities times the hidden activations, and the row of the true class
loses its ``−1`` on the way.  A learner who codes that line gets numbers that
look plausible.  :func:`handgrad.diagnose` runs the learner's function on
random batches, compares it with handgrad's gradient, and names the mistake.
"""

# %%
# The learner's gradients, in handgrad's layout
# ---------------------------------------------
# Rows are samples: ``Z₁ = X W₁ + b₁``, ``A₁ = max(0, Z₁)``, ``Z₂ = A₁ W₂ + b₂``.
# The mean cross-entropy's output gradient is ``G₂ = (P − Y)/n``; the learner
# wrote ``P/n`` for ``W₂``, as the seed's final line does.
import numpy as np
from sklearn.datasets import load_digits

import handgrad as hg


def gradients(params, X, y):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    n = len(X)
    Z1 = X @ W1 + b1
    A1 = np.maximum(Z1, 0)
    Z2 = A1 @ W2 + b2
    P = np.exp(Z2 - Z2.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    Y = np.eye(W2.shape[1])[y]
    G2 = (P - Y) / n
    G1 = (G2 @ W2.T) * (Z1 > 0)
    return {"W1": X.T @ G1, "b1": G1.sum(axis=0),
            "W2": A1.T @ P / n,                      # the seed's factored line: the −Y of the true class is gone
            "b2": G2.sum(axis=0)}


X, y = load_digits(return_X_y=True)
X = X / 16.0
model = hg.Sequential(hg.Dense(64, 16), hg.ReLU(), hg.Dense(16, 10), seed=0)
report = hg.diagnose(model, hg.SoftmaxCrossEntropy(), X[:200], y[:200], gradients)
print(report)

# %%
# What the report says, as data
# -----------------------------
finding = report["W2"]
print(finding.correct, finding.mistake)


# %%
# The fix
# -------
def fixed(params, X, y):
    grads = gradients(params, X, y)
    A1 = np.maximum(X @ params["W1"] + params["b1"], 0)
    Z2 = A1 @ params["W2"] + params["b2"]
    P = np.exp(Z2 - Z2.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    grads["W2"] = A1.T @ (P - np.eye(10)[y]) / len(X)       # (p − e_y) per sample, as the seed's row form
    return grads


print(hg.diagnose(model, hg.SoftmaxCrossEntropy(), X[:200], y[:200], fixed))
