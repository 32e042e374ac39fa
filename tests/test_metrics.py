"""Metrics agree with scikit-learn's, and the text report shows the same numbers."""

import re
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from handgrad.errors import DataError, HandgradError
from handgrad.report.metrics import accuracy, confusion_matrix, format_report, precision_recall


def _labels(seed, n=300, k=6, missing_from_pred=(4,), missing_everywhere=(5,)):
    """Random labels where some classes are never predicted and one never occurs at all."""
    rng = np.random.default_rng(seed)
    present = [c for c in range(k) if c not in missing_everywhere]
    y_true = rng.choice(present, size=n)
    allowed = [c for c in present if c not in missing_from_pred]
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.choice(allowed, size=n))
    y_pred = np.where(np.isin(y_pred, missing_from_pred), allowed[0], y_pred)
    return y_true, y_pred, k


@pytest.mark.parametrize("seed", range(5))
def test_confusion_matrix_matches_sklearn(seed):
    y_true, y_pred, k = _labels(seed)
    cm = confusion_matrix(y_true, y_pred, k)
    assert cm.dtype == np.int64 and cm.shape == (k, k)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y_true, y_pred, labels=range(k)))


def test_confusion_matrix_rows_are_true_classes():
    cm = confusion_matrix([0, 0, 1], [1, 1, 1], 2)
    np.testing.assert_array_equal(cm, [[0, 2], [0, 1]])


@pytest.mark.parametrize("seed", range(5))
def test_precision_recall_match_sklearn_with_zero_division_0(seed):
    y_true, y_pred, k = _labels(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # undefined ratios must be 0 silently
        precision, recall, support = precision_recall(confusion_matrix(y_true, y_pred, k))
    p, r, _, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=range(k), zero_division=0)
    np.testing.assert_allclose(precision, p, rtol=0, atol=1e-12)
    np.testing.assert_allclose(recall, r, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(support, s)
    assert precision[4] == 0 and recall[5] == 0 and support[5] == 0


def test_accuracy_matches_sklearn():
    y_true, y_pred, k = _labels(7)
    assert accuracy(confusion_matrix(y_true, y_pred, k)) == pytest.approx(skm.accuracy_score(y_true, y_pred))


def test_report_shows_accuracy_per_class_numbers_and_matrix():
    y_true, y_pred, k = _labels(3)
    cm = confusion_matrix(y_true, y_pred, k)
    names = ["cat", "dog", "bird", "fish", "horse", "newt"]
    report = format_report(cm, names)
    precision, recall, support = precision_recall(cm)
    assert f"accuracy {skm.accuracy_score(y_true, y_pred):.4f}" in report.splitlines()[0]
    lines = report.splitlines()
    for i, name in enumerate(names):
        table_row, matrix_row = [line for line in lines if line.startswith(name + " ")]
        assert [float(v) for v in table_row.split()[1:]] == pytest.approx(
            [precision[i], recall[i], support[i]], abs=5e-5)
        assert [int(v) for v in matrix_row.split()[1:]] == list(cm[i])


def test_report_matrix_columns_line_up():
    cm = np.array([[1234, 5], [0, 7]])
    lines = format_report(cm, ["a", "longer_name"]).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("confusion matrix"))
    block = lines[header + 1:]
    # Every number ends where its column header ends.
    ends = [m.end() for m in re.finditer(r"\S+", block[0])][-2:]
    for row in block[1:]:
        assert [m.end() for m in re.finditer(r"\d+", row)] == ends


@pytest.mark.parametrize("y_true, y_pred, k, match", [
    ([0, 1, 2], [0, 1], 3, "one prediction per sample"),
    ([0, 1, 3], [0, 1, 2], 3, "must lie in 0..2"),
    ([0, -1], [0, 1], 2, "must lie in 0..1"),
    ([0.5, 1], [0, 1], 2, "non-integer"),
    ([[0, 1]], [[0, 1]], 2, "1-D"),
    ([0, 1], [0, 1], 0, "positive integer"),
])
def test_confusion_matrix_rejects_bad_labels(y_true, y_pred, k, match):
    with pytest.raises(DataError, match=match):
        confusion_matrix(y_true, y_pred, k)


@pytest.mark.parametrize("cm, match", [
    (np.zeros((2, 3), int), "square"),
    (np.array([[1, -1], [0, 2]]), "negative"),
    (np.array([[0.5, 0], [0, 1]]), "whole-number"),
])
def test_bad_confusion_matrices_are_refused(cm, match):
    with pytest.raises(HandgradError, match=match):
        precision_recall(cm)


def test_report_needs_one_name_per_class():
    with pytest.raises(DataError, match="one name per class"):
        format_report(np.eye(3, dtype=int), ["a", "b"])
