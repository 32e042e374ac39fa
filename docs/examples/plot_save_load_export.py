"""
Saving, loading and exporting a model
=====================================

handgrad writes a model as NumPy arrays and JSON metadata in one ``.npz``
file, never a pickle: loading a file runs no code from it.  The same model
exports to ONNX, one graph from raw features to predictions that ONNX
Runtime runs without handgrad (``pip install "handgrad[onnx]"``).
"""

# %%
# Train, save, load
# -----------------
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import onnxruntime
from sklearn.datasets import load_digits

import handgrad as hg

X, y = load_digits(return_X_y=True)
X = (X / 16.0).astype(np.float32)
model = hg.Sequential(hg.Dense(64, 64), hg.GELU(), hg.Dropout(0.1), hg.Dense(64, 10), seed=0)
hg.fit(model, hg.SoftmaxCrossEntropy(), X[:1400], y[:1400], optimizer=hg.Adam(3e-3), epochs=15, seed=0)

folder = Path(tempfile.mkdtemp())
hg.save(model, folder / "digits.npz", loss=hg.SoftmaxCrossEntropy())
loaded = hg.load(folder / "digits.npz")
print(loaded)
print("same predictions:", np.array_equal(loaded.predict(X[1400:]), model.predict(X[1400:])))

# %%
# Export to ONNX and run it in ONNX Runtime
# -----------------------------------------
onnx_model = hg.to_onnx(loaded, X[:1], loss=hg.SoftmaxCrossEntropy())
(folder / "digits.onnx").write_bytes(onnx_model.SerializeToString())
session = onnxruntime.InferenceSession(str(folder / "digits.onnx"))
print([(o.name, o.type, o.shape) for o in session.get_outputs()])
labels, probabilities = session.run(None, {"X": X[1400:]})
print("labels equal:", np.array_equal(labels, loaded.predict(X[1400:])),
      "; largest probability difference:", np.abs(probabilities - loaded.predict_proba(X[1400:])).max())

# %%
# What the exported model sees
# ----------------------------
fig, axes = plt.subplots(1, 6, figsize=(9, 1.9), layout="constrained")
for ax, image, label in zip(axes, X[1400:1406], labels[:6]):
    ax.imshow(image.reshape(8, 8), cmap="gray_r")
    ax.set_title(f"ONNX: {label}")
    ax.set_axis_off()
plt.show()
