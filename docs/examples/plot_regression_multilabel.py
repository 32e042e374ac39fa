"""
Regression and multilabel classification
========================================

A network's task is set by its loss: the squared error trains a regressor
(the logits are the predictions; R² and RMSE are reported), the sigmoid
binary cross-entropy a multilabel classifier (each output is a label that
may be present with the others; label and subset accuracy are reported).
"""

# %%
# A regressor on scikit-learn's diabetes data
# -------------------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_diabetes, make_multilabel_classification

import handgrad as hg

X, y = load_diabetes(return_X_y=True)
X = (X - X.mean(axis=0)) / X.std(axis=0)
y_scaled = (y - y.mean()) / y.std()                       # targets near 0 and 1 suit the learning rate
model = hg.Sequential(hg.Dense(10, 32), hg.Tanh(), hg.Dense(32, 1), seed=0)
loss = hg.SquaredError()
history = hg.fit(model, loss, X[:350], y_scaled[:350], optimizer=hg.Adam(3e-3), epochs=80, batch_size=32,
                 l2=1e-3, validation_fraction=0.15, seed=0)
predicted = model.predict(X[350:], loss=loss)[:, 0] * y.std() + y.mean()
print(f"validation R² {history['val_r2'][-1]:.3f}; held-out RMSE {np.sqrt(np.mean((predicted - y[350:]) ** 2)):.1f}")

fig, ax = plt.subplots(figsize=(5, 4.5), layout="constrained")
ax.scatter(y[350:], predicted, s=12)
ax.plot([25, 350], [25, 350], "--", color="0.5", label="predicted = true")
ax.set(xlabel="true disease progression", ylabel="predicted", title="Diabetes: the 92 held-out rows")
ax.legend()
plt.show()

# %%
# A multilabel classifier
# -----------------------
X, Y = make_multilabel_classification(n_samples=600, n_features=20, n_classes=5, random_state=0)
model = hg.Sequential(hg.Dense(20, 64), hg.ReLU(), hg.Dense(64, 5), seed=0)
loss = hg.SigmoidBinaryCrossEntropy()
history = hg.fit(model, loss, X[:500], Y[:500], optimizer=hg.Adam(3e-3), epochs=40, batch_size=32,
                 validation_fraction=0.15, seed=0)
labels = model.predict(X[500:], loss=loss)
print(f"held-out label accuracy {np.mean(labels == Y[500:]):.3f}, "
      f"subset accuracy {np.mean((labels == Y[500:]).all(axis=1)):.3f}")
fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
ax.plot(history["epoch"], history["val_label_accuracy"], label="label accuracy")
ax.plot(history["epoch"], history["val_subset_accuracy"], label="subset accuracy")
ax.set(xlabel="epoch", ylabel="validation", title="Five labels per sample")
ax.legend()
plt.show()
