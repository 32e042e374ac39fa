"""
The scikit-learn estimator in a pipeline and a grid search
==========================================================

:class:`handgrad.MLPClassifier` takes scikit-learn's parameters and works
wherever scikit-learn's ``MLPClassifier`` does: here in a ``Pipeline`` with a
scaler, tuned by ``GridSearchCV`` over the width, the activation and the L2
penalty, with handgrad's own additions (``dropout``) in the grid.
"""

# %%
# A pipeline and a grid
# ---------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_wine
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import handgrad as hg

X, y = load_wine(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
pipeline = make_pipeline(StandardScaler(), hg.MLPClassifier(max_iter=1000, random_state=0))
grid = {"mlpclassifier__hidden_layer_sizes": [(16,), (64,)],
        "mlpclassifier__activation": ["relu", "tanh"],
        "mlpclassifier__alpha": [1e-4, 1e-2],
        "mlpclassifier__dropout": [0.0, 0.2]}
search = GridSearchCV(pipeline, grid, cv=3).fit(X_train, y_train)
print("best:", search.best_params_)
print(f"cross-validated accuracy {search.best_score_:.3f}, test accuracy {search.score(X_test, y_test):.3f}")

# %%
# The best model's loss curve
# ---------------------------
best = search.best_estimator_[-1]
fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
ax.plot(np.arange(1, len(best.loss_curve_) + 1), best.loss_curve_)
ax.set(xlabel="epoch", ylabel="training loss", yscale="log", title="The best pipeline's MLPClassifier")
plt.show()
