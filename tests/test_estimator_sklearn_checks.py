"""scikit-learn's own estimator test suite, run on MLPClassifier and MLPRegressor in several configurations.

Each configuration is small enough to train in milliseconds but learns well
enough for the suite's accuracy checks.  All run in float64 (``dtype=None``
follows the suite's float64 data).  The quick test profile checks two of the
configurations, CI's profile (``HANDGRAD_TEST_PROFILE=ci``) all six.  The checks that cannot pass are listed
in ``EXPECTED_FAILURES`` with the reason, and in ``docs/estimator.md``.

The estimators declare array API support, so the suite includes scikit-learn's
array API checks: ``check_array_api_input`` on NumPy, array-api-strict (its CPU
device in float64, "device1" in float32) and PyTorch (CPU in float64 and float32;
CUDA, MPS and XPU where present), mixed namespaces for ``X`` and ``y``, and the
refusal of another namespace after fit.  They run with ``SCIPY_ARRAY_API=1``,
which ``tests/conftest.py`` sets before SciPy is imported.
"""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

try:
    import torch  # noqa: F401 - loaded before the checks, so that one_blas_thread holds its threads to one
except ImportError:
    pass

from handgrad.estimators import MLPClassifier, MLPRegressor
from support import PROFILE

# The configurations' epoch budgets meet every check's accuracy bar but rarely the stopping rule: the
# ConvergenceWarning says nothing here (test_estimator.py checks when and how it is raised).
pytestmark = [pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"), pytest.mark.usefixtures("one_blas_thread")]

ESTIMATORS = [
    MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=0.01, max_iter=100),
    MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=100),
    MLPClassifier(hidden_layer_sizes=(8,), activation="tanh", solver="sgd", learning_rate_init=0.05,
                  loss="softmax_bce", max_iter=100),
    MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=200),
    MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=200),
    MLPRegressor(hidden_layer_sizes=(16,), solver="sgd", learning_rate_init=0.003, momentum=0.5, max_iter=300),
]

# The quick profile checks one classifier and one regressor (Adam); CI's profile checks all six.
CHECKED = ESTIMATORS if PROFILE == "ci" else [ESTIMATORS[0], ESTIMATORS[3]]

# Reasons for the checks a configuration is known to fail.
EXPECTED_FAILURES = {}


def expected_failures(estimator):
    return EXPECTED_FAILURES.get((type(estimator).__name__, estimator.solver), {})



@parametrize_with_checks(CHECKED, expected_failed_checks=expected_failures)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
