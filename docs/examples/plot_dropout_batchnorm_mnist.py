"""
Dropout and batch norm on MNIST
===============================

Dropout zeroes a random share of the hidden units at each step (and scales
the others up, so inference needs no change); batch norm standardises each
hidden unit over the minibatch before its activation.  Both are hand-derived
layers like the others.  Here four networks train on the first 6,000 MNIST
images for a few epochs: plain, with dropout, with batch norm, and with both.
"""

# %%
# The data: MNIST's original files
# --------------------------------
# ``load_dataset`` reads the IDX files from ``$HANDGRAD_DATA`` or the cache
# (downloading them once, checked against their sha256).
import matplotlib.pyplot as plt
import numpy as np

import handgrad as hg
from handgrad.data.loaders import load_dataset

mnist = load_dataset("mnist")
X_train = mnist.X_train[:6000].astype(np.float32) / 255
y_train = mnist.y_train[:6000]
X_test = mnist.X_test.astype(np.float32) / 255
print(f"{len(X_train)} training and {len(X_test)} test images of {mnist.image_shape}")


# %%
# Four networks
# -------------
def network(dropout, batch_norm):
    layers = []
    for n_in, n_out in ((784, 256), (256, 128)):
        layers.append(hg.Dense(n_in, n_out))
        if batch_norm:
            layers.append(hg.BatchNorm(n_out))     # before the activation, as in the paper
        layers.append(hg.ReLU())
        if dropout:
            layers.append(hg.Dropout(dropout))
    return hg.Sequential(*layers, hg.Dense(128, 10), seed=0)


fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
for dropout, batch_norm in ((0.0, False), (0.2, False), (0.0, True), (0.2, True)):
    model = network(dropout, batch_norm)
    history = hg.fit(model, hg.SoftmaxCrossEntropy(), X_train, y_train, optimizer=hg.Adam(2e-3), epochs=6,
                     batch_size=128, validation_fraction=0.1, seed=0)
    name = f"dropout {dropout:g}, " + ("batch norm" if batch_norm else "no batch norm")
    print(f"{name}: test accuracy {np.mean(model.predict(X_test) == mnist.y_test):.4f}")
    ax.plot(history["epoch"], history["val_loss"], marker="o", label=name)
ax.set(xlabel="epoch", ylabel="validation loss", title="784-256-128-10 on 6,000 MNIST images")
ax.legend()
plt.show()

# %%
# Inference mode
# --------------
# ``fit`` leaves the model in inference mode: dropout keeps every unit and
# batch norm uses the running statistics it gathered, so predictions do not
# depend on the batch they come in.
print(model.training, np.array_equal(model.predict(X_test[:5]), model.predict(X_test[:500])[:5]))
