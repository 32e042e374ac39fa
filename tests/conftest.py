"""Fixtures shared by the test modules, and the test profile (see ``tests/support.py``)."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from support import PROFILE

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Hypothesis's own settings per profile.  Tests that fuzz set max_examples
# themselves, through support.count; in CI a failing example is printed as a
# blob that @reproduce_failure replays locally.
settings.register_profile("dev")
settings.register_profile("ci", print_blob=True)
settings.load_profile(PROFILE)


def pytest_report_header(config):
    detail = "quick" if PROFILE == "dev" else "full fuzz and fault counts"
    return f"handgrad test profile: {PROFILE} ({detail}; set HANDGRAD_TEST_PROFILE=dev or ci)"


@pytest.fixture(scope="session")
def shared_data():
    """The folder with the original MNIST and Fashion-MNIST IDX files (``../shared/data``)."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"{SHARED_DATA} is missing: CI clones the repository with ../shared beside it")
    return SHARED_DATA


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits, pixels scaled to [0, 1]: (X, y) as float64 and int."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.fixture
def small_digits(digits):
    """The first 300 digits: enough to train on for a few epochs in milliseconds."""
    X, y = digits
    return X[:300], y[:300]


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def _registries_restored():
    """Pieces a test defines register for that test only: every registry is put back afterwards.

    handgrad's own classes that registered during the test (the estimators, imported on first
    use) stay: their modules are imported once, so they would not register again.
    """
    from handgrad.registry import ESTIMATORS, LAYERS, LOSSES, OPTIMIZERS, SCHEDULES

    saved = [(registry, dict(registry._by_type)) for registry in (LAYERS, LOSSES, OPTIMIZERS, SCHEDULES, ESTIMATORS)]
    yield
    for registry, entries in saved:
        imported = {name: cls for name, cls in registry._by_type.items()
                    if name not in entries and cls.__module__.startswith("handgrad.")}
        registry._by_type.clear()
        registry._by_type.update({**entries, **imported})


@pytest.fixture
def one_blas_thread():
    """Small matrices (the estimator tests): one BLAS thread is fastest, and on a busy machine several thrash."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
